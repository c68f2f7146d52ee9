"""FastAPI dependencies every service's routers use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from helpdesk.shared.auth import Principal
from helpdesk.shared.service import ServiceRuntime


async def runtime(request: Request) -> ServiceRuntime:
    """The running service instance.

    A coroutine although it does not wait: FastAPI runs a plain function dependency in its
    thread pool, a hand-off per request that cost a command a third of its time (docs/adr/0007).
    """
    value: ServiceRuntime = request.app.state.runtime
    return value


async def principal(request: Request) -> Principal:
    """The authenticated caller (once per request: the idempotency middleware may have done it)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    authenticate = request.app.state.authenticate
    value: Principal = await authenticate(request)
    request.state.principal = value
    return value


Runtime = Annotated[ServiceRuntime, Depends(runtime)]
Caller = Annotated[Principal, Depends(principal)]
