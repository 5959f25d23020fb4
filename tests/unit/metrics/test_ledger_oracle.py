"""Property: simulated histories, delivered shuffled within the allowed lateness, give the
same windows as an independent pandas computation over the whole event list."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from segstream.domain.events import from_payload, parse_time
from segstream.metrics.ledger import MetricsLedger
from segstream.metrics.mrr import customer_mrr
from segstream.metrics.windows import WindowMetrics
from segstream.tools.simulation.generator import SimulationConfig, generate
from tests.metrics_oracle import (
    AMOUNTS,
    ATTRIBUTE_AMOUNTS,
    ATTRIBUTE_COUNTS,
    COUNTS,
    AttributeOracle,
    MetricsOracle,
)
from tests.unit.metrics.builders import Shop, tier_and_status

Payload = dict[str, Any]
LATENESS_DAYS = 7
ORDERS = ("orders", "ordering_customers", "renewals")


def shuffled_within_lateness(events: list[Payload], rng: random.Random) -> list[Payload]:
    """Each event delayed by up to the allowed lateness (less a second), then sent in
    delivery order: every event is on time, most arrive out of order."""
    most = LATENESS_DAYS * 86400 - 1
    return sorted(
        events,
        key=lambda e: parse_time(e["occurred_at"]) + timedelta(seconds=rng.uniform(0, most)),
    )


def windows(today: date) -> list[tuple[str, date]]:
    """Every month, ISO week and 30-day window of the stream, and a sample of days."""
    first = date(2025, 9, 1)
    days = [first + timedelta(days=n) for n in range((today - first).days + 1)]
    chosen = [("month", d) for d in days if d.day == 1]
    chosen += [("week", d) for d in days if d.weekday() == 0]
    chosen += [("30d", d) for d in days[::9]]
    chosen += [("day", d) for d in days[::5]]
    return chosen


def feed(payloads: list[Payload], ledger: MetricsLedger) -> dict[str, Shop]:
    """Send every payload to its shop, re-scoring segments whenever a shop's day turns."""
    shops: dict[str, Shop] = {}
    for payload in payloads:
        shop = shops.setdefault(payload["shop_id"], Shop(ledger, tier_and_status))
        day_before = shop.stream_time.date() if shop.stream_time else None
        (recorded,) = shop.send(from_payload(payload))
        assert recorded is not None
        assert not recorded.too_late
        assert shop.stream_time is not None
        if day_before is not None and shop.stream_time.date() != day_before:
            shop.rescore()
    return shops


def assert_matches(got: WindowMetrics, expected: Payload, orders: bool) -> None:
    where = f"{got.dimension} {got.grain} {got.start}"
    for name in COUNTS + (ORDERS if orders else ()):
        assert getattr(got, name) == expected[name], f"{where}: {name}"
    for name in AMOUNTS + (("revenue", "renewal_revenue") if orders else ()):
        assert getattr(got, name) == pytest.approx(expected[name], abs=1e-4), f"{where}: {name}"
    start, end = expected["subscribers_start"], expected["subscribers_end"]
    if start:
        churned = expected["churned_start_subscribers"]
        assert got.churn_rate == pytest.approx(churned / start)
        joined = expected["new_subscribers"] + expected["reactivations"]
        assert got.retention_rate == pytest.approx((end - joined) / start)
    lost = expected["churn_mrr"] + expected["contraction_mrr"]
    if expected["mrr_start"]:
        assert got.gross_mrr_churn_rate == pytest.approx(lost / expected["mrr_start"], abs=1e-6)
    if lost > 1e-6:
        gained = expected["new_mrr"] + expected["expansion_mrr"] + expected["reactivation_mrr"]
        assert got.quick_ratio == pytest.approx(gained / lost, rel=1e-6, abs=1e-6), where


@pytest.mark.parametrize("seed", [11, 12])
def test_shuffled_stream_matches_the_oracle(seed: int) -> None:
    config = SimulationConfig(
        seed=seed, shops_per_kind=1, customers_per_shop=40, start=date(2025, 9, 1), days=120
    )
    events = generate(config).events
    ledger = MetricsLedger({}, allowed_lateness_days=LATENESS_DAYS)
    shops = feed(shuffled_within_lateness(events, random.Random(seed)), ledger)
    oracle = MetricsOracle(events)
    checked = 0
    for shop_id, shop in shops.items():
        assert shop.stream_time is not None
        for dimension in oracle.dimensions(shop_id):
            for grain, start in windows(shop.stream_time.date()):
                got = ledger.window(shop_id, grain, start, dimension)
                expected = oracle.window(shop_id, got.start, got.end, dimension)
                assert_matches(got, expected, orders=dimension == "all")
                checked += 1
    assert checked > 1000
    assert (
        sum(ledger.window(s, "month", date(2025, 9, 1)).churned_subscribers for s in shops)
        + sum(ledger.window(s, "month", date(2025, 10, 1)).churned_subscribers for s in shops)
        > 0
    )


@pytest.mark.parametrize("seed", [13])
def test_segment_dimensions_add_up_to_the_paying_customers_in_them(seed: int) -> None:
    config = SimulationConfig(
        seed=seed, shops_per_kind=1, customers_per_shop=40, start=date(2025, 9, 1), days=120
    )
    ledger = MetricsLedger({}, allowed_lateness_days=LATENESS_DAYS)
    shops = feed(shuffled_within_lateness(generate(config).events, random.Random(seed)), ledger)
    for shop_id, shop in shops.items():
        assert shop.stream_time is not None
        today = shop.stream_time.date()
        end_of_today = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
        end_of_today -= timedelta(microseconds=1)
        for dimension in ledger.dimensions(shop_id):
            if not dimension.startswith("segment:"):
                continue
            model, _, segment = dimension.removeprefix("segment:").partition("=")
            members = [s for s in shop.states.values() if s.segments.get(model) == segment]
            paying = [customer_mrr(s, end_of_today) for s in members]
            got = ledger.window(shop_id, "day", today, dimension)
            assert got.subscribers_end == sum(1 for mrr in paying if mrr > 0), dimension
            assert got.mrr_end == pytest.approx(sum(paying), abs=1e-4), dimension


def random_status_histories(seed: int, customers: int = 60) -> list[Payload]:
    """Messier lives than the simulator's: several signups, cancellations effective now or
    weeks later, re-signups while cancelling, orders. One plan per customer (the state keeps
    only the latest plan, see docs/metrics.md, "Late events")."""
    rng = random.Random(seed)
    start = datetime(2025, 9, 1, tzinfo=UTC)
    events: list[Payload] = []
    for number in range(customers):
        customer = f"c-{number:03d}"
        price, interval = rng.choice(
            [(9.0, "week"), (30.0, "month"), (75.0, "quarter"), (240.0, "year"), (0.0, "month")]
        )
        first = start + timedelta(seconds=rng.randrange(40 * 86400))
        moments = sorted(
            first + timedelta(seconds=rng.randrange(50 * 86400)) for _ in range(rng.randint(0, 6))
        )
        kinds = ["signup"] + [
            rng.choice(["signup", "cancellation", "order", "order"]) for _ in moments
        ]
        for n, (kind, when) in enumerate(zip(kinds, [first, *moments], strict=True)):
            payload: Payload = {
                "schema_version": 1,
                "type": kind,
                "event_id": f"{seed}-{customer}-{n}",
                "shop_id": "mess-1",
                "customer_id": customer,
                "occurred_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            if kind == "signup":
                payload["acquisition_channel"] = rng.choice(["web", "referral"])
                payload["plan"] = {
                    "plan_id": "p",
                    "price": price,
                    "currency": "EUR",
                    "interval": interval,
                }
            elif kind == "cancellation":
                payload["reason"] = rng.choice(["price", "moved"])
                if rng.random() < 0.7:
                    later = when + timedelta(seconds=rng.randrange(-86400, 25 * 86400))
                    payload["effective_at"] = later.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                payload.update(
                    order_id=f"o-{n}",
                    amount=round(rng.uniform(0, 60), 2),
                    currency="EUR",
                    is_renewal=rng.random() < 0.5,
                )
            events.append(payload)
    return events


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_messy_status_histories_in_any_order_within_lateness_match_the_oracle(
    seed: int,
) -> None:
    events = random_status_histories(seed)
    ledger = MetricsLedger({}, allowed_lateness_days=LATENESS_DAYS)
    shops = feed(shuffled_within_lateness(events, random.Random(seed)), ledger)
    oracle = MetricsOracle(events)
    today = shops["mess-1"].stream_time
    assert today is not None
    for dimension in oracle.dimensions("mess-1"):
        for grain, start in windows(today.date()):
            got = ledger.window("mess-1", grain, start, dimension)
            expected = oracle.window("mess-1", got.start, got.end, dimension)
            assert_matches(got, expected, orders=dimension == "all")
    everything = ledger.window("mess-1", "month", date(2025, 10, 1))
    assert everything.reactivations and everything.churned_subscribers


ATTRIBUTE_PREFIXES = ("channel:", "cancel_reason:", "plan:", "interval:")


def attribute_history(seed: int) -> list[Payload]:
    """Simulated shops and the messy histories together, in time order."""
    config = SimulationConfig(
        seed=seed, shops_per_kind=1, customers_per_shop=25, start=date(2025, 9, 1), days=100
    )
    events = generate(config).events + random_status_histories(seed)
    return sorted(events, key=lambda e: parse_time(e["occurred_at"]))


@pytest.mark.parametrize("seed", [31, 32])
def test_attribute_dimensions_in_time_order_match_the_oracle(seed: int) -> None:
    """Channel, cancellation reason, plan and billing interval: every window of every
    value equals the oracle's attribution (see :class:`AttributeOracle`)."""
    events = attribute_history(seed)
    ledger = MetricsLedger({}, allowed_lateness_days=LATENESS_DAYS)
    shops = feed(events, ledger)
    oracle = AttributeOracle(MetricsOracle(events))
    checked: set[str] = set()
    for shop_id, shop in shops.items():
        assert shop.stream_time is not None
        today = shop.stream_time.date()
        for dimension in ledger.dimensions(shop_id):
            if not dimension.startswith(ATTRIBUTE_PREFIXES):
                continue
            for grain, start in windows(today)[::4]:
                got = ledger.window(shop_id, grain, start, dimension)
                expected = oracle.window(shop_id, got.start, got.end, dimension)
                where = f"{shop_id} {dimension} {grain} {got.start}"
                for name in ATTRIBUTE_COUNTS:
                    assert getattr(got, name) == expected[name], f"{where}: {name}"
                for name in ATTRIBUTE_AMOUNTS:
                    assert getattr(got, name) == pytest.approx(expected[name], abs=1e-4), (
                        f"{where}: {name}"
                    )
            checked.add(dimension.partition(":")[0])
    assert checked == {prefix.rstrip(":") for prefix in ATTRIBUTE_PREFIXES}
