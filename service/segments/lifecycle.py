"""Lifecycle stage: where a customer stands in their relationship with the shop.

The rules, first match wins (thresholds are settings, defaults in brackets):

1. ``churned``   the subscription has ended, or no purchase or signup for
   more than ``churned_days`` [90];
2. ``won_back``  came back (re-subscribed after cancelling, or bought again after
   a gap longer than ``churned_days``) within the last ``won_back_days`` [30];
3. ``at_risk``   a cancellation is pending, or the customer has been quiet longer
   than their own at-risk gap: ``cadence_multiple`` [2.5] x their usual days between
   purchases, capped at ``at_risk_days`` [45] (which also applies without a cadence);
4. ``new``       first seen less than ``new_days`` [30] ago;
5. ``loyal``     at least ``loyal_min_repeat_days`` [4] repeat purchase days;
6. ``active``    everyone else.

>>> from service.core.customer import CustomerState
>>> from service.core.features import snapshot
>>> from service.core.events import parse_time
>>> state = CustomerState("shop", "c-1", first_seen_at="2026-01-01T00:00:00Z",
...                       purchase_days={"2026-01-01": 20.0})
>>> rules = LifecycleRules()
>>> rules.stage(snapshot(state, parse_time("2026-01-10T00:00:00Z")))
'new'
>>> rules.stage(snapshot(state, parse_time("2026-03-01T00:00:00Z")))
'at_risk'
>>> rules.stage(snapshot(state, parse_time("2026-06-01T00:00:00Z")))
'churned'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from service.core.features import CustomerSnapshot
from service.settings import Settings

STAGES = ("new", "active", "loyal", "at_risk", "churned", "won_back")


@dataclass(frozen=True, slots=True)
class LifecycleRules:
    """Thresholds of the lifecycle rules, in days."""

    new_days: int = 30
    at_risk_days: int = 45
    churned_days: int = 90
    loyal_min_repeat_days: int = 4
    won_back_days: int = 30
    cadence_multiple: float = 2.5

    @classmethod
    def from_settings(cls, settings: Settings) -> LifecycleRules:
        """Rules with the thresholds configured for this deployment."""
        return cls(
            new_days=settings.lifecycle_new_days,
            at_risk_days=settings.lifecycle_at_risk_days,
            churned_days=settings.lifecycle_churned_days,
            loyal_min_repeat_days=settings.lifecycle_loyal_min_repeat_days,
            won_back_days=settings.lifecycle_won_back_days,
            cadence_multiple=settings.lifecycle_cadence_multiple,
        )

    def at_risk_gap(self, customer: CustomerSnapshot) -> float:
        """Days of silence after which this customer counts as at risk."""
        if customer.cadence_days is None:
            return float(self.at_risk_days)
        return min(float(self.at_risk_days), self.cadence_multiple * max(customer.cadence_days, 1))

    def stage(self, customer: CustomerSnapshot) -> str:
        """The customer's lifecycle stage (one of :data:`STAGES`)."""
        quiet = customer.last_activity_days
        if customer.subscription == "cancelled" or quiet > self.churned_days:
            return "churned"
        if customer.returned_at is not None and (
            (customer.as_of.date() - customer.returned_at).days < self.won_back_days
        ):
            return "won_back"
        if customer.subscription == "cancelling" or quiet > self.at_risk_gap(customer):
            return "at_risk"
        if customer.tenure_days < self.new_days:
            return "new"
        if customer.frequency >= self.loyal_min_repeat_days:
            return "loyal"
        return "active"


class LifecycleModel:
    """Rule-based lifecycle stages (see the module docstring for the rules)."""

    name: ClassVar[str] = "lifecycle"
    derived_from_customers: ClassVar[bool] = True

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


MODEL = LifecycleModel
