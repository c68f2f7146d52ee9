"""Who acted, as an account's own webhook subscription is told (issue 21, point 8)."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk.notifier.domain.identity import for_account

pytestmark = pytest.mark.unit

SAM = "0b8c6b7e-0000-4000-8000-000000000001"


def _body(actor: dict[str, str], author: str | None = None) -> dict[str, Any]:
    payload = {"public": True} if author is None else {"public": True, "author": author}
    return {"type": "ticket.commented", "data": {"actor": actor, "payload": payload}}


def test_the_providers_people_are_named_not_identified() -> None:
    names = {SAM: "Sam Tech"}
    shown = for_account(_body({"type": "staff", "id": SAM}, f"staff:{SAM}"), names)
    assert shown["data"] == {
        "actor": {"type": "staff", "name": "Sam Tech"},
        "payload": {"public": True, "author": "Sam Tech"},
    }
    for actor in ({"type": "admin", "id": "admin"}, {"type": "import", "id": "k_123"}):
        body = _body(actor, f"{actor['type']}:{actor['id']}")
        assert for_account(body, names)["data"] == {
            "actor": {"type": "staff", "name": "Support"},
            "payload": {"public": True, "author": "Support"},
        }
        assert body["data"]["actor"] == actor  # the original is left as it was


def test_contacts_and_services_keep_their_actor() -> None:
    contact = _body({"type": "contact", "id": "c1"}, "contact:c1")
    assert for_account(contact, {}) == contact
    system = _body({"type": "system", "id": "sla_timer"})
    assert for_account(system, {}) == system
