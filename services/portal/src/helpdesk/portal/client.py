"""Calls to the four public APIs, with the signed-in person's own session token."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

#: Service names as the pages name them.
SERVICE_TITLES = {
    "intake": "ticket service",
    "sla_timer": "SLA timer",
    "billing": "billing service",
    "notifier": "notification service",
}
# A session just issued (or refreshed) reaches the other services through the event stream,
# within a moment: a 401 there is asked again for this long.
_PROPAGATION_SECONDS = 5.0


class BackendDown(Exception):  # noqa: N818 - a state, not an error of the caller
    """A service did not answer, or answered with a server error."""

    def __init__(self, service: str) -> None:
        super().__init__(service)
        self.service = service
        self.title = SERVICE_TITLES.get(service, service)


class ApiError(Exception):
    """A service refused the request (4xx): its problem+json document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or str(status))
        self.status = status
        self.problem = problem

    @property
    def detail(self) -> str:
        """The problem's explanation."""
        return str(self.problem.get("detail") or self.problem.get("title") or "Refused.")

    def field_errors(self) -> dict[str, str]:
        """Each named field's reason (`fields.x` is shown as `x`)."""
        errors: dict[str, str] = {}
        for error in self.problem.get("errors") or []:
            field = str(error.get("field", "")).removeprefix("body.").removeprefix("fields.")
            errors.setdefault(field, str(error.get("reason", "is invalid")))
        return errors


class Apis:
    """One HTTP client per service, shared by every request of the portal."""

    def __init__(self, urls: dict[str, str], timeout: float) -> None:
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout) for name, url in urls.items()
        }

    async def close(self) -> None:
        """Close the connection pools."""
        for client in self._clients.values():
            await client.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The answer of a 2xx; `ApiError` for a 4xx, `BackendDown` for no answer or a 5xx."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + _PROPAGATION_SECONDS
        while True:
            try:
                response = await self._clients[service].request(
                    method, path, json=json, params=params, headers=sent
                )
            except httpx.HTTPError as exc:
                raise BackendDown(service) from exc
            retry = response.status_code == 401 and service != "intake" and token is not None
            if not retry or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        if response.status_code >= 500:
            raise BackendDown(service)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase}
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})
        return response

    async def json(self, service: str, method: str, path: str, token: str | None, **kw: Any) -> Any:
        """The JSON body of `call`."""
        return (await self.call(service, method, path, token, **kw)).json()
