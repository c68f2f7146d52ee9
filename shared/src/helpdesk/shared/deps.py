"""FastAPI dependencies every service's routers use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from helpdesk.shared.auth import Principal
from helpdesk.shared.service import ServiceRuntime


def runtime(request: Request) -> ServiceRuntime:
    """The running service instance."""
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
