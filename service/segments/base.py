"""The one protocol every segment model implements.

A model belongs to one shop. It reads a :class:`~service.core.features.CustomerSnapshot`
and names the customer's segment. ``learn`` lets a model take in a customer's latest
snapshot before assigning (rules ignore it; RFM keeps the shop's distribution;
learned models update online). Models are pickled into checkpoints, so they hold
only plain data and seed all randomness from the ``seed`` they are created with.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, Self, runtime_checkable

from service.core.features import CustomerSnapshot
from service.settings import Settings


@runtime_checkable
class SegmentModel(Protocol):
    """A per-shop segmentation: ``learn`` from a snapshot, ``assign`` a segment name."""

    name: ClassVar[str]
    derived_from_customers: ClassVar[bool]
    """True when the model's state can be rebuilt exactly by ``learn`` over the shop's
    current customers (so it needs no checkpoint of its own)."""

    @classmethod
    def create(cls, settings: Settings, seed: int) -> Self:
        """A fresh model for one shop."""
        ...

    def learn(self, customer: CustomerSnapshot) -> None:
        """Take in the customer's latest snapshot."""
        ...

    def assign(self, customer: CustomerSnapshot) -> str | None:
        """The customer's segment, or None when the model cannot place them yet."""
        ...
