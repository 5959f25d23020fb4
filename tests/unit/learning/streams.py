"""Simulated shops folded into customer snapshots in the order the pipeline evaluates them.

Like :class:`segstream.engine.pipeline.Pipeline` without Kafka: every event is applied to its
customer's state and the customer is evaluated at the shop's stream time; every
``rescore_days`` of stream time every known customer is evaluated again (a stand-in for
the review schedule). The snapshots share their customer's segments and memory, so
:func:`evaluate` leaves a model the same per-customer trail the pipeline leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta

from segstream.domain.customer import CustomerState, apply
from segstream.domain.events import from_payload
from segstream.domain.features import CustomerSnapshot, snapshot
from segstream.segments import SegmentModel
from segstream.tools.simulation import Simulation, SimulationConfig, generate
from segstream.tools.simulation.shops import KINDS, Shop


def one_shop(
    seed: int, customers: int, days: int = 365, kind: int = 0, start: date = date(2025, 1, 1)
) -> Simulation:
    """A simulation of a single shop of one kind (the default persona mix)."""
    shop = Shop(f"{KINDS[kind].slug}-1", KINDS[kind])
    return generate(
        SimulationConfig(
            seed=seed, shops=(shop,), customers_per_shop=customers, start=start, days=days
        )
    )


def evaluations(
    simulation: Simulation, rescore_days: float = 1.0, mark_reviews: bool = False
) -> Iterator[CustomerSnapshot]:
    """Snapshots of one shop's customers, as the pipeline would evaluate them (with
    ``mark_reviews`` the rescores are flagged as the pipeline flags reviews)."""
    states: dict[str, CustomerState] = {}
    now = None
    rescored = None
    for payload in simulation.events:
        event = from_payload(payload)
        now = event.occurred_at if now is None else max(now, event.occurred_at)
        rescored = rescored or now
        state = states.setdefault(
            event.customer_id, CustomerState(event.shop_id, event.customer_id)
        )
        if apply(state, event):
            yield snapshot(state, now)
        if now - rescored >= timedelta(days=rescore_days):
            rescored = now
            for customer_id in sorted(states):
                found = snapshot(states[customer_id], now)
                yield replace(found, review=True) if mark_reviews else found


def evaluate(model: SegmentModel, view: CustomerSnapshot) -> str | None:
    """What the pipeline does with one snapshot: learn, assign, and record the segment in
    the customer's state (the view shares it), where the model finds it next time."""
    model.learn(view)
    label = model.assign(view)
    if label is None:
        view.segments.pop(model.name, None)
    else:
        view.segments[model.name] = label
    return label


def final_snapshots(simulation: Simulation) -> dict[str, CustomerSnapshot]:
    """Every customer's snapshot at the end of the stream, by customer id."""
    events = [from_payload(payload) for payload in simulation.events]
    end = max(event.occurred_at for event in events)
    states: dict[str, CustomerState] = {}
    for event in events:
        state = states.setdefault(
            event.customer_id, CustomerState(event.shop_id, event.customer_id)
        )
        apply(state, event)
    return {customer_id: snapshot(state, end) for customer_id, state in sorted(states.items())}
