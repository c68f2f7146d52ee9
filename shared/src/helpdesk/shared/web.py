"""What every service's HTTP app has: RFC 9457 errors, health, readiness, metrics, request ids."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from helpdesk.shared.logs import correlation_id
from helpdesk.shared.metrics import Metrics

PROBLEM_JSON = "application/problem+json"
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


class Problem(Exception):  # noqa: N818 - it is the RFC 9457 name
    """An RFC 9457 problem; raise it from a route to answer with problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: Sequence[dict[str, str]] = (),
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.type = type_
        self.headers = headers or {}

    def body(self, instance: str) -> dict[str, Any]:
        """The JSON body."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "instance": instance,
        }
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        return body


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic error dicts as `{field, reason}` pairs, with the request-part prefix dropped."""
    out = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if loc and loc[0] in {"body", "query", "path", "header"}:
            loc = loc[1:]
        out.append({"field": ".".join(loc) or "body", "reason": str(error.get("msg", "invalid"))})
    return out


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    """Render a `Problem` for `request`."""
    return JSONResponse(
        problem.body(request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def create_app(
    *,
    title: str,
    metrics: Metrics,
    readiness: ReadinessCheck,
    lifespan: Any = None,
) -> FastAPI:
    """A FastAPI app with the endpoints and error handling every service shares."""
    app = FastAPI(title=title, version="1", lifespan=lifespan)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem = Problem(
            422,
            "Invalid request",
            "One or more fields are invalid; nothing was changed.",
            errors=field_errors(exc.errors()),
        )
        return problem_response(problem, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        return problem_response(Problem(exc.status_code, str(exc.detail), headers=headers), request)

    @app.middleware("http")
    async def _correlation(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        value = request.headers.get("x-correlation-id") or str(uuid.uuid4())
        token = correlation_id.set(value)
        try:
            response = await call_next(request)
        finally:
            correlation_id.reset(token)
        response.headers["x-correlation-id"] = value
        return response

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = await readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    return app
