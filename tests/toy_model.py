"""A toy segment model that is no module of ``segstream.segments``: what a plugin (or a new
model) is, for the tests that check a model joins everything through the registry alone
(``tests/unit/test_extension.py``, the contract suite ``tests/unit/segments/test_contract.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from segstream.domain.features import CustomerSnapshot
from segstream.segments.base import ModelHooks
from segstream.settings import Settings

BIG_SPEND = 60.0
"""Total spend from which a customer is a big spender."""


class SpendBandModel(ModelHooks):
    """``big`` or ``small`` by total spend; no segment before the first purchase."""

    name: ClassVar[str] = "spend_band"
    summary: ClassVar[str] = "big or small spender, by total spend"
    segment_description: ClassVar[str] = "big from a total spend of 60, small below."
    segment_names: ClassVar[dict[str, Any]] = {"enum": ["small", "big"]}

    @classmethod
    def create(cls, settings: Settings, seed: int) -> Self:
        return cls()

    def learn(self, customer: CustomerSnapshot) -> None:
        """Nothing to learn: the band is a fixed threshold."""

    def assign(self, customer: CustomerSnapshot) -> str | None:
        if not customer.has_purchased:
            return None
        return "big" if customer.total_spend >= BIG_SPEND else "small"
