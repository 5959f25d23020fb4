"""Lifecycle stage: where a customer stands in their relationship with the shop.

The rules, first match wins (thresholds are settings, defaults in brackets):

1. ``churned``   the subscription has ended; or, for a customer without a paying
   subscription, no purchase or signup for longer than their churn gap: twice their
   at-risk gap, at least ``churned_days`` [90];
2. ``won_back``  came back (re-subscribed after cancelling, or bought again after
   a gap longer than their churn gap) within the last ``won_back_days`` [30];
3. ``at_risk``   a cancellation is pending; or a subscriber's renewal is overdue (see
   :data:`segstream.domain.customer.RENEWALS`); or a customer without a paying subscription
   has been quiet longer than their at-risk gap: ``cadence_multiple`` [2.5] x their
   usual days between purchases, or ``at_risk_days`` [45] before a second purchase day
   (:class:`segstream.domain.customer.Silence`);
4. ``new``       first seen less than ``new_days`` [30] ago; or, for a customer without a
   paying subscription, not yet back for a second purchase day (nor won back);
5. ``loyal``     at least ``loyal_min_repeat_days`` [4] repeat purchase days;
6. ``active``    everyone else.

A one-off buyer stays ``new`` until they buy again or turn at risk, and a paying subscriber
is never at risk or churned for silence inside a paid period
(:data:`segstream.domain.customer.RENEWALS`): why, with the figures, in
``docs/design/lifecycle.md``.

Stages move with time alone (a quiet customer becomes at risk, then churned; the new who
came back grow into active; a pending cancellation takes effect):
:meth:`LifecycleRules.next_change` names the moment of the next such move, so the pipeline
reviews the customer exactly then.

>>> from datetime import date
>>> from segstream.domain.customer import CustomerState
>>> from segstream.domain.features import snapshot
>>> from segstream.domain.events import parse_time
>>> state = CustomerState("shop", "c-1", first_seen_at=parse_time("2026-01-01T00:00:00Z"),
...                       purchase_days={date(2026, 1, 1): 20.0})
>>> rules = LifecycleRules()
>>> view = snapshot(state, parse_time("2026-01-10T00:00:00Z"))
>>> rules.stage(view), rules.next_change(view).isoformat()
('new', '2026-02-16T00:00:00+00:00')
>>> rules.stage(snapshot(state, parse_time("2026-02-15T00:00:00Z")))
'new'
>>> rules.stage(snapshot(state, parse_time("2026-03-01T00:00:00Z")))
'at_risk'
>>> rules.stage(snapshot(state, parse_time("2026-06-01T00:00:00Z")))
'churned'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar, Self

from segstream.domain.customer import PAYING_STATUSES, Renewal, Silence, renewal_rule
from segstream.domain.features import CustomerSnapshot
from segstream.segments.base import ModelHooks
from segstream.settings import Settings

STAGES = ("new", "active", "loyal", "at_risk", "churned", "won_back")


@dataclass(frozen=True, slots=True)
class LifecycleRules:
    """Thresholds of the lifecycle rules, in days."""

    new_days: int = 30
    loyal_min_repeat_days: int = 4
    won_back_days: int = 30
    silence: Silence = field(default_factory=Silence)
    """How long anyone without a paying subscription may be quiet (their own cadence)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LifecycleRules:
        """Rules with the thresholds configured for this deployment."""
        return cls(
            new_days=settings.lifecycle_new_days,
            loyal_min_repeat_days=settings.lifecycle_loyal_min_repeat_days,
            won_back_days=settings.lifecycle_won_back_days,
            silence=Silence.from_settings(settings),
        )

    def churn_gap(self, customer: CustomerSnapshot) -> float:
        """Days of silence after which this customer has churned (never, for a paying
        subscriber: their subscription ends with a cancellation)."""
        if _renewal(customer) is not None:
            return math.inf
        return self.silence.churned(customer.cadence_days)

    def quiet_gap(self, customer: CustomerSnapshot) -> float:
        """Days of silence after which this customer is at risk: a subscriber's paid
        period and grace, anyone else's own cadence."""
        renewal = _renewal(customer)
        if renewal is not None:
            return float(renewal.period + renewal.late)
        return self.silence.at_risk(customer.cadence_days)

    def first_timer(self, customer: CustomerSnapshot) -> bool:
        """Whether the customer has yet to come back: no second purchase day, no comeback,
        and no paying subscription (a subscriber is judged by their plan)."""
        return (
            customer.frequency == 0 and customer.returned_at is None and _renewal(customer) is None
        )

    def stage(self, customer: CustomerSnapshot) -> str:
        """The customer's lifecycle stage (one of :data:`STAGES`)."""
        quiet = customer.last_activity_days
        if customer.subscription == "cancelled" or quiet > self.churn_gap(customer):
            return "churned"
        if customer.returned_at is not None and (
            (customer.as_of.date() - customer.returned_at).days < self.won_back_days
        ):
            return "won_back"
        if customer.subscription == "cancelling" or quiet > self.quiet_gap(customer):
            return "at_risk"
        if customer.tenure_days < self.new_days or self.first_timer(customer):
            return "new"
        if customer.frequency >= self.loyal_min_repeat_days:
            return "loyal"
        return "active"

    def next_change(self, customer: CustomerSnapshot) -> datetime | None:
        """The first moment after ``customer.as_of`` at which a rule's time condition
        flips: silence passing the at-risk gap or the churn gap, the new period ending (but
        for a first-timer, who stays new until at risk), the won-back period ending, a
        pending cancellation taking effect."""
        today = customer.as_of.date()
        quiet_since = today - timedelta(days=customer.last_activity_days)
        first_seen = today - timedelta(days=customer.tenure_days)
        days = [quiet_since + timedelta(days=math.floor(self.quiet_gap(customer)) + 1)]
        if not self.first_timer(customer):  # a first-timer stays new until at risk
            days.append(first_seen + timedelta(days=self.new_days))
        if math.isfinite(self.churn_gap(customer)):
            days.append(quiet_since + timedelta(days=math.floor(self.churn_gap(customer)) + 1))
        if customer.returned_at is not None:
            days.append(customer.returned_at + timedelta(days=self.won_back_days))
        moments = [_midnight(day) for day in days]
        if customer.subscription_ends_at is not None:
            moments.append(customer.subscription_ends_at)
        later = [moment for moment in moments if moment > customer.as_of]
        return min(later, default=None)


def _renewal(customer: CustomerSnapshot) -> Renewal | None:
    """The renewal rule of a paying subscriber (a priced plan); None for everyone else."""
    if customer.subscription not in PAYING_STATUSES:
        return None
    return renewal_rule(customer.plan_price, customer.plan_interval)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class LifecycleModel(ModelHooks):
    """Rule-based lifecycle stages (see the module docstring for the rules)."""

    name: ClassVar[str] = "lifecycle"
    summary: ClassVar[str] = "rule-based stage of the customer's relationship with the shop"
    segment_description: ClassVar[str] = (
        "Lifecycle stage, first matching rule wins: churned (subscription ended; or, "
        "without a paying subscription, quiet longer than twice their at-risk gap and at "
        "least 90 days), won_back (came back within the last 30 days), at_risk "
        "(cancellation pending, or a subscriber's renewal overdue; or, without a paying "
        "subscription, quiet longer than 2.5 x their usual days between purchases, or 45 "
        "days before a second purchase day), new (first seen < 30 days ago; or, without a "
        "paying subscription, not back for a second purchase day yet), loyal (>= 4 repeat "
        "purchase days), active (everyone else). Thresholds are deployment settings "
        "(SEGSTREAM_LIFECYCLE_*)."
    )
    segment_names: ClassVar[dict[str, Any]] = {"enum": list(STAGES)}

    def __init__(self, rules: LifecycleRules) -> None:
        self.rules = rules

    @classmethod
    def create(cls, settings: Settings, seed: int) -> Self:
        """Rules from settings; the seed is unused (rules are deterministic)."""
        return cls(LifecycleRules.from_settings(settings))

    def learn(self, customer: CustomerSnapshot) -> None:
        """Rules learn nothing."""

    def assign(self, customer: CustomerSnapshot) -> str:
        """The lifecycle stage."""
        return self.rules.stage(customer)

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """When the stage next changes with time alone."""
        return self.rules.next_change(customer)


MODEL = LifecycleModel
