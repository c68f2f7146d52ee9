"""What a projection defers while a rebuild replays, and how its finishers are carried."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import pytest

from helpdesk.shared.consumer import Projection, Replay, UnitOfWork

pytestmark = pytest.mark.unit

KEYS = [UUID(int=n) for n in (7, 3, 9, 1, 5)]


def test_the_inputs_a_later_batch_records_replace_the_earlier_ones() -> None:
    replay = Replay()
    replay.defer("fold", {KEYS[0]: "first", KEYS[1]: "only"})
    replay.defer("fold", {KEYS[0]: "last"})
    assert list(replay.drain("fold", 10)) == [{KEYS[1]: "only", KEYS[0]: "last"}]


def test_a_drain_gives_every_key_once_in_key_order_and_empties_the_replay() -> None:
    replay = Replay()
    replay.defer("fold", dict.fromkeys(KEYS, 0))
    chunks = list(replay.drain("fold", 2))
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    assert [key.int for chunk in chunks for key in chunk] == [1, 3, 5, 7, 9]
    assert list(replay.drain("fold", 2)) == []
    assert list(replay.drain("never deferred", 2)) == []


async def _finish(uow: UnitOfWork, inputs: Mapping[UUID, Any]) -> None:
    """A finisher that does nothing (only its registration is under test)."""


def test_a_service_projection_takes_over_the_finishers_of_what_it_includes() -> None:
    handlers = Projection()
    handlers.after_replay("fold")(_finish)
    service = Projection()
    service.include(handlers)
    assert service.finishers == {"fold": _finish}
    with pytest.raises(ValueError, match="fold has a finisher already"):
        service.include(handlers)
