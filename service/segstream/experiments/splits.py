"""Experiments on a segment: the arms, their shares, and which arm each member is in.

A member's arm is a pure function of (shop, experiment, customer): the first 8 bytes of
a BLAKE2b hash as a point in [0, 1), placed on the arms' cumulative shares. Nothing about
the arm is stored, so every worker, a restarted one and one that took over a partition
give the same arm, whatever order events arrived in, and a customer who leaves the
segment and comes back keeps theirs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from segstream.domain.contracts import document_error
from segstream.domain.events import format_time, parse_time
from segstream.segments import available_models, is_segment_of, segment_names_hint
from segstream.segments.defined.live import segment_of
from segstream.segments.defined.rules import DefinitionError

SCHEMA = "experiment_definition"
SHARE_TOLERANCE = 1e-9


class ExperimentError(DefinitionError):
    """An experiment definition that breaks the contract: ``path`` and why (a record of the
    definitions topic like a segment definition, and refused the same way)."""


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm: its name and the fraction of members in it."""

    name: str
    share: float


@dataclass(frozen=True, slots=True)
class Experiment:
    """A valid experiment definition (see ``schemas/v1/experiment_definition.json``)."""

    shop_id: str
    experiment_id: str
    name: str
    version: int
    model: str
    segment: str
    arms: tuple[Arm, ...]
    starts_at: datetime
    ends_at: datetime | None = None
    description: str | None = None

    def running(self, at: datetime) -> bool:
        """Whether members are enrolled at ``at`` (from the start, before any end)."""
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)

    def arm(self, customer_id: str) -> str:
        """The customer's arm (see the module docstring)."""
        return arm_of(self.shop_id, self.experiment_id, customer_id, self.arms)

    def to_json(self) -> dict[str, Any]:
        """The definition as published (inverse of :func:`validate_experiment`)."""
        payload: dict[str, Any] = {
            "schema_version": 1,
            "shop_id": self.shop_id,
            "experiment_id": self.experiment_id,
            "name": self.name,
            "version": self.version,
            "model": self.model,
            "segment": self.segment,
            "arms": [{"name": arm.name, "share": arm.share} for arm in self.arms],
            "starts_at": format_time(self.starts_at),
        }
        if self.ends_at is not None:
            payload["ends_at"] = format_time(self.ends_at)
        if self.description is not None:
            payload["description"] = self.description
        return payload


FIXED = ("model", "segment", "arms")
"""What a running experiment's later versions may not change: each would move members
between arms or segments mid-test (start a new experiment instead)."""


def changed_fixed(current: Experiment, new: Experiment) -> ExperimentError | None:
    """Why ``new`` may not replace ``current`` (None: it may)."""
    for name in FIXED:
        if getattr(current, name) != getattr(new, name):
            return ExperimentError(
                name,
                f"{name} of a running experiment cannot change (members would move between "
                "arms): start a new experiment instead",
            )
    return None


def check_target(experiment: Experiment, defined: Collection[str]) -> None:
    """:class:`ExperimentError` naming the model or segment unless the experiment's segment
    can have members: a built-in model of the registry and one of its ``segment_names``,
    or ``defined:<id>`` with segment ``<id>`` for a segment the shop defines (``defined``).
    An experiment on a typo would be live and empty forever. Not part of
    :func:`validate_experiment`: a stored experiment stays loadable when its defined
    segment is deleted; the API checks new versions."""
    model, segment = experiment.model, experiment.segment
    own = segment_of(model)
    if own is not None:
        if own not in defined:
            known = ", ".join(sorted(defined)) or "none"
            raise ExperimentError(
                "model", f"the shop defines no segment {own!r} (its defined segments: {known})"
            )
        if segment != own:
            raise ExperimentError("segment", f"the segment of model {model!r} is {own!r}")
        return
    kind = available_models().get(model)
    if kind is None:
        known = ", ".join(available_models())
        raise ExperimentError("model", f"no model {model!r}; models: {known}, defined:<id>")
    if not is_segment_of(kind, segment):
        shown = repr(segment) if len(segment) <= 80 else f"{segment[:80]!r}..."
        raise ExperimentError(
            "segment",
            f"model {model!r} has no segment {shown}; known: {segment_names_hint(kind)}",
        )


def hash_point(shop_id: str, experiment_id: str, customer_id: str) -> float:
    """Where the customer falls in [0, 1) for this experiment.

    >>> hash_point("tea-1", "winback", "c-1") == hash_point("tea-1", "winback", "c-1")
    True
    """
    name = f"{shop_id}|{experiment_id}|{customer_id}".encode()
    digest = hashlib.blake2b(name, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def arm_of(shop_id: str, experiment_id: str, customer_id: str, arms: Sequence[Arm]) -> str:
    """The arm whose cumulative share first exceeds the customer's hash point.

    >>> arms = (Arm("holdout", 0.2), Arm("treatment", 0.8))
    >>> arm_of("tea-1", "winback", "c-1", arms) in ("holdout", "treatment")
    True
    """
    point, edge = hash_point(shop_id, experiment_id, customer_id), 0.0
    for arm in arms:
        edge += arm.share
        if point < edge:
            return arm.name
    return arms[-1].name  # shares summing to 1 - 1e-9 leave a sliver: the last arm


def validate_experiment(payload: Any) -> Experiment:
    """The :class:`Experiment` ``payload`` (parsed JSON) states, or :class:`ExperimentError`."""
    error = document_error(SCHEMA, payload)
    if error is not None:
        path = "/".join(str(part) for part in error.absolute_path)
        raise ExperimentError(path or "experiment", error.message)
    arms = tuple(Arm(item["name"], float(item["share"])) for item in payload["arms"])
    _check_arms(arms)
    starts_at = parse_time(payload["starts_at"])
    ends_at = None if "ends_at" not in payload else parse_time(payload["ends_at"])
    if ends_at is not None and ends_at <= starts_at:
        raise ExperimentError("ends_at", "must be after starts_at")
    return Experiment(
        shop_id=payload["shop_id"],
        experiment_id=payload["experiment_id"],
        name=payload["name"],
        version=payload["version"],
        model=payload["model"],
        segment=payload["segment"],
        arms=arms,
        starts_at=starts_at,
        ends_at=ends_at,
        description=payload.get("description"),
    )


def _check_arms(arms: Sequence[Arm]) -> None:
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ExperimentError("arms", f"arm names must differ: {names}")
    total = math.fsum(arm.share for arm in arms)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ExperimentError("arms", f"shares must sum to 1, not {total:g}")
