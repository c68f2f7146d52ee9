"""Who acted, as an account's own webhook subscription is told.

An event's `actor` (and a comment's `author`, `"staff:<id>"`) names the provider's people by
staff id, API key id or `admin`: internal identifiers a customer has no use for and should not
collect. A subscription of one account therefore receives the provider's people by display
name, `{"type": "staff", "name": "Sam Tech"}` (`"Support"` for the admin token, import keys
and anyone the notifier does not know); the account's own contacts and the services keep their
actor. Provider-wide subscriptions (staff only) receive the event as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: Actor types that are the provider's people.
PROVIDER_PEOPLE = frozenset({"staff", "admin", "import"})
#: The name given to the provider's people the notifier cannot name.
SUPPORT = "Support"


def staff_id_of(actor: Mapping[str, Any]) -> str | None:
    """The staff id an actor names, if it is a staff member."""
    return str(actor["id"]) if actor.get("type") == "staff" and actor.get("id") else None


def display_actor(actor: Mapping[str, Any], staff_names: Mapping[str, str]) -> dict[str, Any]:
    """The actor as an account is told of it."""
    if actor.get("type") not in PROVIDER_PEOPLE:
        return dict(actor)
    return {"type": "staff", "name": staff_names.get(staff_id_of(actor) or "", SUPPORT)}


def for_account(body: dict[str, Any], staff_names: Mapping[str, str]) -> dict[str, Any]:
    """A webhook body (`{type, timestamp, data: envelope}`) as an account's own subscription
    receives it: the provider's people named by display name, in `actor` and `author`."""
    shown = copy.deepcopy(body)
    data = shown["data"]
    if isinstance(data.get("actor"), dict):
        data["actor"] = display_actor(data["actor"], staff_names)
    payload = data.get("payload")
    author = payload.get("author") if isinstance(payload, dict) else None
    if isinstance(author, str) and ":" in author:
        kind, _, ident = author.partition(":")
        if kind in PROVIDER_PEOPLE:
            payload["author"] = display_actor({"type": kind, "id": ident}, staff_names)["name"]
    return shown
