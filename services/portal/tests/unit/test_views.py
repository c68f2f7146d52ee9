"""What the portal's pages say, from the APIs' answers."""

from __future__ import annotations

import pytest

from helpdesk.portal.views import (
    attachments,
    clock_sentences,
    conversation,
    money,
    percent,
    ticket_body,
    when,
    zone,
)

pytestmark = pytest.mark.unit
AMSTERDAM = zone("Europe/Amsterdam")


def test_times_are_shown_in_the_viewer_s_zone() -> None:
    assert when("2026-12-07T13:30:00Z", AMSTERDAM) == "Mon 7 Dec 14:30 CET"
    assert when("2026-07-07T13:30:00+00:00", AMSTERDAM) == "Tue 7 Jul 15:30 CEST"
    assert when(None, AMSTERDAM) == ""
    assert zone("Not/AZone").key == "UTC"


def test_sla_clocks_in_plain_words() -> None:
    sla = {
        "clocks": [
            {"kind": "response", "status": "running", "due_at": "2026-12-07T13:30:00Z"},
            {"kind": "resolution", "status": "breached", "due_at": "2026-12-07T15:00:00Z"},
            {"kind": "next_reply", "status": "met", "due_at": "2026-12-07T15:00:00Z"},
            {"kind": "resolution", "status": "running", "paused": True, "due_at": None},
        ]
    }
    assert clock_sentences(sla, AMSTERDAM) == [
        "First response due by Mon 7 Dec 14:30 CET.",
        "Resolution was due by Mon 7 Dec 16:00 CET: overdue.",
        "Next reply given in time.",
        "Resolution paused while we wait for your answer.",
    ]
    assert clock_sentences(None, AMSTERDAM) == []


def test_money_from_integer_cents() -> None:
    assert money(123450, "USD") == "USD 1,234.50"
    assert money(-5, "EUR") == "EUR -0.05"


def test_the_support_form_sends_only_what_was_filled() -> None:
    """Seed 003 asks for the number of affected users; seed 001's partner fields are custom."""
    form = {"subject": " VPN ", "description": "", "affected_users": "12", "reseller_ref": "R-1"}
    required = ["affected_users", "reseller_ref", "severity"]
    assert ticket_body(form, "acct", required) == {
        "account_id": "acct",
        "subject": "VPN",
        "description": "",
        "channel": "web",
        "affected_users": 12,
        "fields": {"reseller_ref": "R-1"},
    }
    assert "subject" not in ticket_body({"subject": "  "}, "acct", [])


def test_the_conversation_leaves_out_nothing_the_api_showed() -> None:
    events = [
        {
            "type": "ticket.opened",
            "occurred_at": "2026-12-07T08:00:00Z",
            "payload": {"description": "down"},
        },
        {"type": "ticket.triaged", "occurred_at": "2026-12-07T08:01:00Z", "payload": {}},
        {
            "type": "ticket.commented",
            "occurred_at": "2026-12-07T08:02:00Z",
            "payload": {"body": "looking", "public": True},
        },
        {
            "type": "ticket.commented",
            "occurred_at": "2026-12-07T08:03:00Z",
            "payload": {"body": "note", "public": False},
        },
        {
            "type": "ticket.customer_replied",
            "occurred_at": "2026-12-07T08:04:00Z",
            "payload": {"body": "thanks"},
        },
    ]
    messages = conversation(events, AMSTERDAM)
    assert [(m.who, m.text, m.internal) for m in messages] == [
        ("Customer", "Opened: down", False),
        ("Support", "looking", False),
        ("Internal note", "note", True),
        ("Customer", "thanks", False),
    ]
    assert messages[0].at == "Mon 7 Dec 09:00 CET"


def test_a_ticket_s_attachments_are_named_with_their_type_and_size() -> None:
    """New: the ticket page lists the files an e-mail brought (intake keeps their names, types
    and sizes, not the files), and says how many more there were."""
    ticket = {
        "fields": {
            "attachments": [
                {"filename": "error.png", "content_type": "image/png", "size": 12_500},
                {"filename": "", "content_type": "text/plain", "size": 80},
            ],
            "attachments_not_listed": {"count": 3, "bytes": 4_200_000},
        }
    }
    assert attachments(ticket) == [
        "error.png (image/png, 12.5 KB)",
        "unnamed (text/plain, 80 bytes)",
        "3 more, 4.2 MB in all, not listed",
    ]
    assert attachments({"fields": {}}) == []
    assert attachments({}) == []


def test_a_report_share_is_a_percentage_or_a_dash() -> None:
    assert percent(0.875) == "87.5 %"
    assert percent(None) == "–"
