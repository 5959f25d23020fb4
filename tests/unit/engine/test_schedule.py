"""A shop's review schedule keeps at most ``limit`` due times in memory, and hands out the
same reviews in the same order as one that keeps them all."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bench.outputs import run
from segstream.engine.books import Schedule, water_level
from segstream.settings import Settings

START = 1_700_000_000.0


def at(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


class Saved:
    """The customers' saved due times, which a bounded schedule reads back."""

    def __init__(self) -> None:
        self.due: dict[str, float] = {}

    def __call__(self) -> list[tuple[str, float]]:
        return list(self.due.items())


def play(seed: int, limit: int, customers: int = 3_000, steps: int = 40) -> tuple[list[str], int]:
    """Customers get review times, some move or are cancelled, the clock moves and the
    due ones are reviewed (each gets a new time, as a review does): every review handed
    out, in order, and the most due times the schedule held at once."""
    rng = random.Random(seed)
    saved = Saved()
    schedule = Schedule(limit, saved) if limit else Schedule()
    handed: list[str] = []
    most = 0

    def plan(customer_id: str, now: float) -> None:
        roll = rng.random()
        due = None if roll < 0.05 else now + rng.choice([0, 3600, 86_400 * rng.randint(1, 60)])
        if due is None:
            saved.due.pop(customer_id, None)
        else:  # saved as a state saves it: a datetime's timestamp
            saved.due[customer_id] = at(due).timestamp()
        schedule.set(customer_id, None if due is None else at(due))

    now = START
    for step in range(steps):
        for number in rng.sample(range(customers), customers // 10):
            plan(f"c-{number:05d}", now)
            most = max(most, len(schedule))
        now += 86_400 * rng.uniform(0.2, 3)
        if step % 7 == 3:
            handed.append(f"any:{schedule.any_due(at(now))}")
        due = list(schedule.pop_due(at(now)))
        handed += due
        for customer_id in due:  # reviewed from the saved state, which gets a new time
            del saved.due[customer_id]
            plan(customer_id, now)
            most = max(most, len(schedule))
    return handed, most


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bounded_schedule_hands_out_what_an_unbounded_one_does(seed: int) -> None:
    everything, most = play(seed, limit=0)
    assert most > 2_000  # the unbounded one grows with the customers
    bounded, held = play(seed, limit=100)
    assert held <= 100
    assert bounded == everything
    assert len([r for r in everything if not r.startswith("any:")]) > 5_000


def test_the_heap_stays_bounded_too() -> None:
    saved = Saved()
    schedule = Schedule(50, saved)
    for number in range(20_000):
        customer_id = f"c-{number % 3_000:05d}"
        saved.due[customer_id] = START + (number * 7919) % 100_000
        schedule.set(customer_id, at(saved.due[customer_id]))
        assert len(schedule) <= 50 and len(schedule._heap) <= 2 * 50 + 1025
    assert schedule.horizon is not None


def test_a_customer_past_the_horizon_is_found_when_its_time_comes() -> None:
    saved = Saved()
    schedule = Schedule(4, saved)
    for number in range(10):
        saved.due[f"c-{number}"] = START + number
        schedule.set(f"c-{number}", at(START + number))
    assert len(schedule) <= 4
    assert not schedule.any_due(at(START - 1))
    assert schedule.reloads == 0  # nothing past the horizon was asked for
    assert list(schedule.pop_due(at(START + 9))) == [f"c-{n}" for n in range(10)]
    assert schedule.reloads >= 1 and schedule.horizon is None and len(schedule) == 0


def test_bounded_needs_somewhere_to_reload_from() -> None:
    with pytest.raises(ValueError):
        Schedule(10)


def test_a_worker_with_a_tiny_schedule_produces_the_same_outputs() -> None:
    # the whole pipeline: every change, group, lateness and stored record hashed
    default = run(customers=80, days=60)
    tiny = run(customers=80, days=60, settings=Settings(review_schedule_entries=4))
    assert default.changes > 50
    assert tiny.digest == default.digest


@pytest.mark.parametrize("before", [400, 40], ids=["without a horizon", "with a horizon"])
def test_a_schedule_shrunk_while_in_use_hands_out_the_same_reviews(before: int) -> None:
    saved = Saved()
    rng = random.Random(5)
    kept, every = Schedule(before, saved), Schedule()
    for number in range(300):
        due = at(START + rng.randint(0, 90) * 86_400)
        saved.due[f"c-{number:03d}"] = due.timestamp()
        kept.set(f"c-{number:03d}", due)
        every.set(f"c-{number:03d}", due)
    kept.resize(8)  # the worker's other shops keep more: this one's part fell
    assert len(kept) <= 8 and kept.horizon is not None
    for day in range(0, 95, 5):
        now = at(START + day * 86_400)
        reviewed = list(kept.pop_due(now))
        assert reviewed == list(every.pop_due(now))
        for customer_id in reviewed:
            del saved.due[customer_id]
    assert len(kept) == len(every) == 0


def test_a_worker_sharing_a_tiny_schedule_among_its_shops_produces_the_same_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench.outputs import digest
    from segstream.domain.contracts import EVENT_TYPES
    from segstream.engine import books
    from segstream.tools.publish import encode
    from segstream.tools.simulation.generator import SimulationConfig, generate

    config = SimulationConfig(seed=3, shops_per_kind=1, customers_per_shop=25, days=60)
    raw = [
        (EVENT_TYPES[role], role, encode(value), value["shop_id"])
        for role, value in generate(config).outbox()
        if not isinstance(value, bytes)
    ]
    limits: list[int] = []
    resize = books.Schedule.resize

    def noted(schedule: Schedule, limit: int) -> None:
        limits.append(limit)
        resize(schedule, limit)

    monkeypatch.setattr(books, "SCHEDULE_FLOOR", 4)
    monkeypatch.setattr(books.Schedule, "resize", noted)
    default = digest(raw)
    shared = digest(raw, settings=Settings(review_schedule_worker_entries=24))
    assert limits and min(limits) == 4  # 6 shops share 24: each one's share fell to 4
    assert default.changes > 50
    assert shared.digest == default.digest


def test_the_worker_budget_leaves_a_large_shop_what_the_small_ones_do_not_use() -> None:
    assert water_level([100] * 100 + [50_000], 20_000) == 10_000  # an even share: 198
    assert water_level([5_000, 5_000], 8_000) == 4_000
    assert water_level([10, 20], 500) >= 20  # all fit: nobody is cut
    assert water_level([], 500) >= 0
