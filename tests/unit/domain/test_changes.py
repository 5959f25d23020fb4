"""A segment change's id: the same move carries the same id however often it is emitted,
and two different moves never share one (a customer who leaves a segment a model retired,
comes back, and leaves it again moved twice); neither depends on when the model's pass
got to the customer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from segstream.domain import changes
from segstream.domain.changes import Cause, SegmentChange

JULY = datetime(2025, 7, 16, 4, 11, 30, tzinfo=UTC)
AUGUST = datetime(2025, 8, 29, 22, 35, 35, tzinfo=UTC)


def _left(previous_since: float | None, at: datetime) -> SegmentChange:
    return SegmentChange(
        "book-club-2", "c-0140", "cluster", "c4", "c13", at, Cause("model"),
        previous_since=previous_since,
    )  # fmt: skip


def test_two_stays_in_a_segment_are_left_under_two_ids() -> None:
    first, second = _left(JULY.timestamp() - 3 * 86400, JULY), _left(JULY.timestamp(), AUGUST)
    assert first.event_id != second.event_id


def test_one_stay_is_left_under_one_id_whenever_the_pass_gets_to_it() -> None:
    since = JULY.timestamp() - 86400
    assert _left(since, JULY).event_id == _left(since, AUGUST).event_id


def test_a_model_move_from_no_segment_is_keyed_by_when_the_customer_left_the_last() -> None:
    def placed(since: float | None, at: datetime) -> SegmentChange:
        return SegmentChange(
            "s", "c", "cluster", None, "c4", at, Cause("model"), previous_since=since
        )

    first, again = placed(None, JULY), placed(JULY.timestamp(), AUGUST)
    assert first.event_id != again.event_id
    assert first.event_id == placed(None, AUGUST).event_id, "not keyed by the pass's time"


def test_a_state_older_than_stays_keeps_the_id_older_releases_gave() -> None:
    legacy = "|".join(["book-club-2", "c-0140", "cluster", "c13", "retired@c4"])
    assert _left(None, JULY).event_id == str(uuid.uuid5(changes._CHANGE_NAMESPACE, legacy))


def test_the_stay_is_not_published() -> None:
    assert "previous_since" not in _left(1.0, JULY).to_json()
