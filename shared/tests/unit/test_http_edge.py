"""The HTTP edge's in-process parts: the principal cache and the pure ASGI middlewares."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import Request

from helpdesk.shared.auth import Principal, PrincipalCache
from helpdesk.shared.logs import correlation_id
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.web import (
    IF_MATCH_PATTERN,
    MAX_BODY_BYTES,
    Problem,
    check_if_match,
    create_app,
)

pytestmark = pytest.mark.unit


def _principal(key_id: str) -> Principal:
    return Principal(key_id=key_id, role="technician")


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = PrincipalCache(size=2)
    cache.put("h1", _principal("k1"))
    cache.put("h2", _principal("k2"))
    assert cache.get("h1") == _principal("k1")  # h2 is now the least recently used
    cache.put("h3", _principal("k3"))
    assert cache.get("h2") is None
    assert cache.get("h1") == _principal("k1")
    assert cache.get("h3") == _principal("k3")


def test_an_entry_expires_after_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = PrincipalCache(ttl=5.0)
    cache.put("h1", _principal("k1"))
    now[0] += 4.9
    assert cache.get("h1") is not None
    now[0] += 0.2
    assert cache.get("h1") is None


def test_an_invalidated_key_is_forgotten_and_not_cached_while_its_event_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = PrincipalCache(ttl=5.0, settle=60.0)
    cache.put("h1", _principal("k1"))
    cache.put("h2", _principal("k2"))
    cache.invalidate("k1")
    assert cache.get("h1") is None
    assert cache.get("h2") is not None
    # a lookup that read the key before the revoke committed must not bring it back
    cache.put("h1", _principal("k1"))
    assert cache.get("h1") is None
    now[0] += 61
    cache.put("h1", _principal("k1"))
    assert cache.get("h1") is not None


def _app_client(seen: dict[str, Any] | None = None) -> httpx.AsyncClient:
    """An app with a recording middleware (what the request context was when it ran)."""
    seen = {} if seen is None else seen

    async def ready() -> dict[str, bool]:
        return {"ok": True}

    def record(app: Any) -> Callable[..., Awaitable[None]]:
        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            seen["correlation_id"] = correlation_id.get()
            await app(scope, receive, send)

        return middleware

    app = create_app(title="t", metrics=Metrics("t"), readiness=ready, middleware=[record])

    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return await request.json()

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_the_correlation_id_is_the_request_context_and_is_echoed() -> None:
    seen: dict[str, Any] = {}
    async with _app_client(seen) as client:
        given = await client.get("/healthz", headers={"X-Correlation-Id": "abc"})
        assert given.headers["x-correlation-id"] == "abc"
        fresh = await client.get("/healthz")
        assert len(fresh.headers["x-correlation-id"]) == 36
        assert seen["correlation_id"] == fresh.headers["x-correlation-id"]


async def test_the_input_guard_answers_problems_and_hands_the_body_on() -> None:
    async with _app_client() as client:
        echoed = await client.post("/echo", json={"a": [1, 2]})
        assert echoed.json() == {"a": [1, 2]}
        broken = await client.post(
            "/echo", content=b'{"a": ', headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 400
        assert broken.headers["content-type"] == "application/problem+json"
        assert broken.json()["errors"][0]["field"] == "body"
        assert "x-correlation-id" in broken.headers
        nul = await client.post("/echo", json={"a": "x\x00"})
        assert nul.status_code == 422
        assert nul.json()["errors"] == [{"field": "a", "reason": "contains a NUL character"}]
        query = await client.get("/healthz", params={"q": "a\x00"})
        assert query.status_code == 422
        assert query.json()["instance"] == "/healthz"


async def test_a_body_is_taken_up_to_one_mebibyte_and_refused_one_byte_over() -> None:
    """Issue 21: one oversized request must not become an event the stream cannot carry."""
    filler = MAX_BODY_BYTES - len(b'{"a":""}')
    at_limit = b'{"a":"' + b"x" * filler + b'"}'
    assert len(at_limit) == MAX_BODY_BYTES
    over = b'{"a":"' + b"x" * (filler + 1) + b'"}'
    json_type = {"Content-Type": "application/json"}
    async with _app_client() as client:
        taken = await client.post("/echo", content=at_limit, headers=json_type)
        assert taken.status_code == 200
        assert len(taken.json()["a"]) == filler
        refused = await client.post("/echo", content=over, headers=json_type)
        assert refused.status_code == 413
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"] == [
            {"field": "body", "reason": f"longer than {MAX_BODY_BYTES} bytes"}
        ]

        # streamed without a length: refused once the bytes received pass the limit, and the
        # rest of the stream is never read
        sent: list[int] = []

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                sent.append(1)
                yield b"x" * 65_536

        streamed = await client.post("/echo", content=chunks(), headers=json_type)
        assert streamed.status_code == 413
        assert len(sent) < 64
        # any media type is limited (the framework would read it whole to answer 415)
        text = await client.post("/echo", content=over, headers={"Content-Type": "text/plain"})
        assert text.status_code == 413


async def test_the_guard_refuses_numbers_and_text_json_cannot_carry() -> None:
    """Issue 21, point 5: NaN, Infinity and 1e400 are not stored as null; a lone surrogate in
    a key or a string is a 422 naming it, not a 500."""
    json_type = {"Content-Type": "application/json"}
    async with _app_client() as client:
        for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
            response = await client.post(
                "/echo", content=b'{"a": ' + literal + b"}", headers=json_type
            )
            assert response.status_code == 422, literal
            assert response.headers["content-type"] == "application/problem+json"
        assert (await client.post("/echo", content=b'{"a": 1e300}', headers=json_type)).json() == {
            "a": 1e300
        }
        surrogate = await client.post(
            "/echo", content=b'{"f": {"\\udfff": 1}, "g": "\\ud800"}', headers=json_type
        )
        assert surrogate.status_code == 422
        assert surrogate.json()["errors"] == [
            {"field": "f.\\udfff", "reason": "contains a lone surrogate (not Unicode text)"},
            {"field": "g", "reason": "contains a lone surrogate (not Unicode text)"},
        ]
        # a body without a media type is read as JSON by the framework, so it is checked too
        untyped = await client.post("/echo", content=b'{"a": NaN}')
        assert untyped.status_code == 422
        pair = await client.post("/echo", json={"a": "\U0001f600"})  # a valid surrogate pair
        assert pair.json() == {"a": "\U0001f600"}


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"5"', True),
        ('W/"5", "5"', True),
        ('"x,y" , "5"', True),  # a comma inside a tag, spaces around the list's commas
        ('"m`XS~z", W/",CLLN>Z", W/"^pHo" , W/"" , "n0\\j" ', False),  # schemathesis found it
        ('W/"5"', False),  # a weak tag never matches
    ],
)
def test_if_match_reads_every_list_the_openapi_pattern_allows(header: str, matches: bool) -> None:
    """Before, the list was split on commas, so a tag holding one (`W/",CLLN>Z"`), which the
    declared pattern allows, was refused as malformed (400). Now the list is read tag by tag:
    a match passes, another valid list is a 412, never a 400."""
    assert re.match(IF_MATCH_PATTERN, header)
    if matches:
        check_if_match(header, "5")
        return
    with pytest.raises(Problem) as refused:
        check_if_match(header, "5")
    assert refused.value.status == 412


@pytest.mark.parametrize("header", ["5", '"5" "6"', "W/5", '"5", x', ""])
def test_if_match_that_is_no_list_of_tags_is_a_400(header: str) -> None:
    with pytest.raises(Problem) as refused:
        check_if_match(header, "5")
    assert refused.value.status == 400
