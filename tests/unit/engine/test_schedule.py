"""A shop's review schedule keeps at most ``limit`` due times in memory, and hands out the
same reviews in the same order as one that keeps them all."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bench.outputs import run
from segstream.engine.books import Schedule
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
