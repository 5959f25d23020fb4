"""Facts do not depend on arrival order.

Kafka orders records within a partition of one topic, never across topics, and a worker
consumes its input topics independently. So the same events may reach the pipeline in
any interleaving of the topics (each topic's records in their order). Whatever the
interleaving, every customer's state must be the same field by field (all but what the
models decide), and so must the shop's facts: its stream time, its journey funnel, its
erasure markers and the referrals pending for customers it does not know.

Referrals are the fact that crosses customers and topics: a signup names a referrer who
may arrive later, earlier, never, or be erased; ``referral_count`` must still be how
many known customers name them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.stores import feed
from segstream.domain.customer import CustomerState
from segstream.domain.events import format_time
from segstream.engine.pipeline import Pipeline
from segstream.metrics.journey import ShopFunnel
from segstream.settings import Settings
from segstream.state.keyspace import customer_key, funnel_key, referrals_key

SHOP = "tea-1"
CUSTOMERS = ("c-0", "c-1", "c-2", "c-3")
STRANGER = "c-9"
"""Named as a referrer, never seen."""
T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
NOT_FACTS = frozenset({"segments", "segment_since", "memory", "due_at", "enrolments"})
"""What the models decide (segments, since when, what they keep, the next review) and what
follows segments (experiment enrolments): learned and ranked segments depend a little on
the order events arrive in (docs/guarantees.md)."""
PLANS = (
    {"plan_id": "basic", "price": 12.5, "currency": "EUR", "interval": "month"},
    {"plan_id": "premium", "price": 30, "currency": "EUR", "interval": "quarter", "tier": "top"},
    {"plan_id": "paused", "price": 0, "currency": "EUR", "interval": "month"},
)

Record = tuple[str, dict[str, Any]]


def envelope(kind: str, number: int, customer: str, at: datetime) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "type": kind,
        "event_id": f"e-{number}",
        "shop_id": SHOP,
        "customer_id": customer,
        "occurred_at": format_time(at),
    }


@st.composite
def event(draw: st.DrawFn, number: int) -> Record:
    """One event of any folded type, at one of few moments (so some share a time)."""
    customer = draw(st.sampled_from(CUSTOMERS))
    at = T0 + timedelta(days=draw(st.integers(0, 40)), hours=draw(st.sampled_from((0, 12))))
    kind = draw(st.sampled_from(KINDS))
    role, body = kind(draw, customer, at)
    return role, {**envelope(body.pop("type"), number, customer, at), **body}


def signup(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "type": "signup",
        "plan": draw(st.sampled_from(PLANS)),
        "acquisition_channel": draw(st.sampled_from(("web", "referral"))),
        "marketing_opt_in": draw(st.booleans()),
        "attributes": {"location_type": draw(st.sampled_from(("urban", "rural")))},
    }
    referrer = draw(st.sampled_from((None, *CUSTOMERS, STRANGER)))  # themselves too
    if referrer is not None:
        body["referred_by"] = referrer
    return "signups", body


def order(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "type": "order",
        "order_id": f"o-{draw(st.integers(0, 10**6))}",
        "amount": draw(st.integers(0, 10_000)) / 100,  # currency amounts: cents
        "currency": "EUR",
        "is_renewal": draw(st.booleans()),
        "items": [{"sku": "s", "category": draw(st.sampled_from(("tea", "cups"))), "quantity": 1}],
    }
    if draw(st.booleans()):
        body["plan"] = draw(st.sampled_from(PLANS))
    return "orders", body


def cancellation(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    effective = at + timedelta(days=draw(st.integers(0, 30)))
    reason = draw(st.sampled_from(("price", "quality", "moved")))
    return "cancellations", {
        "type": "cancellation",
        "reason": reason,
        "effective_at": format_time(effective),
    }


def update(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    return "customer_updates", {
        "type": "customer_updated",
        "attributes": {"location_type": draw(st.sampled_from(("urban", "rural")))},
        "preferred_channel": draw(st.sampled_from(("email", "sms"))),
        "marketing_opt_in": draw(st.booleans()),
    }


def plan_change(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    change = draw(st.sampled_from(("upgrade", "pause", "resume")))
    return "plan_changes", {
        "type": "plan_changed",
        "plan": draw(st.sampled_from(PLANS)),
        "change": change,
    }


def touchpoint(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    return "touchpoints", {
        "type": "touchpoint",
        "touchpoint": draw(st.sampled_from(("site_visit", "trial"))),
        "channel": draw(st.sampled_from(("web", "social"))),
    }


def campaign(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    return "campaign_responses", {
        "type": "campaign_response",
        "campaign_id": "spring",
        "channel": "email",
        "action": draw(st.sampled_from(("opened", "unsubscribed"))),
    }


def feedback(draw: st.DrawFn, customer: str, at: datetime) -> tuple[str, dict[str, Any]]:
    return "feedback_responses", {"type": "feedback", "score": draw(st.integers(1, 5))}


KINDS = (
    signup,
    signup,
    order,
    order,
    cancellation,
    update,
    plan_change,
    touchpoint,
    campaign,
    feedback,
)


@st.composite
def topics(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    """A shop's history as its topics hold it: events of every kind (some at the same
    time, duplicates re-sent later in their topic), and erasures of some customers dated
    at or after their last event."""
    records = [draw(event(number)) for number in range(draw(st.integers(2, 40)))]
    for _ in range(draw(st.integers(0, 3))):  # a producer's retry, later in the topic
        original = draw(st.integers(0, len(records) - 1))
        records.insert(draw(st.integers(original + 1, len(records))), records[original])
    erased = draw(st.lists(st.sampled_from(CUSTOMERS), unique=True, max_size=2))
    for number, customer in enumerate(erased):
        times = [e["occurred_at"] for _, e in records if e["customer_id"] == customer]
        last = max(datetime.fromisoformat(t) for t in times) if times else T0
        at = last + timedelta(hours=draw(st.sampled_from((0, 1))))
        records.append(("erasure_requests", envelope("customer_erased", -1 - number, customer, at)))
    held: dict[str, list[dict[str, Any]]] = {}
    for role, payload in records:
        held.setdefault(role, []).append(payload)
    return held


def interleave(held: dict[str, list[dict[str, Any]]], roles: Sequence[str]) -> list[Record]:
    """The records in the order ``roles`` takes them from their topics (each topic's
    records in their order)."""
    cursors: Counter[str] = Counter()
    taken = []
    for role in roles:
        taken.append((role, held[role][cursors[role]]))
        cursors[role] += 1
    return taken


def replay(records: list[Record]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The customers and shops tables after an in-process pipeline took ``records``."""
    customers: dict[str, Any] = {}
    shops: dict[str, Any] = {}
    feed(Pipeline(Settings(), customers, shops, {}, {}), records)
    return customers, shops


def facts(customers: dict[str, CustomerState]) -> dict[str, dict[str, Any]]:
    """Every field of every state, but what models decide."""
    return {
        key: {f.name: getattr(state, f.name) for f in fields(state) if f.name not in NOT_FACTS}
        for key, state in customers.items()
    }


def shop_facts(shops: dict[str, Any]) -> dict[str, Any]:
    """The shop's stream time and funnel, its erasure markers and pending referrals."""
    kept = {k: v for k, v in shops.items() if "|erased|" in k or "|referrals|" in k}
    return {
        **kept,
        "stream_time": shops.get(SHOP, {}).get("stream_time"),
        "journey": ShopFunnel.load(shops.get(funnel_key(SHOP))).months,  # none: empty
    }


def referral_counts(customers: dict[str, CustomerState], shops: dict[str, Any]) -> dict[str, int]:
    """Per id the shop's events name: the referrals credited to them (on their state, or
    pending while segstream does not know them)."""
    counted = {}
    for customer_id in (*CUSTOMERS, STRANGER):
        state = customers.get(customer_key(SHOP, customer_id))
        pending = shops.get(referrals_key(SHOP, customer_id))
        assert state is None or pending is None, f"{customer_id}: counted twice"
        counted[customer_id] = state.referral_count if state else pending["count"] if pending else 0
    return counted


@given(topics(), st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_fact_is_the_same_in_any_interleaving_of_the_topics(
    held: dict[str, list[dict[str, Any]]], data: st.DataObject
) -> None:
    in_turn = [role for role in sorted(held) for _ in held[role]]  # topic after topic
    shuffled = data.draw(st.permutations(in_turn), label="interleaving")
    customers, shops = replay(interleave(held, in_turn))
    other_customers, other_shops = replay(interleave(held, shuffled))
    assert facts(other_customers) == facts(customers)
    assert shop_facts(other_shops) == shop_facts(shops)
    named = Counter(state.referrer for state in customers.values() if state.referrer)
    assert referral_counts(customers, shops) == {
        customer_id: named[customer_id] for customer_id in (*CUSTOMERS, STRANGER)
    }


def test_cohorts_past_the_retention_leave_the_funnel_whether_or_not_it_moved() -> None:
    """Each record its own batch (a flush each): the clock passing a cohort's retention
    drops it, also when the record that moved the clock moved nobody's journey."""
    settings = Settings(metrics_retention_days=60)

    def bought(day: int) -> Record:
        at = T0 + timedelta(days=day)
        body = {"order_id": f"o-{day}", "amount": 10.0, "currency": "EUR", "is_renewal": False}
        return "orders", {**envelope("order", day, "c-0", at), **body}

    history = [bought(0), bought(1), bought(200)]  # the third is no new stage
    funnels = []
    for records in (history, history[::-1]):
        shops: dict[str, Any] = {}
        pipeline = Pipeline(settings, {}, shops, {}, {})
        for record in records:
            feed(pipeline, [record])
        funnels.append(shops[funnel_key(SHOP)])
    assert funnels[0] == funnels[1] == {"months": {}}
