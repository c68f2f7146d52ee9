"""What every service's HTTP app has: RFC 9457 errors, health, readiness, metrics, request ids.

Every error answer is `application/problem+json`, including the ones the framework would
otherwise answer in its own shape: a body larger than `MAX_BODY_BYTES` (413, refused while it
streams in), a body that is not JSON, not UTF-8 or nested too deep (400), a body of another
media type (415), text with NUL characters or lone surrogates and the numbers NaN, Infinity or
1e400 (422; PostgreSQL and JSON cannot store them), a uniqueness race lost in the database
(409) and an unexpected fault (500).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from email.message import Message
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from helpdesk.shared.errors import ApplicationError
from helpdesk.shared.logs import correlation_id
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.validation import parse_period, parse_quarter

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
#: A pure ASGI middleware: built once around the inner app (a class taking it, or a factory).
AsgiMiddleware = Callable[[ASGIApp], ASGIApp]
# Deeper JSON than any request body of the API needs; deeper still would exhaust the parser.
MAX_JSON_DEPTH = 32
NUL = "\x00"
#: The largest request body any route takes (1 MiB), unless a route reads and limits its own
#: (intake's raw e-mail). Far above what the field limits allow; far below a topic message.
MAX_BODY_BYTES = 1_048_576
_SURROGATE = re.compile("[\ud800-\udfff]")
# PostgreSQL's SQLSTATEs for text it cannot store (a NUL character, in text or in jsonb).
_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})
_UNIQUE_VIOLATION = "23505"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}


def problem_doc(description: str) -> dict[str, Any]:
    """The OpenAPI document of a problem+json answer (for a route's own `responses`)."""
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}


#: The error answers every route of every service may give, declared once for the OpenAPI docs.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc("Malformed request: not JSON, not UTF-8, or a bad header"),
    401: problem_doc("No API key, or an unknown or revoked one"),
    403: problem_doc("The key's role may not do this"),
    404: problem_doc("No such resource, or not one the caller may see"),
    409: problem_doc("Conflicts with the current state (e.g. a name is taken)"),
    412: problem_doc("If-Match names a version that is not the current one"),
    413: problem_doc("The body is larger than this route takes"),
    415: problem_doc("The body is of a media type this route does not take"),
    422: problem_doc("One or more fields are invalid; `errors` names them"),
}


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


def invalid(field: str, reason: str, detail: str | None = None) -> Problem:
    """A 422 naming one field."""
    return Problem(
        422,
        "Invalid request",
        detail or f"{field} {reason}; nothing was changed.",
        errors=[{"field": field, "reason": reason}],
    )


def checked_period(text: str, now: datetime, field: str = "period") -> tuple[int, int]:
    """(year, month) of a period a request names, or a 422 naming `field` (the shared bounds
    of `helpdesk.shared.validation`)."""
    try:
        return parse_period(text, now)
    except ValueError as exc:
        raise invalid(field, str(exc)) from exc


def checked_quarter(text: str, now: datetime, field: str = "quarter") -> tuple[int, int]:
    """(year, quarter) of a quarter a request names, or a 422 naming `field`."""
    try:
        return parse_quarter(text, now)
    except ValueError as exc:
        raise invalid(field, str(exc)) from exc


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


# -- If-Match (RFC 9110, 13.1.1) ----------------------------------------------------------------

#: `If-Match` as OpenAPI declares it: `*` or a list of entity tags (`check_if_match` reads it).
IF_MATCH_PATTERN = r'^ *(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*) *$'
#: The `If-Match` request header of a state-changing route (see `check_if_match`).
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match"),
    WithJsonSchema({"type": "string", "pattern": IF_MATCH_PATTERN, "examples": ['"3"']}),
]

#: One element of an entity-tag list and its comma: a tag may itself hold commas, so the list
#: is read tag by tag, not split on commas. An element may be empty (RFC 9110 list syntax).
_LIST_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|$)')


def check_if_match(header: str | None, current: str, what: str = "resource") -> None:
    """Check a state-changing request's `If-Match` against the resource's strong ETag `current`
    (its opaque value, without quotes).

    Absent: no precondition. `*` matches any current resource. Otherwise the header is a list
    of entity tags; strong comparison applies (a weak tag never matches), and no match is a 412
    Precondition Failed that carries the current ETag. A header that is not a list of entity
    tags is a 400.
    """
    if header is None:
        return
    if header.strip() == "*":
        return
    tags = _entity_tags(header)
    if tags is None:
        raise Problem(
            400,
            "Bad Request",
            'If-Match must be "*" or a list of entity tags such as "5" (with the quotes).',
            errors=[{"field": "If-Match", "reason": "not a list of entity tags"}],
        )
    if any(not weak and tag == current for weak, tag in tags):
        return
    raise Problem(
        412,
        "Precondition Failed",
        f'The {what} is at version "{current}", not {header.strip()}; reload it and retry.',
        headers={"ETag": f'"{current}"'},
    )


def _entity_tags(header: str) -> list[tuple[bool, str]] | None:
    tags = []
    position = 0
    while position < len(header):
        found = _LIST_ELEMENT.match(header, position)
        if found is None or found.end() == position:
            return None
        if found.group(2) is not None:
            tags.append((found.group(1) is not None, found.group(2)))
        position = found.end()
    return tags or None


# -- request guards -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (application/json or a +json type)."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _unstorable(text: str) -> str | None:
    if NUL in text:
        return "contains a NUL character"
    if _SURROGATE.search(text):
        return "contains a lone surrogate (not Unicode text)"
    return None


def unstorable_text(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Where in a decoded JSON document a key or string holds what no column can store (a NUL
    character, a lone surrogate), with the reason, sorted by place."""
    found: list[tuple[str, str]] = []
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            reason = _unstorable(item)
            if reason:
                found.append((where or "body", reason))
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                reason = _unstorable(key)
                if reason:
                    found.append((child_path, reason))
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{where}.{i}" if where else str(i), c) for i, c in enumerate(item))
    return sorted(found)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, level + 1) for c in children)
    return deepest


def _bad_body(detail: str, reason: str) -> Problem:
    return Problem(400, "Bad Request", detail, errors=[{"field": "body", "reason": reason}])


def check_json_body(raw: bytes) -> None:
    """Raise a problem saying what is wrong with a JSON body: encoding, syntax, depth, NULs."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_body(
            f"The body is not valid UTF-8 (byte {exc.start}); JSON must be UTF-8.",
            "not valid UTF-8",
        ) from exc
    try:
        document = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise _bad_body(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from exc
    except RecursionError as exc:
        raise _nested_too_deep() from exc
    except _NotANumberError as exc:
        raise Problem(
            422,
            "Invalid request",
            f"{exc} is not a number JSON can carry; nothing was changed.",
            errors=[{"field": "body", "reason": f"{exc} is not a finite number"}],
        ) from exc
    except ValueError as exc:  # an integer of more digits than Python reads
        raise _bad_body(f"The body holds a number that cannot be read: {exc}.", str(exc)) from exc
    if _depth(document) > MAX_JSON_DEPTH:
        raise _nested_too_deep()
    found = unstorable_text(document)
    if found:
        raise Problem(
            422,
            "Invalid request",
            "Text must not contain NUL characters (\\u0000) or lone surrogates; nothing was "
            "changed.",
            errors=[{"field": _printable(field), "reason": reason} for field, reason in found],
        )


def _printable(path: str) -> str:
    # A lone surrogate cannot be written in the UTF-8 answer: it is named by its escape.
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", path)


class _NotANumberError(ValueError):
    """NaN, Infinity, -Infinity or a literal too large for a float (1e400): Python's JSON reads
    them, but they are not JSON numbers, and PostgreSQL's jsonb would store null or fail."""


def _no_constant(name: str) -> Any:
    raise _NotANumberError(name)


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotANumberError(literal)
    return value


def _nested_too_deep() -> Problem:
    return _bad_body(
        f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.", "nested too deep"
    )


class InputGuard:
    """Pure ASGI middleware: refuse, as problem+json, what no route can store or read.

    NULs in the path or query; bodies larger than `max_body` (413, as soon as the declared
    length or the bytes received pass it); JSON bodies (or bodies without a media type, which
    the framework reads as JSON) that are not UTF-8, not JSON, nested too deep, or carry NULs,
    lone surrogates or non-finite numbers. A body is read once here and handed on to the app
    unchanged. Paths in `raw_body_paths` read and limit their own bodies, and are not read here.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int = MAX_BODY_BYTES,
        raw_body_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.raw_body_paths = frozenset(raw_body_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_path_and_query(scope)
            if scope["method"] in _BODY_METHODS and scope["path"] not in self.raw_body_paths:
                raw = await read_body(receive, self.max_body, header(scope, b"content-length"))
                receive = replay_body(raw, receive)
                content_type = header(scope, b"content-type")
                if raw and (content_type is None or is_json(content_type)):
                    check_json_body(raw)
        except Problem as problem:
            await problem_response(problem, Request(scope))(scope, receive, send)
            return
        await self.app(scope, receive, send)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _check_path_and_query(scope: Scope) -> None:
    if NUL in scope["path"]:
        raise invalid("path", "contains a NUL character")
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return  # the common case: no NUL can be in it, so nothing to parse
    params = Request(scope).query_params
    bad = sorted({k for k, v in params.multi_items() if NUL in k or NUL in v})
    if bad:
        raise Problem(
            422,
            "Invalid request",
            "Query parameters must not contain NUL characters.",
            errors=[
                {"field": f.replace(NUL, "\\u0000"), "reason": "contains a NUL character"}
                for f in bad
            ],
        )


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header `name` (lower case), decoded as Latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def too_large(limit: int) -> Problem:
    """413: the body is longer than `limit` bytes."""
    return Problem(
        413,
        "Content Too Large",
        f"The body may have at most {limit} bytes; nothing was changed.",
        errors=[{"field": "body", "reason": f"longer than {limit} bytes"}],
    )


async def read_body(
    receive: Receive, limit: int | None = None, declared: str | None = None
) -> bytes:
    """The whole request body, from the ASGI `receive` channel.

    With a `limit`, a body declared (`Content-Length`) or found longer raises a 413 problem as
    soon as that is known: nothing past the limit is read or kept.
    """
    declared = (declared or "").strip()
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands `body` (already read) to the app, then waits on the client."""
    pending = True

    async def replay() -> AsgiMessage:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class CorrelationIds:
    """Pure ASGI middleware: the request's `X-Correlation-Id` (or a fresh one) is the log
    context of everything the request does, and is echoed on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = header(scope, b"x-correlation-id") or str(uuid.uuid4())
        raw = value.encode("latin-1")

        async def send_with_id(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-correlation-id", raw)]
            await send(message)

        token = correlation_id.set(value)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


def _database_problem(exc: sa.exc.DBAPIError) -> Problem | None:
    """The 4xx a database refusal means, or None for a fault of ours."""
    state = getattr(exc.orig, "sqlstate", None)
    if state in _UNSTORABLE_TEXT:
        return Problem(
            422,
            "Invalid request",
            "Text must not contain NUL characters (\\u0000); nothing was changed.",
        )
    if state == _UNIQUE_VIOLATION:
        return Problem(
            409, "Conflict", "A concurrent request took the same unique value; nothing was changed."
        )
    return None


#: What the input guard refuses in any text, as OpenAPI declares it: a NUL character.
NO_NUL_PATTERN = "^[^\\u0000]*$"


def declare_text_guard(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (an OpenAPI document) with the input guard's refusal of NUL characters
    declared: a `pattern` on every string schema that has no pattern, format or fixed values,
    and `propertyNames` on every free-form object. Responses are left as they are (a problem
    names the field that held a NUL)."""
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        node = {k: v for k, v in node.items() if k != "responses"} if "responses" in node else node
        if node.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(node):
            node["pattern"] = NO_NUL_PATTERN
        if node.get("type") == "object" and node.get("additionalProperties", True) is not False:
            node.setdefault("propertyNames", {}).setdefault("pattern", NO_NUL_PATTERN)
        stack.extend(node.values())
    return document


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some documented route serves at the request's path, with OPTIONS.

    Read from the OpenAPI document (built once), which lists every route however routers
    were included.
    """
    methods = {"OPTIONS"}
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def create_app(
    *,
    title: str,
    metrics: Metrics,
    readiness: ReadinessCheck,
    lifespan: Any = None,
    middleware: Sequence[AsgiMiddleware] = (),
    raw_body_paths: Collection[str] = (),
) -> FastAPI:
    """A FastAPI app with the endpoints and error handling every service shares.

    Requests pass the correlation id, then the input guard, then `middleware` in order (e.g.
    authentication-scoped idempotency), then the route. The routes at `raw_body_paths` read
    and limit their own bodies; every other body is limited to `MAX_BODY_BYTES`.
    """
    app = FastAPI(title=title, version="1", lifespan=lifespan)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(ApplicationError)
    async def _refused(request: Request, exc: ApplicationError) -> JSONResponse:
        problem = Problem(exc.status, exc.title, exc.detail, errors=exc.errors)
        return problem_response(problem, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type")
        body_error = any(tuple(e.get("loc", ()))[:1] == ("body",) for e in exc.errors())
        if body_error and content_type and not is_json(content_type):
            problem = Problem(
                415,
                "Unsupported Media Type",
                f"This route takes application/json, not {content_type}.",
                errors=[{"field": "Content-Type", "reason": "must be application/json"}],
            )
            return problem_response(problem, request)
        problem = Problem(
            422,
            "Invalid request",
            "One or more fields are invalid; nothing was changed.",
            errors=field_errors(exc.errors()),
        )
        return problem_response(problem, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # The router names only the methods of the first route matching the path; a path
            # served by several routes (GET and PATCH) allows all of theirs.
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
        return problem_response(Problem(exc.status_code, str(exc.detail), headers=headers), request)

    @app.exception_handler(sa.exc.DBAPIError)
    async def _database(request: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
        problem = _database_problem(exc)
        if problem is None:
            raise exc
        log.info("%s %s refused by the database: %s", request.method, request.url.path, exc.orig)
        return problem_response(problem, request)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs and re-raises after this answer; the client still gets problem+json.
        problem = Problem(500, "Internal Server Error", "An unexpected fault; nothing was kept.")
        return problem_response(problem, request)

    # Added innermost first: requests pass the correlation id, then the input guard, then
    # `middleware` in order, then the route.
    for inner in reversed(middleware):
        app.add_middleware(inner)
    app.add_middleware(InputGuard, raw_body_paths=raw_body_paths)
    app.add_middleware(CorrelationIds)

    framework_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_text_guard(framework_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

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
