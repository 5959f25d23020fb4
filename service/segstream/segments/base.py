"""The one protocol every segment model implements, with every hook the pipeline calls.

A model belongs to one shop. It reads a :class:`~segstream.domain.features.CustomerSnapshot`
and names the customer's segment. ``learn`` lets a model take in a customer's latest
snapshot before assigning (rules ignore it; RFM keeps the shop's distribution; learned
models update online). A model's own state stays small whatever the shop's size: what it
keeps per customer goes into ``customer.memory[name]``, which is saved with the customer.
Models are checkpointed with every batch that changed them, so they hold only plain data
and seed all randomness from the ``seed`` they are created with.

:class:`ModelHooks` gives the optional hooks their defaults; a model inherits it and
overrides what it needs. The contract test (``tests/unit/segments/test_contract.py``)
runs every model through every hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from segstream.domain.features import CustomerSnapshot
from segstream.settings import Settings

QUIET_LADDER_DAYS = (7, 14, 30, 60, 90, 180, 365)
"""Quiet days at which a model whose features drift with time reviews a customer again
(a week first: a day or three of silence says nothing about a customer who orders
monthly, and each review costs every model an evaluation)."""


@runtime_checkable
class SegmentModel(Protocol):
    """A per-shop segmentation: ``learn`` from a snapshot, ``assign`` a segment name."""

    name: ClassVar[str]
    summary: ClassVar[str]
    """What the model is, in a clause (the API's ``ModelName``, the rules' field catalogue)."""
    segment_description: ClassVar[str]
    """What a customer's segment in this model says, in sentences (the API's ``Segments``)."""
    segment_names: ClassVar[dict[str, Any]]
    """The names ``assign`` can give, as a JSON Schema: ``{"enum": [...]}``, or for
    open-ended names ``{"pattern": "^...$"}`` (the API refuses any other name for the
    model, and ``deploy/openapi.json`` documents these)."""
    uses_partition_prior: ClassVar[bool]
    """True when the model blends in a model shared by the shops of one partition."""
    time_moves: ClassVar[bool]
    """Whether time alone (a review) may move a customer; if not, a review that moves one
    does so because the model changed (retired their segment), and says so (cause model)."""

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

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """The earliest stream time after ``customer.as_of`` at which the assignment may
        change although the customer sends nothing (None: only their events change it)."""
        ...

    def explain(self, customer: CustomerSnapshot) -> dict[str, Any] | None:
        """What the assignment rests on, for the query API (None: nothing to add)."""
        ...

    def change_details(self, customer: CustomerSnapshot) -> dict[str, float | None] | None:
        """Figures published with a change of the customer's segment (the ``predictions``
        of ``schemas/v1/segment_changed.json``; None: none)."""
        ...

    def min_dwell(self) -> timedelta:
        """How long a customer stays in a segment before time alone may move them out
        (their own events move them at once); the pipeline holds earlier moves."""
        ...

    def quality(self) -> dict[str, float]:
        """Quality figures of a learned model (empty for rules)."""
        ...

    def drain_announcements(self) -> Sequence[Announcement]:
        """Groups that formed since the last call (each is published once)."""
        ...

    def attach_prior(self, prior: Self) -> None:
        """Blend with ``prior``, the model shared by the partition's shops."""
        ...

    def forget(self, customer: CustomerSnapshot) -> None:
        """The customer was erased: drop anything kept that names them or counts what
        their memory held (their memory itself goes with their state)."""
        ...

    def label(self, segment: str) -> str | None:
        """The human name of one of the model's segments (None: the segment names itself)."""
        ...

    def drain_pass_request(self) -> bool:
        """Whether the model wants every customer of the shop looked at since the last
        call (it retired a segment some carry, or can place customers it could not): the
        pipeline then evaluates this model alone for each of them, as a review, in steps
        (:meth:`segstream.engine.pipeline.Pipeline.reevaluate`)."""
        ...


class Announcement(Protocol):
    """A newly formed group: the segment its members carry, its name, how it looks."""

    @property
    def segment(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def size(self) -> int: ...


class ModelHooks:
    """Defaults of the optional hooks: no reviews, nothing to explain or publish with a
    change, no quality figures, no announcements, no prior, nothing to forget, no labels,
    no passes."""

    uses_partition_prior: ClassVar[bool] = False
    time_moves: ClassVar[bool] = True

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """Rules and distributions that only the customer's events change: never."""
        return None

    def explain(self, customer: CustomerSnapshot) -> dict[str, Any] | None:
        """Nothing beyond the segment name."""
        return None

    def change_details(self, customer: CustomerSnapshot) -> dict[str, float | None] | None:
        """Nothing published beyond the segment name."""
        return None

    def min_dwell(self) -> timedelta:
        """Rules move a customer as soon as a threshold is crossed."""
        return timedelta(0)

    def quality(self) -> dict[str, float]:
        """No quality figures."""
        return {}

    def drain_announcements(self) -> Sequence[Announcement]:
        """Nothing to announce."""
        return []

    def attach_prior(self, prior: Any) -> None:
        """No prior is used."""

    def forget(self, customer: CustomerSnapshot) -> None:
        """Nothing is kept about any one customer outside their memory."""

    def label(self, segment: str) -> str | None:
        """Segment names say what they are."""
        return None

    def drain_pass_request(self) -> bool:
        """No pass is ever needed."""
        return False


def next_on_ladder(customer: CustomerSnapshot) -> datetime | None:
    """The next :data:`QUIET_LADDER_DAYS` point after the customer's current quiet days
    (None once they have been quiet for a year: nothing left to review)."""
    quiet = customer.last_activity_days
    for point in QUIET_LADDER_DAYS:
        if point > quiet:
            return customer.as_of + timedelta(days=point - quiet)
    return None
