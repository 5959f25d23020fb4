"""Per-customer state: everything segstream remembers about one customer of one shop.

State is a plain dataclass of typed values (times are aware datetimes, purchase days are
dates); :mod:`segstream.state.codec` stores it compactly (times as integers, event ids as
8-byte hashes), and :meth:`CustomerState.to_json` gives the readable form the API shows.
:func:`apply` folds one event into it; order does not matter, because every derived
quantity is recomputed from the kept facts (purchase days, signups, cancellations, plans),
so out-of-order events give the same state as in-order ones.

What events *state* about a customer (attributes key by key, the preferred channel, the
marketing consent) is latest-wins in event time, not in arrival order: each value is kept
with the event time of its statement, and a statement replaces it only if it is later (at
the same time, a deterministic tie-break decides; an opt-out beats an opt-in). Keeping the
maximum makes the result independent of the order (see :func:`_latest_wins`). An event
that leaves a field out states nothing about it. Two statements at the same event time
(two signups, two cancellations, two plans) are ranked by their values, never by which
arrived last.

De-duplication memory is bounded: the ids of a customer's last ``window`` events, and of
none that occurred more than ``horizon_days`` before the newest of them (see
:class:`DedupPolicy`). A duplicate older than that is applied again.
"""

from __future__ import annotations

import hashlib
import json
from bisect import insort
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from segstream.domain.events import (
    Attributes,
    CampaignResponse,
    Cancellation,
    CustomerUpdated,
    Event,
    Feedback,
    Order,
    Plan,
    PlanChanged,
    Signup,
    Touchpoint,
    format_time,
    parse_time,
)

if TYPE_CHECKING:
    from segstream.settings import Settings

SegmentName = str

CampaignTouch = tuple[int, str, str, int]
"""One campaign interaction: (event day number, action, channel, campaign id hash)."""
FeedbackScore = tuple[int, int]
"""One feedback: (event day number, score 1-5)."""

CAMPAIGN_MEMORY = 32
"""How many campaign interactions a customer's state keeps: the latest by event day."""
FEEDBACK_MEMORY = 16
"""How many feedback scores a customer's state keeps: the latest by event day."""


@dataclass(frozen=True, slots=True)
class DedupPolicy:
    """How many event ids a customer's state remembers, and for how long in event time."""

    window: int = 32
    horizon_days: int = 400


def id_hash(event_id: str) -> int:
    """The 64-bit hash an event id is remembered by (collisions: ~1e-16 per pair)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class CustomerState:
    """Facts about one customer, kept exactly so features can be recomputed at any time,
    plus the customer's segments, what segment models keep about them (``memory``) and
    when they are next due for a review without events (``due_at``)."""

    shop_id: str
    customer_id: str
    signups: list[datetime] = field(default_factory=list)
    cancellations: list[tuple[datetime, datetime]] = field(default_factory=list)
    cancel_reason: str | None = None
    plan_history: list[tuple[datetime, Plan]] = field(default_factory=list)
    acquisition_channel: str | None = None
    referred_by: str | None = None
    preferred_channel: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    purchase_days: dict[date, float] = field(default_factory=dict)
    first_seen_at: datetime | None = None
    order_count: int = 0
    renewal_count: int = 0
    discount_order_count: int = 0
    total_spend: float = 0.0
    categories: dict[str, int] = field(default_factory=dict)
    seen_ids: list[tuple[int, int]] = field(default_factory=list)
    """(id hash, event day number) of the remembered events, ordered by (day, hash): the
    ids kept are the latest ``window`` whatever order the events arrived in."""
    segments: dict[str, SegmentName] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    due_at: datetime | None = None
    segment_since: dict[str, float] = field(default_factory=dict)
    """Per model: when (epoch seconds of stream time) the customer entered their current
    segment; a model's minimum dwell counts from it."""
    marketing_opt_in: bool | None = None
    """Consent to marketing messages as stated by the latest event (in event time) that
    stated it (None: never stated); segment changes carry it so downstream tools can
    respect it. See :func:`_latest_wins`."""
    attribute_times: dict[str, datetime] = field(default_factory=dict)
    """Per attribute: the event time of the statement its value comes from (a key stated
    later in event time wins, whatever order the events arrive in)."""
    preferred_channel_at: datetime | None = None
    """Event time of the statement ``preferred_channel`` comes from."""
    marketing_opt_in_at: datetime | None = None
    """Event time of the statement ``marketing_opt_in`` comes from."""
    campaign_touches: list[CampaignTouch] = field(default_factory=list)
    """The latest :data:`CAMPAIGN_MEMORY` campaign interactions, ordered by (day, action,
    channel, campaign hash): the same ones whatever order the events arrived in."""
    feedback_scores: list[FeedbackScore] = field(default_factory=list)
    """The latest :data:`FEEDBACK_MEMORY` feedback scores, ordered by (day, score). Never
    the feedback text (personal data)."""
    referral_count: int = 0
    """Customers of the shop (known now, not erased) whose :attr:`referrer` this customer
    is. It follows from their states alone, whatever order the events arrived in (the
    pipeline keeps it; see ``Pipeline._credit``)."""
    enrolments: dict[str, list[Any]] = field(default_factory=dict)
    """Per experiment of the shop the customer was enrolled in: a row of
    :class:`segstream.experiments.live.Enrolment` (enrolled at, orders, revenue, churned,
    arm)."""
    first_touch: tuple[datetime, str] | None = None
    """The earliest touchpoint in event time and its channel (at the same time the
    smaller channel name): the customer's first-touch channel in the journey funnel."""
    considered_at: datetime | None = None
    """The earliest touchpoint that shows consideration (a trial, a sample request)."""

    @property
    def is_prospect(self) -> bool:
        """Seen only through touchpoints: in the journey funnel, in no segment or customer
        metric until their first other event."""
        return self.first_seen_at is None

    @property
    def referrer(self) -> str | None:
        """Who referred this customer: the ``referred_by`` of their latest signup (None:
        nobody, or they named themselves, which counts for no one)."""
        named = self.referred_by
        return None if named == self.customer_id else named

    @property
    def plan(self) -> Plan | None:
        """The plan taken on last (in event time)."""
        return self.plan_history[-1][1] if self.plan_history else None

    def copy(self) -> CustomerState:
        """An independent copy (containers copied; their items are immutable)."""
        return CustomerState(
            self.shop_id,
            self.customer_id,
            list(self.signups),
            list(self.cancellations),
            self.cancel_reason,
            list(self.plan_history),
            self.acquisition_channel,
            self.referred_by,
            self.preferred_channel,
            dict(self.attributes),
            dict(self.purchase_days),
            self.first_seen_at,
            self.order_count,
            self.renewal_count,
            self.discount_order_count,
            self.total_spend,
            dict(self.categories),
            list(self.seen_ids),
            dict(self.segments),
            dict(self.memory),
            self.due_at,
            dict(self.segment_since),
            self.marketing_opt_in,
            dict(self.attribute_times),
            self.preferred_channel_at,
            self.marketing_opt_in_at,
            list(self.campaign_touches),
            list(self.feedback_scores),
            self.referral_count,
            {key: list(row) for key, row in self.enrolments.items()},
            self.first_touch,
            self.considered_at,
        )

    def has_seen(self, event_id: str) -> bool:
        """Whether this event was already applied (at-least-once producers, retries)."""
        wanted = id_hash(event_id)
        return any(known == wanted for known, _ in self.seen_ids)

    def to_json(self) -> dict[str, Any]:
        """The readable form (ISO times; what the API returns): facts and segments."""
        return {
            "signups": [format_time(s) for s in self.signups],
            "cancellations": [[format_time(o), format_time(e)] for o, e in self.cancellations],
            "cancel_reason": self.cancel_reason,
            "plan": None if self.plan is None else self.plan.to_json(),
            "plan_history": [[format_time(at), plan.to_json()] for at, plan in self.plan_history],
            "acquisition_channel": self.acquisition_channel,
            "referred_by": self.referred_by,
            "preferred_channel": self.preferred_channel,
            "attributes": dict(self.attributes),
            "purchase_days": {d.isoformat(): a for d, a in sorted(self.purchase_days.items())},
            "first_seen_at": _optional_time(self.first_seen_at),
            "order_count": self.order_count,
            "renewal_count": self.renewal_count,
            "discount_order_count": self.discount_order_count,
            "referral_count": self.referral_count,
            "total_spend": self.total_spend,
            "categories": dict(self.categories),
            "recent_event_ids": [f"{h:016x}" for h, _ in self.seen_ids],
            "segments": dict(self.segments),
            "marketing_opt_in": self.marketing_opt_in,
            "attribute_times": {k: format_time(at) for k, at in self.attribute_times.items()},
            "preferred_channel_at": _optional_time(self.preferred_channel_at),
            "marketing_opt_in_at": _optional_time(self.marketing_opt_in_at),
            "campaign_responses": [
                {
                    "day": (EPOCH_DAY + timedelta(days=day)).isoformat(),
                    "action": action,
                    "channel": channel,
                    "campaign": f"{campaign:016x}",
                }
                for day, action, channel, campaign in self.campaign_touches
            ],
            "feedback_scores": [
                {"day": (EPOCH_DAY + timedelta(days=day)).isoformat(), "score": score}
                for day, score in self.feedback_scores
            ],
            "first_touch": None
            if self.first_touch is None
            else {"at": format_time(self.first_touch[0]), "channel": self.first_touch[1]},
            "considered_at": _optional_time(self.considered_at),
        }

    @classmethod
    def from_json(cls, shop_id: str, customer_id: str, payload: dict[str, Any]) -> CustomerState:
        """Inverse of :meth:`to_json` (memory and schedule are not part of it)."""
        first_seen = payload.get("first_seen_at")
        channel_at = payload.get("preferred_channel_at")
        consent_at = payload.get("marketing_opt_in_at")
        touch = payload.get("first_touch")
        considered = payload.get("considered_at")
        return cls(
            shop_id,
            customer_id,
            signups=[parse_time(s) for s in payload.get("signups", [])],
            cancellations=[
                (parse_time(o), parse_time(e)) for o, e in payload.get("cancellations", [])
            ],
            cancel_reason=payload.get("cancel_reason"),
            plan_history=[
                (parse_time(at), Plan.from_payload(plan))
                for at, plan in payload.get("plan_history", [])
            ],
            acquisition_channel=payload.get("acquisition_channel"),
            referred_by=payload.get("referred_by"),
            preferred_channel=payload.get("preferred_channel"),
            attributes=dict(payload.get("attributes", {})),
            purchase_days={
                date.fromisoformat(d): float(a) for d, a in payload.get("purchase_days", {}).items()
            },
            first_seen_at=None if first_seen is None else parse_time(first_seen),
            order_count=payload.get("order_count", 0),
            renewal_count=payload.get("renewal_count", 0),
            discount_order_count=payload.get("discount_order_count", 0),
            referral_count=payload.get("referral_count", 0),
            total_spend=payload.get("total_spend", 0.0),
            categories=dict(payload.get("categories", {})),
            seen_ids=[(int(h, 16), 0) for h in payload.get("recent_event_ids", [])],
            segments=dict(payload.get("segments", {})),
            marketing_opt_in=payload.get("marketing_opt_in"),
            attribute_times={
                key: parse_time(at) for key, at in payload.get("attribute_times", {}).items()
            },
            preferred_channel_at=None if channel_at is None else parse_time(channel_at),
            marketing_opt_in_at=None if consent_at is None else parse_time(consent_at),
            campaign_touches=[
                (_day_number(t["day"]), t["action"], t["channel"], int(t["campaign"], 16))
                for t in payload.get("campaign_responses", [])
            ],
            feedback_scores=[
                (_day_number(f["day"]), int(f["score"])) for f in payload.get("feedback_scores", [])
            ],
            first_touch=None if touch is None else (parse_time(touch["at"]), touch["channel"]),
            considered_at=None if considered is None else parse_time(considered),
        )


def _optional_time(when: datetime | None) -> str | None:
    return None if when is None else format_time(when)


def _day_number(day: str) -> int:
    return (date.fromisoformat(day) - EPOCH_DAY).days


def day_number(when: datetime) -> int:
    """Days since 1970-01-01 of a moment's UTC day."""
    return (when.astimezone(UTC).date() - EPOCH_DAY).days


EPOCH_DAY = date(1970, 1, 1)


def apply(state: CustomerState, event: Event, policy: DedupPolicy | None = None) -> bool:
    """Fold ``event`` into ``state``; False (and no change) when it is a duplicate."""
    if not event.folds:
        raise TypeError(f"a {event.type_name} event is no fact to fold (the pipeline acts on it)")
    if state.has_seen(event.event_id):
        return False
    if isinstance(event, Signup):
        _apply_signup(state, event)
    elif isinstance(event, Order):
        _apply_order(state, event)
    elif isinstance(event, Cancellation):
        _apply_cancellation(state, event)
    elif isinstance(event, CustomerUpdated):
        _note_contact(state, event.occurred_at, event.preferred_channel, event.marketing_opt_in)
        _note_attributes(state, event.occurred_at, event.attributes)
    elif isinstance(event, PlanChanged):
        _note_plan(state, event.occurred_at, event.plan)
    elif isinstance(event, CampaignResponse):
        _apply_campaign_response(state, event)
    elif isinstance(event, Feedback):
        score = (day_number(event.occurred_at), event.score)
        _keep_latest(state.feedback_scores, score, FEEDBACK_MEMORY)
    elif isinstance(event, Touchpoint):
        _apply_touchpoint(state, event)
    else:  # every entry of events.EVENT_CLASSES says here how it changes the state
        raise TypeError(f"no state change for {type(event).__name__} events")
    _remember(state, event, policy or DedupPolicy())
    if not isinstance(event, Touchpoint):  # a visit before signing up is no customer yet
        _note_first_seen(state, event.occurred_at)
    return True


def _remember(state: CustomerState, event: Event, policy: DedupPolicy) -> None:
    """Keep the event's id; forget the oldest beyond the window and the horizon."""
    day = day_number(event.occurred_at)
    seen = state.seen_ids
    insort(seen, (id_hash(event.event_id), day), key=lambda item: (item[1], item[0]))
    del seen[: max(0, len(seen) - policy.window)]
    newest = seen[-1][1]
    while seen and seen[0][1] < newest - policy.horizon_days:
        del seen[0]


def _note_first_seen(state: CustomerState, when: datetime) -> None:
    if state.first_seen_at is None or when < state.first_seen_at:
        state.first_seen_at = when


def _apply_signup(state: CustomerState, event: Signup) -> None:
    at = event.occurred_at
    insort(state.signups, at)
    _note_plan(state, at, event.plan)
    acquired = (event.acquisition_channel, event.referred_by or "")
    if state.signups[-1] == at and (
        state.signups.count(at) == 1  # the latest signup names how the customer came
        or acquired > (state.acquisition_channel or "", state.referred_by or "")
    ):  # several at the latest time: the greatest, whatever order they arrived in
        state.acquisition_channel = event.acquisition_channel
        state.referred_by = event.referred_by
    _note_contact(state, event.occurred_at, event.preferred_channel, event.marketing_opt_in)
    _note_attributes(state, event.occurred_at, event.attributes)


def _latest_wins(
    stated_at: datetime | None, current: Any, when: datetime, value: Any, rank: Any
) -> bool:
    """Whether a statement of ``value`` at ``when`` replaces the kept ``current`` one
    (stated at ``stated_at``; None: at an unknown time, older than any statement).

    The later statement in event time wins; at the same time the one with the higher
    ``rank(value)`` does. Keeping the maximum of (time, rank) makes the kept value the
    same whatever order the statements arrive in.
    """
    if stated_at is None:
        return True
    return (when, rank(value)) > (stated_at, rank(current))


def _consent_rank(opt_in: bool) -> int:
    """At the same event time an opt-out wins over an opt-in."""
    return 0 if opt_in else 1


def _attribute_rank(value: Any) -> str:
    """A total order of attribute values for statements at the same event time."""
    return json.dumps(value, sort_keys=True)


def _note_contact(
    state: CustomerState, when: datetime, channel: str | None, opt_in: bool | None
) -> None:
    """Keep the preferred channel and the marketing consent of the latest event (in event
    time) that stated each; None states nothing."""
    if channel is not None and _latest_wins(
        state.preferred_channel_at, state.preferred_channel, when, channel, str
    ):
        state.preferred_channel, state.preferred_channel_at = channel, when
    if opt_in is not None and _latest_wins(
        state.marketing_opt_in_at, state.marketing_opt_in, when, opt_in, _consent_rank
    ):
        state.marketing_opt_in, state.marketing_opt_in_at = opt_in, when


def _note_attributes(state: CustomerState, when: datetime, attributes: Attributes) -> None:
    """Merge attributes key by key: each key keeps the value of its latest statement in
    event time (the set of keys only grows; no event removes one)."""
    for key, value in attributes.items():
        if key not in state.attributes or _latest_wins(
            state.attribute_times.get(key), state.attributes[key], when, value, _attribute_rank
        ):
            state.attributes[key] = value
            state.attribute_times[key] = when


def _apply_order(state: CustomerState, event: Order) -> None:
    day = event.occurred_at.astimezone(UTC).date()
    state.purchase_days[day] = round(state.purchase_days.get(day, 0.0) + event.amount, 6)
    state.order_count += 1
    state.total_spend = round(state.total_spend + event.amount, 6)
    state.renewal_count += int(event.is_renewal)
    state.discount_order_count += int(event.discount_code is not None)
    for category in event.categories:
        state.categories[category] = state.categories.get(category, 0) + 1
    if event.plan is not None:
        _note_plan(state, event.occurred_at, event.plan)


def _apply_cancellation(state: CustomerState, event: Cancellation) -> None:
    at = event.occurred_at
    insort(state.cancellations, (at, event.effective_at))
    latest = state.cancellations[-1][0] == at  # the latest, whatever the order
    if latest and (
        sum(1 for o, _ in state.cancellations if o == at) == 1
        or event.reason > (state.cancel_reason or "")
    ):  # several at the latest time: the greatest reason
        state.cancel_reason = event.reason


def _apply_campaign_response(state: CustomerState, event: CampaignResponse) -> None:
    touch = (day_number(event.occurred_at), event.action, event.channel, id_hash(event.campaign_id))
    _keep_latest(state.campaign_touches, touch, CAMPAIGN_MEMORY)
    if event.action == "unsubscribed":  # a statement of consent like any other
        _note_contact(state, event.occurred_at, None, False)


def _apply_touchpoint(state: CustomerState, event: Touchpoint) -> None:
    """Keep the earliest touchpoint (and the earliest that shows consideration): the
    minimum is the same whatever order they arrive in."""
    touch = (event.occurred_at, event.channel)
    if state.first_touch is None or touch < state.first_touch:
        state.first_touch = touch
    if event.considers and (state.considered_at is None or event.occurred_at < state.considered_at):
        state.considered_at = event.occurred_at


def _keep_latest(kept: list[Any], item: Any, limit: int) -> None:
    """Add ``item`` to the sorted ``kept`` and keep only the ``limit`` greatest: the
    greatest of a set are the same whatever order its items were added in."""
    insort(kept, item)
    del kept[: max(0, len(kept) - limit)]


def _note_plan(state: CustomerState, when: datetime, plan: Plan) -> None:
    """Keep every plan with the time it took effect (signups, orders with a plan, plan
    changes); the current plan is the latest one, whatever order they arrive in (of
    plans taken on at the same time, the greatest by :func:`_plan_rank`)."""
    insort(state.plan_history, (when, plan), key=_plan_entry_rank)


def _plan_rank(plan: Plan) -> tuple[str, float, str, str, str]:
    """A total order of plans, for plans taken on at the same time."""
    return (plan.plan_id, plan.price, plan.currency, plan.interval, plan.tier or "")


def _plan_entry_rank(entry: tuple[datetime, Plan]) -> tuple[datetime, tuple[Any, ...]]:
    return entry[0], _plan_rank(entry[1])


PAYING_STATUSES = frozenset({"active", "cancelling"})
"""Subscription statuses (see :func:`subscription_status`) that earn MRR and make a
subscriber's lifecycle follow their plan."""


@dataclass(frozen=True, slots=True)
class Renewal:
    """How a subscription of one billing interval is judged, in days."""

    period: int
    """What one payment covers (the longest such period: 31 days for a month)."""
    late: int
    """How long a renewal may be overdue before the subscriber is at risk."""


RENEWALS: dict[str, Renewal] = {
    "week": Renewal(period=7, late=3),
    "month": Renewal(period=31, late=7),
    "quarter": Renewal(period=92, late=14),
    "year": Renewal(period=366, late=30),
}
"""Per billing interval: a subscriber is at risk ``period + late`` days after their last
payment (docs/segments.md's lifecycle table shows the same numbers)."""


@dataclass(frozen=True, slots=True)
class Silence:
    """How long a customer without a paying subscription may be quiet, in days, by their
    own cadence (mean days between purchase days; None before a second one).

    A gap scaled to the customer's rhythm: someone who buys every two months is not at
    risk after 45 quiet days, and someone who buys weekly is after 18.

    >>> Silence().at_risk(None), Silence().churned(None)
    (45.0, 90.0)
    >>> Silence().at_risk(60.0), Silence().churned(60.0), Silence().churned(7.0)
    (150.0, 300.0, 90.0)
    """

    at_risk_days: float = 45.0
    """At risk after this long without a cadence."""
    churned_days: float = 90.0
    """Churned after this long without a cadence, and never sooner."""
    cadence_multiple: float = 2.5
    """At risk after this many times the cadence."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Silence:
        """The silence rule configured for this deployment (``lifecycle_*`` settings)."""
        return cls(
            at_risk_days=settings.lifecycle_at_risk_days,
            churned_days=settings.lifecycle_churned_days,
            cadence_multiple=settings.lifecycle_cadence_multiple,
        )

    def at_risk(self, cadence: float | None) -> float:
        """Quiet days after which the customer is at risk."""
        return self.at_risk_days if cadence is None else self.cadence_multiple * max(cadence, 1.0)

    def churned(self, cadence: float | None) -> float:
        """Quiet days after which the customer has churned: twice the at-risk gap, at
        least ``churned_days``."""
        return max(self.churned_days, 2 * self.at_risk(cadence))


DEFAULT_SILENCE = Silence()


def renewal_rule(price: float | None, interval: str | None) -> Renewal | None:
    """The renewal rule of a plan of ``price`` per ``interval``; None without a plan or for
    a free one (pay-as-you-go: its customers are one-off buyers)."""
    if price is None or price <= 0 or interval is None:
        return None
    return RENEWALS.get(interval)


def renewal_of(plan: Plan | None) -> Renewal | None:
    """:func:`renewal_rule` of ``plan``."""
    return None if plan is None else renewal_rule(plan.price, plan.interval)


def subscription_status(state: CustomerState, now: datetime) -> str:
    """``none``, ``active``, ``cancelling`` (ends later) or ``cancelled`` at ``now``.

    The latest signup decides, unless a cancellation occurred after it.
    """
    latest_signup = None
    for signup in state.signups:
        if signup > now:
            break
        latest_signup = signup
    if latest_signup is None:
        return "none"
    effective = [e for o, e in state.cancellations if latest_signup <= o <= now]
    if not effective:
        return "active"
    return "cancelled" if min(effective) <= now else "cancelling"


def purchase_dates(state: CustomerState) -> list[date]:
    """Distinct purchase days, oldest first."""
    return sorted(state.purchase_days)


def time_of(day: date) -> datetime:
    """Midnight UTC of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


ONE_DAY = timedelta(days=1)
