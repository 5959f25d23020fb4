"""Records the worker emits: segment changes and dead letters (contracts in ``schemas/v1``)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from service.core.events import format_time

SCHEMA_VERSION = 1
_CHANGE_NAMESPACE = uuid.UUID("6f1c3a52-5d0e-4d0c-9a43-3f3b1f2c8e11")


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a segment was re-evaluated: an input event, or stream time passing (timer)."""

    kind: Literal["event", "timer"]
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

    @property
    def event_id(self) -> str:
        """Deterministic id: a re-emission after a crash carries the same id, so
        downstream consumers can de-duplicate."""
        trigger = self.cause.event_id or f"timer@{format_time(self.changed_at)}"
        name = f"{self.shop_id}|{self.customer_id}|{self.model}|{self.current}|{trigger}"
        return str(uuid.uuid5(_CHANGE_NAMESPACE, name))

    def to_json(self) -> dict[str, Any]:
        """The ``segment_changed`` payload."""
        return {
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
        }


@dataclass(frozen=True, slots=True)
class SegmentFormed:
    """A learned model noticed a new group of customers (the seeds' holiday-season example)."""

    shop_id: str
    model: str
    segment: str
    description: str
    size: int
    formed_at: datetime

    @property
    def event_id(self) -> str:
        """Deterministic id, as for :class:`SegmentChange`."""
        name = f"{self.shop_id}|{self.model}|{self.segment}|formed"
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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the worker could not use, kept whole with the reason."""

    reason: str
    detail: str
    source: Source
    key: bytes | None
    value: bytes | None

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The ``dead_letter`` payload."""
        return {
            "schema_version": SCHEMA_VERSION,
            "reason": self.reason,
            "detail": self.detail,
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
            },
            "original_key_b64": _b64(self.key),
            "original_value_b64": _b64(self.value) or "",
            "dead_lettered_at": format_time(now),
        }


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")
