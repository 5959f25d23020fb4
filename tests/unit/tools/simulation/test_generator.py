"""The simulated event source: deterministic, valid per contract, personas as declared."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from segstream.domain.contracts import EVENT_TYPES, Rejection, parse_event, role_for
from segstream.domain.events import BY_TYPE_NAME
from segstream.tools import simulate
from segstream.tools.publish import encode
from segstream.tools.simulation import Simulation, SimulationConfig, generate

Events = list[dict[str, Any]]

SMALL = SimulationConfig(seed=7, customers_per_shop=40, start=date(2025, 1, 1), days=365)
MESSY = SimulationConfig(
    seed=7,
    customers_per_shop=40,
    start=date(2025, 1, 1),
    days=365,
    invalid_ratio=0.02,
    duplicate_ratio=0.02,
    out_of_order_ratio=0.05,
)
INTERVAL_DAYS = {"week": (7, 7), "month": (28, 31), "quarter": (89, 92)}


@pytest.fixture(scope="module")
def clean() -> Simulation:
    """Six shops of 40 customers over 2025, no mess."""
    return generate(SMALL)


@pytest.fixture(scope="module")
def messy() -> Simulation:
    """The same shops and customers, with duplicates, late events and invalid records."""
    return generate(MESSY)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _days(later: str, earlier: str) -> float:
    return (_time(later) - _time(earlier)).total_seconds() / 86400


def _by_customer(sim: Simulation, persona: str | None = None) -> dict[tuple[str, str], Events]:
    """Each customer's events in time order, optionally only customers of one persona."""
    wanted = {(t.shop_id, t.customer_id) for t in sim.truth if persona in (None, t.persona)}
    grouped: dict[tuple[str, str], Events] = defaultdict(list)
    for event in sim.events:
        key = (event["shop_id"], event["customer_id"])
        if key in wanted:
            grouped[key].append(event)
    for events in grouped.values():
        events.sort(key=lambda event: event["occurred_at"])
    return grouped


def _of_type(events: Events, kind: str) -> Events:
    return [event for event in events if event["type"] == kind]


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    config = SimulationConfig(
        seed=3,
        customers_per_shop=10,
        days=120,
        duplicate_ratio=0.05,
        invalid_ratio=0.05,
        out_of_order_ratio=0.05,
    )
    first, again = generate(config), generate(config)
    other = generate(SimulationConfig(seed=4, customers_per_shop=10, days=120))
    assert first == again
    assert [encode(event) for event in first.events] == [encode(e) for e in again.events]
    assert first.events != other.events


def test_every_event_is_valid_for_its_topic(clean: Simulation) -> None:
    for event in clean.events:
        parsed = parse_event(encode(event), BY_TYPE_NAME[event["type"]])
        assert not isinstance(parsed, Rejection), (parsed, event)
        assert role_for(event) == f"{event['type']}s"


def test_clean_stream_is_in_event_time_order_with_unique_ids(clean: Simulation) -> None:
    times = [event["occurred_at"] for event in clean.events]
    assert times == sorted(times)
    assert len({event["event_id"] for event in clean.events}) == len(clean.events)
    assert {t.shop_id for t in clean.truth} == {
        "coffee-roaster-1",
        "tea-house-1",
        "snack-box-1",
        "meal-kit-1",
        "soap-maker-1",
        "book-club-1",
    }
    assert {t.customer_id for t in clean.truth} == {f"c-{n:04d}" for n in range(1, 41)}


def test_invalid_records_are_all_rejected_for_every_reason(messy: Simulation) -> None:
    reasons = set()
    for role, raw in messy.invalid:
        rejection = parse_event(raw, EVENT_TYPES[role])
        assert isinstance(rejection, Rejection), raw
        reasons.add(rejection.reason)
    assert reasons == {"undecodable", "invalid_json", "schema_invalid", "wrong_topic"}
    assert len(messy.invalid) == round(0.02 * len(generate(SMALL).events))


def test_duplicates_repeat_an_earlier_event_exactly(messy: Simulation) -> None:
    first_seen: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for event in messy.events:
        earlier = first_seen.setdefault(event["event_id"], event)
        if earlier is not event:
            assert earlier == event
            duplicates += 1
    assert duplicates == round(0.02 * len(first_seen))


def test_mess_changes_send_order_not_the_events(clean: Simulation, messy: Simulation) -> None:
    unique = {event["event_id"]: event for event in messy.events}
    assert sorted(unique.values(), key=encode) == sorted(clean.events, key=encode)
    times = [event["occurred_at"] for event in messy.events]
    late = sum(1 for before, now in pairwise(times) if now < before)
    assert late > 0
    assert messy.truth == clean.truth


def test_outbox_spreads_invalid_records_among_the_events(messy: Simulation) -> None:
    outbox = messy.outbox()
    assert len(outbox) == len(messy.events) + len(messy.invalid)
    positions = [index for index, (_, value) in enumerate(outbox) if isinstance(value, bytes)]
    assert [outbox[index] for index in positions] == messy.invalid
    assert positions[0] < len(outbox) // 10 and positions[-1] > len(outbox) * 9 // 10


def test_quick_cancellers_cancel_within_five_weeks(clean: Simulation) -> None:
    customers = _by_customer(clean, "quick_canceller")
    assert customers
    for events in customers.values():
        signup, cancellation = events[0], events[-1]
        assert signup["type"] == "signup" and cancellation["type"] == "cancellation"
        assert _days(cancellation["occurred_at"], signup["occurred_at"]) <= 35
        assert len(_of_type(events, "order")) <= 2


def test_loyal_customers_renew_every_interval(clean: Simulation) -> None:
    customers = _by_customer(clean, "loyal")
    assert customers
    for events in customers.values():
        assert not _of_type(events, "cancellation")
        plan = events[0]["plan"]
        renewals = [event for event in events if event.get("is_renewal")]
        assert sum("plan" in renewal for renewal in renewals) <= 1
        for before, after in pairwise(renewals):
            if "plan" in after:
                plan = after["plan"]
                continue
            low, high = INTERVAL_DAYS[plan["interval"]]
            assert low - 1 <= _days(after["occurred_at"], before["occurred_at"]) <= high + 1
        assert _days("2026-01-01T00:00:00Z", renewals[-1]["occurred_at"]) <= 93


def test_holiday_gifters_appear_only_in_november_and_december(clean: Simulation) -> None:
    customers = _by_customer(clean, "holiday_gifter")
    assert customers
    for events in customers.values():
        assert {_time(event["occurred_at"]).month for event in events} <= {11, 12}
        assert events[0]["plan"]["tier"] == "gift"


def test_holiday_gifters_are_left_out_when_the_window_has_no_season() -> None:
    sim = generate(SimulationConfig(seed=1, customers_per_shop=30, days=180))
    assert {t.persona for t in sim.truth} == {
        "loyal",
        "occasional",
        "quick_canceller",
        "declining_big_spender",
        "bargain_hunter",
    }
    assert len(sim.truth) == 6 * 30


def test_declining_big_spenders_spend_less_and_less_often(clean: Simulation) -> None:
    customers = _by_customer(clean, "declining_big_spender")
    assert customers
    for events in customers.values():
        orders = _of_type(events, "order")
        third = len(orders) // 3
        early = sum(order["amount"] for order in orders[:third]) / third
        late = sum(order["amount"] for order in orders[-third:]) / third
        assert late < early
        first_gap = _days(orders[1]["occurred_at"], orders[0]["occurred_at"])
        assert _days(orders[-1]["occurred_at"], orders[-2]["occurred_at"]) > first_gap


def test_bargain_hunters_order_with_codes_and_cancel_on_price(clean: Simulation) -> None:
    customers = _by_customer(clean, "bargain_hunter")
    assert customers
    for events in customers.values():
        renewals = [event for event in events if event.get("is_renewal")]
        with_code = [event for event in renewals if "discount_code" in event]
        assert len(with_code) >= max(1, len(renewals) - 1)
        if events[-1]["type"] == "cancellation":
            assert events[-1]["reason"] == "price"


def test_occasional_customers_buy_one_offs_at_irregular_gaps(clean: Simulation) -> None:
    customers = _by_customer(clean, "occasional")
    assert customers
    gaps = set()
    for events in customers.values():
        orders = _of_type(events, "order")
        assert events[0]["plan"]["tier"] == "pay_as_you_go"
        assert not _of_type(events, "cancellation")
        assert not any(order["is_renewal"] for order in orders)
        for before, after in pairwise(orders):
            gaps.add(round(_days(after["occurred_at"], before["occurred_at"])))
    assert min(gaps) >= 18 and max(gaps) <= 80 and len(gaps) > 20


def test_truth_matches_the_events(clean: Simulation) -> None:
    customers = _by_customer(clean)
    assert len(customers) == len(clean.truth)
    for truth in clean.truth:
        events = customers[(truth.shop_id, truth.customer_id)]
        assert events[0]["type"] == "signup" and events[0]["occurred_at"] == truth.signup_at
        cancellations = _of_type(events, "cancellation")
        if truth.lapsed:
            assert truth.churned and not cancellations
            assert truth.churned_at == events[-1]["occurred_at"]
        elif truth.churned:
            assert [event["occurred_at"] for event in cancellations] == [truth.churned_at]
        else:
            assert truth.churned_at is None and not cancellations
    churned = {t.persona for t in clean.truth if t.churned}
    assert churned == {"quick_canceller", "declining_big_spender", "bargain_hunter"}
    assert any(t.lapsed for t in clean.truth)


def test_referrers_signed_up_earlier_at_the_same_shop(clean: Simulation) -> None:
    signups = {(t.shop_id, t.customer_id): t.signup_at for t in clean.truth}
    referred = [event for event in clean.events if "referred_by" in event]
    assert referred
    for event in referred:
        assert signups[(event["shop_id"], event["referred_by"])] <= event["occurred_at"]


@pytest.mark.parametrize(
    "changes",
    [
        {"days": 0},
        {"invalid_ratio": 1.5},
        {"persona_mix": {"nobody": 1.0}},
        {"persona_mix": {"loyal": 0.0}},
        {"shops_per_kind": 0},
    ],
)
def test_bad_configurations_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**changes)


def test_simulate_cli_dry_run_prints_events_and_writes_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.csv"
    argv = ["--customers", "5", "--days", "60", "--seed", "2", "--dry-run", "--truth", str(truth)]
    assert simulate.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = generate(
        SimulationConfig(seed=2, customers_per_shop=5, days=60, start=date(2025, 11, 2))
    )
    assert [json.loads(line) for line in lines] == expected.events
    rows = list(csv.DictReader(truth.open(encoding="utf-8")))
    assert len(rows) == 30 and set(rows[0]) == set(simulate.TRUTH_COLUMNS)
    assert {row["churned"] for row in rows} <= {"true", "false"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--days", "0"],
            "segstream simulate: error: argument --days: must be at least 1, got 0\n",
        ),
        (
            ["--rate", "-5"],
            "segstream simulate: error: argument --rate: must be a positive number, got -5\n",
        ),
    ],
)
def test_simulate_cli_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        simulate.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == message


def test_simulate_cli_bad_settings_exit_2_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP", "no-port")
    assert simulate.main(["--customers", "1", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simulate: error: invalid segstream settings: SEGSTREAM_KAFKA_BOOTSTRAP")
    assert err.count("\n") == 1
