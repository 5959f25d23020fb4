"""harness.badinput: varied, deterministic bad records whose reasons are exact."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from harness.badinput import (
    KINDS,
    LARGEST_RECORD,
    bad_record,
    bad_records,
    bound_events,
    valid_event,
)
from segstream.domain.contracts import (
    EVENT_TYPES,
    INPUT_ROLES,
    MAX_EVENT_BYTES,
    Rejection,
    parse_event,
)

SHOPS = ["roastery-42", "tea.house_7", "SnackBox"]


@pytest.mark.parametrize("seed", [0, 1, 7, 2026])
def test_every_record_gets_exactly_its_expected_reason(seed: int) -> None:
    for role, raw, reason in bad_records(seed, 2 * len(KINDS), SHOPS):
        result = parse_event(raw, EVENT_TYPES[role])
        assert isinstance(result, Rejection), (role, raw[:200])
        assert result.reason == reason, (role, raw[:200], result.detail)


@pytest.mark.parametrize("seed", [0, 3])
def test_the_reasons_hold_later_too(seed: int) -> None:
    # Valid parts are dated in the past; "2099" stays in the future for long enough.
    later = datetime.now(UTC) + timedelta(days=3 * 365)
    for role, raw, reason in bad_records(seed, len(KINDS), SHOPS):
        result = parse_event(raw, EVENT_TYPES[role], later)
        assert isinstance(result, Rejection) and result.reason == reason


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_rejected_as_expected_for_every_role_it_uses(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(6):
        role, raw, reason = bad_record(rng, kind, rng.choice(SHOPS))
        result = parse_event(raw, EVENT_TYPES[role])
        assert isinstance(result, Rejection) and result.reason == reason, (kind, result)


def test_there_are_many_kinds_and_every_reason_is_covered() -> None:
    assert len(KINDS) >= 20
    reasons = Counter(reason for _, _, reason in bad_records(5, len(KINDS), SHOPS))
    assert set(reasons) == {
        "undecodable",
        "too_large",
        "invalid_json",
        "schema_invalid",
        "wrong_topic",
        "implausible_time",
    }


def test_count_is_respected_and_kinds_are_spread_evenly() -> None:
    assert bad_records(1, 0, SHOPS) == []
    assert len(bad_records(1, 5, SHOPS)) == 5
    records = bad_records(1, 3 * len(KINDS) + 4, SHOPS)
    assert len(records) == 3 * len(KINDS) + 4
    roles = Counter(role for role, _, _ in records)
    assert set(roles) == set(INPUT_ROLES)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert bad_records(11, 40, SHOPS) == bad_records(11, 40, SHOPS)
    assert bad_records(11, 40, SHOPS) != bad_records(12, 40, SHOPS)


def test_sizes_stay_below_the_broker_limit_and_include_both_oversizes() -> None:
    sizes = [len(raw) for _, raw, _ in bad_records(4, 2 * len(KINDS), SHOPS)]
    assert max(sizes) <= LARGEST_RECORD <= 950_000
    assert any(65_536 < size < 100_000 for size in sizes)
    assert any(size > 850_000 for size in sizes)
    assert min(sizes) == 0  # the empty value


def test_records_name_only_the_given_shops() -> None:
    seen = set()
    for _, raw, _ in bad_records(9, 3 * len(KINDS), SHOPS):
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict) and "shop_id" in event:
            seen.add(event["shop_id"])
    assert seen == set(SHOPS)


def test_wrong_topic_records_are_valid_events_of_another_type() -> None:
    rng = random.Random(3)
    for _ in range(20):
        role, raw, reason = bad_record(rng, "wrong_topic", "roastery-42")
        assert reason == "wrong_topic"
        event = parse_event(raw)
        assert isinstance(event, dict) and event["type"] != EVENT_TYPES[role].type_name


def test_oversize_records_would_be_valid_apart_from_their_size() -> None:
    rng = random.Random(8)
    for kind in ("oversize_70kb", "oversize_900kb"):
        role, raw, _ = bad_record(rng, kind, "roastery-42")
        assert len(raw) > MAX_EVENT_BYTES
        event = json.loads(raw)
        del event["note"]
        assert isinstance(parse_event(json.dumps(event).encode(), EVENT_TYPES[role]), dict)


def test_valid_events_are_valid() -> None:
    rng = random.Random(1)
    for role in INPUT_ROLES:
        for _ in range(20):  # every example of the type, with many envelopes
            raw = json.dumps(valid_event(rng, role, "roastery-42")).encode()
            assert isinstance(parse_event(raw, EVENT_TYPES[role]), dict), raw


@pytest.mark.parametrize("shops", [[], ["bad shop"], ["ok", "-leading-dash"]])
def test_invalid_shop_ids_are_refused(shops: list[str]) -> None:
    with pytest.raises(ValueError, match="shop"):
        bad_records(0, 10, shops)


def test_events_at_every_bound_are_valid_and_reach_each_bound() -> None:
    """The worker must process these (the integration bad-input run sends them among the
    broken ones): every one valid, and the numeric extremes and longest values present."""
    made = bound_events(3, SHOPS)
    assert {role for role, _ in made} == set(INPUT_ROLES)
    texts = []
    for role, event in made:
        raw = json.dumps(event, ensure_ascii=False).encode()
        assert len(raw) <= MAX_EVENT_BYTES
        assert not isinstance(parse_event(raw, EVENT_TYPES[role]), Rejection), event
        texts.append(raw)
    amounts = [event.get("amount") for role, event in made if role == "orders"]
    assert {1_000_000_000, 5e-324, 0} <= set(amounts)
    assert any(str(a) == "-0.0" for a in amounts)
    assert any(len(e["customer_id"]) == 128 and len(e["event_id"]) == 128 for _, e in made)
    preferences = [
        e["attributes"]["preferences"] for _, e in made if "preferences" in e.get("attributes", {})
    ]
    assert any(len(p) == 32 and all(len(tag) == 256 for tag in p) for p in preferences)
    assert len({e["event_id"] for _, e in made}) == len(made)
