"""The replay's report from the worker's progress records and dead letters, without Kafka
(tests/integration/test_replay.py reads them from a real worker)."""

from __future__ import annotations

import base64
import json

from aiokafka.structs import RecordMetadata

from segstream.tools.replay_report import (
    Outcome,
    Progress,
    _letter,
    difference,
    firsts_of,
    handled,
    rate_line,
    report_lines,
    targets,
)


def _receipt(topic: str, partition: int, offset: int) -> RecordMetadata:
    return RecordMetadata(topic, partition, None, offset, 0, 0, -1)


def test_the_progress_offsets_tell_how_much_of_the_replay_is_handled() -> None:
    receipts = [_receipt("orders", 3, 10), _receipt("orders", 3, 12), _receipt("signups", 3, 4)]
    ends, firsts = targets(receipts), firsts_of(receipts)
    assert ends == {("orders", 3): 13, ("signups", 3): 5}
    assert firsts == {("orders", 3): 10, ("signups", 3): 4}
    assert handled({}, firsts, ends) == 0
    partway = {3: Progress({"orders": 12, "signups": 4})}
    assert handled(partway, firsts, ends) == 2
    beyond = {3: Progress({"orders": 40, "signups": 9})}  # others' records after ours
    assert handled(beyond, firsts, ends) == 4


def test_counts_are_the_difference_and_others_are_what_is_not_ours() -> None:
    before = {"order": {"processed": 5}, "signup": {"processed": 1}}
    after = {"order": {"processed": 9, "duplicate": 1}, "signup": {"processed": 1}}
    counts = difference(before, after)
    assert counts == {"order": {"processed": 4, "duplicate": 1}}
    assert Outcome(counts, ours=5).others == 0
    assert Outcome(counts, ours=3).others == 2
    rerouted = {"order": {"rerouted": 2, "processed": 2}}  # counted on both topics
    assert Outcome(rerouted, ours=2).others == 0


def test_the_stored_progress_record_is_read() -> None:
    stored = {"offsets": {"orders": 7}, "counts": {"order": {"processed": 7}}}
    assert Progress.of(stored) == Progress({"orders": 7}, {"order": {"processed": 7}})
    assert Progress.of(None) == Progress()


def _dead_letter(original: dict[str, object] | bytes, reason: str = "implausible_time") -> bytes:
    raw = original if isinstance(original, bytes) else json.dumps(original).encode()
    return json.dumps(
        {
            "reason": reason,
            "detail": "$.occurred_at: '1995-01-05T00:00:00Z' is before 1998-01-01T00:00:00Z",
            "original_value_b64": base64.b64encode(raw).decode(),
        }
    ).encode()


def test_only_the_replays_dead_letters_are_its_own() -> None:
    ours = _letter(_dead_letter({"event_id": "e-1"}), {"e-1"})
    assert ours is not None and ours["event_id"] == "e-1"
    assert _letter(_dead_letter({"event_id": "e-2"}), {"e-1"}) is None
    assert _letter(_dead_letter(b"\xff not json"), {"e-1"}) is None
    assert _letter(b"not a letter", {"e-1"}) is None
    assert _letter(None, {"e-1"}) is None


def test_the_report_lists_outcomes_and_dead_letters_with_their_rows() -> None:
    letters = [
        {"event_id": f"e-{n}", "reason": "implausible_time", "detail": f"detail {n}"}
        for n in range(3)
    ]
    letters.append({"event_id": "e-9", "reason": "processing_error", "detail": "a bug"})
    outcome = Outcome(
        {"order": {"processed": 7, "dead_lettered": 4}, "signup": {"duplicate": 2}},
        ours=12,
        letters=letters,
    )
    where = {"e-0": "a.csv:2", "e-1": "a.csv:3", "e-2": "a.csv:9"}
    assert report_lines(outcome, where, listed=2) == [
        "  order: 7 processed, 4 dead-lettered",
        "  signup: 2 duplicate",
        "  (these counts include 1 records of other producers or shops the worker handled "
        "meanwhile in the same partition)",
        "  dead letters of this replay: 4 (implausible_time 3, processing_error 1)",
        "    a.csv:2: implausible_time: detail 0",
        "    a.csv:3: implausible_time: detail 1",
        "    ... and 2 more",
    ]


def test_rate_lines_say_the_time_left() -> None:
    assert rate_line("sent", 0, 10, 0.0) == "replay: sent 0/10 (0 %), 0/s, time left unknown"
    assert rate_line("worker handled", 50, 100, 2.0) == (
        "replay: worker handled 50/100 (50 %), 25/s, about 2 s left"
    )
