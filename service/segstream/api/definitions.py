"""Managing a shop's segment definitions over HTTP: create, replace, delete, list, read.

The compacted segment-definitions topic is the source of truth; these handlers read the
live definitions from the owning worker's tables and write changes to the topic. A write
is answered once the worker has applied it (201 / 200, with the version), or 202 when
that takes longer than ``APPLY_WAIT_S``. Versions are assigned here, one above the last
the shop's segment ever had; the worker refuses a version that is not above it, so of two
concurrent replaces one wins and the other is answered 409.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from segstream.api.bodies import definition_payload
from segstream.api.edge import BadRequestError, NotFoundError, shown
from segstream.engine.pipeline import MAX_DEFINITIONS
from segstream.engine.view import ReadView
from segstream.segments.defined import (
    Definition,
    DefinitionError,
    check_segment_names,
    validate_definition,
)
from segstream.segments.defined.live import ShopDefinitions, model_name
from segstream.segments.defined.templates import TEMPLATES
from segstream.settings import DEFINITIONS_ROLE, Settings
from segstream.state.keyspace import definition_record_key, shop_partition
from segstream.stream.kafka import connection_options

PREVIEW = "preview"
"""The segment id no segment may have: ``/definitions/preview`` is the preview route (a
concrete path matches before ``/definitions/{segment_id}``, as OpenAPI reads them)."""
APPLY_WAIT_S = 10.0
"""How long a write waits for the worker to apply it before answering 202."""
POLL_S = 0.05

Send = Callable[[str, str, bytes | None], Awaitable[None]]
"""Write one record to the definitions topic: shop, segment, value (None deletes)."""


class ConflictError(Exception):
    """The definition changed meanwhile, or already exists, or the shop defines as many
    segments as it may (HTTP 409)."""


class DefinitionWriter:
    """Sends definition records to the topic, in the shop's partition (one idempotent
    producer per worker, started on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(DEFINITIONS_ROLE)
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def send(self, shop_id: str, segment_id: str, value: bytes | None) -> None:
        """Write one record and wait until the broker has it."""
        producer = await self._started()
        partition = shop_partition(shop_id, self.settings.topic_partitions)
        key = definition_record_key(shop_id, segment_id)
        await producer.send_and_wait(self.topic, value, key=key, partition=partition)

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **connection_options(self.settings), enable_idempotence=True, acks="all"
                )
                await producer.start()
                self._producer = producer
        return self._producer

    async def close(self) -> None:
        """Stop the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


def live(reader: ReadView, shop_id: str) -> ShopDefinitions:
    """The shop's definitions as the tables hold them (read only: no book is made)."""
    return reader.definitions(shop_id)


def listing(reader: ReadView, shop_id: str) -> dict[str, Any]:
    """Every live definition of the shop with its current member count."""
    definitions = live(reader, shop_id)
    return {
        "shop_id": shop_id,
        "definitions": [
            _described(reader, shop_id, definitions, segment_id)
            for segment_id in sorted(definitions.rules)
        ],
    }


def one(reader: ReadView, shop_id: str, segment_id: str) -> dict[str, Any]:
    """One live definition with its member count, or NotFoundError."""
    definitions = live(reader, shop_id)
    if segment_id not in definitions.rules:
        raise NotFoundError(f"shop {shop_id!r} defines no segment {segment_id!r}")
    return _described(reader, shop_id, definitions, segment_id)


def _described(
    reader: ReadView, shop_id: str, definitions: ShopDefinitions, segment_id: str
) -> dict[str, Any]:
    stored = reader.shop_record(shop_id) or {}
    sizes = stored.get("sizes", {}).get(model_name(segment_id), {})
    return {
        "definition": definitions.rules[segment_id].definition.to_json(),
        "members": int(sizes.get(segment_id, 0)),
        "reevaluating": any(p.segment_id == segment_id for p in definitions.pending),
    }


async def create(
    reader: ReadView, send: Send, shop_id: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """Define a new segment (409 if the shop defines it already, or defines as many as it
    may: the worker would refuse it, and the write would never be applied)."""
    payload = definition_payload(body, shop_id)
    segment_id = str(payload.get("segment_id", ""))
    if segment_id == PREVIEW:
        raise DefinitionError("segment_id", f"{PREVIEW!r} is reserved: it is the preview route")
    definitions = live(reader, shop_id)
    if segment_id in definitions.rules:
        raise ConflictError(
            f"shop {shop_id!r} defines {segment_id!r} already (version "
            f"{definitions.version(segment_id)}): replace it with PUT"
        )
    if len(definitions.rules) >= MAX_DEFINITIONS:
        raise ConflictError(
            f"shop {shop_id!r} defines {len(definitions.rules)} segments, the most it may: "
            "delete one first"
        )
    definition = _versioned(payload, definitions.last_version(segment_id) + 1)
    return await _write(reader, send, definition, 201)


async def replace(
    reader: ReadView, send: Send, shop_id: str, segment_id: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """Replace a segment's definition with the next version (404 if not defined)."""
    payload = definition_payload(body, shop_id)
    if payload.get("segment_id", segment_id) != segment_id:
        raise BadRequestError(
            f"the body defines {shown(payload.get('segment_id'))}, the path names {segment_id!r}"
        )
    payload["segment_id"] = segment_id
    current = live(reader, shop_id).version(segment_id)
    if current is None:
        raise NotFoundError(
            f"shop {shop_id!r} defines no segment {segment_id!r}: create it with POST"
        )
    return await _write(reader, send, _versioned(payload, current + 1), 200)


async def delete(
    reader: ReadView, send: Send, shop_id: str, segment_id: str
) -> tuple[int, dict[str, Any]]:
    """Delete a segment; its members leave it."""
    version = live(reader, shop_id).version(segment_id)
    if version is None:
        raise NotFoundError(f"shop {shop_id!r} defines no segment {segment_id!r}")
    await send(shop_id, segment_id, None)
    answer = {"shop_id": shop_id, "segment_id": segment_id, "version": version}

    def gone() -> bool | None:
        return True if live(reader, shop_id).version(segment_id) is None else None

    done = await applied(gone)
    return (200, {**answer, "status": "deleted"}) if done else (202, pending(answer))


async def _write(
    reader: ReadView, send: Send, definition: Definition, status: int
) -> tuple[int, dict[str, Any]]:
    """Send the definition; ``status`` once applied, 202 when not applied in time."""
    shop_id, segment_id = definition.shop_id, definition.segment_id
    await send(shop_id, segment_id, json.dumps(definition.to_json()).encode())

    def outcome() -> bool | None:
        definitions = live(reader, shop_id)
        if definitions.last_version(segment_id) < definition.version:
            return None
        return definitions.version(segment_id) == definition.version and (
            definitions.rules[segment_id].definition == definition
        )

    done = await applied(outcome)
    if done is False:
        raise ConflictError(
            f"{segment_id!r} was changed at the same time by another request; read it and retry"
        )
    described = {"definition": definition.to_json()}
    if done is None:
        return 202, pending(described)
    return status, {**described, "status": "live", "reevaluating": True}


async def applied(check: Callable[[], bool | None]) -> bool | None:
    """Poll ``check`` (None: not applied yet) for up to APPLY_WAIT_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + APPLY_WAIT_S
    while (result := check()) is None and loop.time() < deadline:
        await asyncio.sleep(POLL_S)
    return result


def pending(answer: dict[str, Any]) -> dict[str, Any]:
    """The 202 answer: written, not applied yet."""
    return {**answer, "status": "accepted", "detail": "written; the worker applies it shortly"}


def templates() -> dict[str, Any]:
    """The built-in templates (``POST /shops/{shop}/definitions`` with ``template``)."""
    return {"templates": [t.to_json() for t in TEMPLATES.values()]}


def _versioned(payload: dict[str, Any], version: int) -> Definition:
    """The valid definition with the version the server assigns; a body that names
    another version is out of date (409)."""
    stated = payload.get("version", version)
    if isinstance(stated, float) and stated.is_integer():  # 2.0 is the integer 2 in JSON
        stated = payload["version"] = int(stated)
    if isinstance(stated, int) and not isinstance(stated, bool) and stated != version:
        raise ConflictError(
            f"the body says version {shown(stated)}, but the next version is {version}: "
            "read the current definition and retry (or leave version out)"
        )
    payload.setdefault("version", version)  # a stated one of the wrong type is a 422
    definition = validate_definition(payload)
    check_segment_names(definition)
    return definition
