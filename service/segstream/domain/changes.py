"""Records the worker emits: segment changes and dead letters (contracts in ``schemas/v1``)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from segstream.domain.contracts import DETAIL_MAX_CHARS, DeadLetterReason
from segstream.domain.events import format_time

SCHEMA_VERSION = 1
DEAD_LETTER_KEEP_BYTES = 64 * 1024
"""Most bytes of an original key or value a dead letter carries. Why: a dead letter holds
the original base64-encoded (4/3 the size), so a ~900 KB record kept whole would exceed the
producer's 1 MB request limit; the size and SHA-256 of the whole value are always given."""
_CHANGE_NAMESPACE = uuid.UUID("6f1c3a52-5d0e-4d0c-9a43-3f3b1f2c8e11")


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a segment was re-evaluated: an input event, stream time passing (timer), a
    shop's new, replaced or deleted segment definition, the customer's erasure, or a
    learned model that retired the customer's segment (model)."""

    kind: Literal["event", "timer", "definition", "erased", "model"]
    event_id: str | None = None
    event_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Schema ``cause`` object."""
        payload: dict[str, Any] = {"kind": self.kind}
        if self.event_id is not None:
            payload["event_id"] = self.event_id
        if self.event_type is not None:
            payload["event_type"] = self.event_type
        return payload


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """A customer moved from one segment to another in one model."""

    shop_id: str
    customer_id: str
    model: str
    previous: str | None
    current: str | None
    changed_at: datetime
    cause: Cause
    marketing_opt_in: bool | None = None
    """The customer's consent to marketing messages when the change happened (None: never
    stated): a downstream tool must not send marketing to anyone but ``True``."""
    definition_version: int | None = None
    """For a shop-defined segment: the version of the definition that decided the move."""
    arms: tuple[tuple[str, str], ...] = ()
    """(experiment id, arm) of the experiments on the segment the customer joins."""
    arms_left: tuple[tuple[str, str], ...] = ()
    """(experiment id, arm) of the experiments on the segment the customer leaves."""
    predictions: tuple[tuple[str, float | None], ...] = ()
    """What the model's new segment rests on (the churn model: its probability and the
    expected orders), published as ``predictions``; empty for the other models."""
    previous_name: str | None = None
    """The human name of ``previous``, for a model whose segments are ids (clusters)."""
    current_name: str | None = None
    """The human name of ``current``, likewise."""
    previous_since: float | None = None
    """When the customer's stay in ``previous`` began (epoch seconds; with ``previous``
    None, when they left their last segment of the model; None: never placed, or a state
    older than the field): a stay is left once, which keys a model's move (not published)."""

    @property
    def event_id(self) -> str:
        """Deterministic id: a re-emission after a crash carries the same id, so
        downstream consumers can de-duplicate; two different moves never share one."""
        trigger = self.cause.event_id or f"timer@{format_time(self.changed_at)}"
        if self.cause.kind == "definition":
            trigger = f"definition@v{self.definition_version}"
        elif self.cause.kind == "model":
            trigger = self._model_trigger()
        name = f"{self.shop_id}|{self.customer_id}|{self.model}|{self.current}|{trigger}"
        return str(uuid.uuid5(_CHANGE_NAMESPACE, name))

    def _model_trigger(self) -> str:
        """A learned model's own move (a pass, or a review it was not waiting for) is keyed
        by the stay it ends, whenever the model gets to it, so a replay repeats the id; a
        customer back in the same segment later has another stay (keyed by the segment
        alone, leaving it a second time repeated the first leave's id)."""
        if self.previous_since is not None:
            return f"left@{self.previous}@{float(self.previous_since)!r}"
        if self.previous is not None:  # a state from before stays were kept
            return f"retired@{self.previous}"
        return "placed@first"  # never in a segment of the model before

    @property
    def membership_key(self) -> bytes:
        """Key of the customer's record in this model on the compacted membership topic."""
        return f"{self.shop_id}|{self.customer_id}|{self.model}".encode()

    def membership(self) -> dict[str, Any] | None:
        """The ``segment_membership`` record this change leaves (None: a tombstone, the
        customer is in no segment of the model any more)."""
        if self.current is None:
            return None
        return self._versioned(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "segment_membership",
                "shop_id": self.shop_id,
                "customer_id": self.customer_id,
                "model": self.model,
                "segment": self.current,
                "since": format_time(self.changed_at),
                "change_id": self.event_id,
                "marketing_opt_in": self.marketing_opt_in,
                **({} if self.current_name is None else {"name": self.current_name}),
            },
            self.arms,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``segment_changed`` payload."""
        payload = self._versioned(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "segment_changed",
                "event_id": self.event_id,
                "shop_id": self.shop_id,
                "customer_id": self.customer_id,
                "model": self.model,
                "previous": self.previous,
                "current": self.current,
                "changed_at": format_time(self.changed_at),
                "cause": self.cause.to_json(),
                "marketing_opt_in": self.marketing_opt_in,
                **self._names(),
            },
            self.arms_left + self.arms,
        )
        if self.predictions:
            payload["predictions"] = dict(self.predictions)
        return payload

    def _names(self) -> dict[str, str | None]:
        """``previous_name`` and ``current_name`` for a model that names its segments."""
        if self.previous_name is None and self.current_name is None:
            return {}
        return {"previous_name": self.previous_name, "current_name": self.current_name}

    def _versioned(
        self, payload: dict[str, Any], arms: tuple[tuple[str, str], ...]
    ) -> dict[str, Any]:
        """With the definition version of a defined segment and the experiments' arms."""
        if self.definition_version is not None:
            payload["definition_version"] = self.definition_version
        if arms:
            payload["experiments"] = dict(arms)
        return payload


@dataclass(frozen=True, slots=True)
class SegmentFormed:
    """A learned model noticed a new group of customers (the seeds' holiday-season example)."""

    shop_id: str
    model: str
    segment: str
    description: str
    size: int
    formed_at: datetime
    name: str | None = None
    """The group's human name (what sizes and changes show beside ``segment``)."""

    @property
    def event_id(self) -> str:
        """Deterministic id, as for :class:`SegmentChange`; a segment that dissolved and
        formed again is announced again, under another id."""
        name = f"{self.shop_id}|{self.model}|{self.segment}|formed@{format_time(self.formed_at)}"
        return str(uuid.uuid5(_CHANGE_NAMESPACE, name))

    def to_json(self) -> dict[str, Any]:
        """The ``segment_formed`` payload (same topic as segment changes)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "segment_formed",
            "event_id": self.event_id,
            "shop_id": self.shop_id,
            "model": self.model,
            "segment": self.segment,
            **({} if self.name is None else {"name": self.name}),
            "description": self.description,
            "size": self.size,
            "formed_at": format_time(self.formed_at),
        }


@dataclass(frozen=True, slots=True)
class Source:
    """Where a consumed record came from."""

    topic: str
    partition: int
    offset: int


ORIGIN_HEADER = "segstream-origin"
"""The header a detoured record carries on the repartition topic: where it was found,
``<topic>/<partition>/<offset>``."""


@dataclass(frozen=True, slots=True)
class Detour:
    """A valid record found outside its shop's partition (its producer's partitioner is
    not Kafka's murmur2 over the shop id, or it was not keyed by the shop): it goes on,
    unchanged, to ``partition`` of the repartition topic, and is processed there. ``source``
    is where it was found."""

    partition: int
    source: Source
    key: bytes | None
    value: bytes | None

    def origin(self) -> bytes:
        """The value of :data:`ORIGIN_HEADER`."""
        return f"{self.source.topic}/{self.source.partition}/{self.source.offset}".encode()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the worker could not use, with the reason and (up to 64 KiB of) its bytes."""

    reason: DeadLetterReason
    detail: str
    source: Source
    key: bytes | None
    value: bytes | None

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The ``dead_letter`` payload: at most ~180 KB whatever the original's size."""
        value = self.value or b""
        payload: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "reason": self.reason,
            "detail": self.detail[:DETAIL_MAX_CHARS],
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
            },
            "original_key_b64": None if self.key is None else _kept_b64(self.key),
            "original_key_truncated": self.key is not None and _truncated(self.key),
            "original_value_b64": _kept_b64(value),
            "original_value_bytes": len(value),
            "original_value_sha256": hashlib.sha256(value).hexdigest(),
            "original_value_truncated": _truncated(value),
            "dead_lettered_at": format_time(now),
        }
        if self.key is not None and _truncated(self.key):
            payload["original_key_bytes"] = len(self.key)
            payload["original_key_sha256"] = hashlib.sha256(self.key).hexdigest()
        return payload


def _truncated(raw: bytes) -> bool:
    """Whether a dead letter keeps only the first DEAD_LETTER_KEEP_BYTES of ``raw``."""
    return len(raw) > DEAD_LETTER_KEEP_BYTES


def _kept_b64(raw: bytes) -> str:
    """Standard padded base64 of the (first DEAD_LETTER_KEEP_BYTES) bytes of ``raw``."""
    return base64.b64encode(memoryview(raw)[:DEAD_LETTER_KEEP_BYTES]).decode("ascii")
