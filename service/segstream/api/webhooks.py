"""Managing a shop's webhook endpoints over HTTP: register, list, read, replace, delete.

Stored like segment definitions: the compacted webhooks topic is the source of truth
(key ``<shop>|<webhook_id>``, a version per write, a tombstone deletes). Each worker
follows the topic into memory (:class:`~segstream.webhooks.directory.DirectoryFeed`,
started on the first webhook request); the requests of a shop are answered by the worker
that owns its partition, which writes under a per-shop lock, so versions rise one by one.
A write is answered once this worker has read it back (201 / 200), or 202 when that
takes longer than ``APPLY_WAIT_S``. The signing secret is in the 201 answer only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from segstream.api.edge import BadRequestError, NotFoundError, json_body
from segstream.settings import Settings
from segstream.webhooks.directory import DirectoryFeed, WebhookDirectory, WebhookWriter
from segstream.webhooks.registry import Webhook, checked_body, new_id, revised
from segstream.webhooks.signing import new_secret

APPLY_WAIT_S = 10.0
POLL_S = 0.02
MAX_WEBHOOKS = 20
"""Endpoints one shop may register."""


class WebhookConflictError(Exception):
    """The shop has as many endpoints as it may (HTTP 409)."""


class WebhooksUnavailableError(Exception):
    """The webhooks topic cannot be read or written now (HTTP 503: retry)."""


class WebhookStore:
    """The directory this worker follows, the writer, and one lock per shop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = WebhookDirectory()
        self.feed = DirectoryFeed(settings, self.directory)
        self.writer = WebhookWriter(settings)
        self._locks: dict[str, asyncio.Lock] = {}

    async def read(self) -> WebhookDirectory:
        """The directory, once everything on the topic at start has been read."""
        if not await self.feed.ready(APPLY_WAIT_S):
            raise WebhooksUnavailableError("the webhooks topic cannot be read now; retry shortly")
        return self.directory

    async def send(self, shop_id: str, webhook_id: str, value: bytes | None) -> None:
        """Write one record (None: a tombstone) and wait until the broker has it."""
        try:
            await self.writer.send(shop_id, webhook_id, value)
        except KafkaError as error:
            detail = f"the webhooks topic cannot be written now ({type(error).__name__}); retry"
            raise WebhooksUnavailableError(detail) from None

    def lock(self, shop_id: str) -> asyncio.Lock:
        """The lock of the shop's writes."""
        return self._locks.setdefault(shop_id, asyncio.Lock())

    async def close(self) -> None:
        """Stop following and writing."""
        await self.feed.stop()
        await self.writer.close()


def _body(body: bytes, settings: Settings) -> dict[str, Any]:
    parsed = json_body(body, "a webhook")
    if not isinstance(parsed, dict):
        raise BadRequestError("the body must be a JSON object (a webhook: url, models, segments)")
    return checked_body(parsed, settings.webhook_allow_private)


async def listing(store: WebhookStore, shop_id: str) -> tuple[int, dict[str, Any]]:
    """Every endpoint of the shop, without secrets."""
    directory = await store.read()
    return 200, {"shop_id": shop_id, "webhooks": [w.public() for w in directory.of_shop(shop_id)]}


async def one(store: WebhookStore, shop_id: str, webhook_id: str) -> tuple[int, dict[str, Any]]:
    """One endpoint, without its secret (404 if none)."""
    return 200, _found(await store.read(), shop_id, webhook_id).public()


def _found(directory: WebhookDirectory, shop_id: str, webhook_id: str) -> Webhook:
    webhook = directory.get(shop_id, webhook_id)
    if webhook is None:
        raise NotFoundError(f"shop {shop_id!r} has no webhook {webhook_id!r}")
    return webhook


async def create(store: WebhookStore, shop_id: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """Register an endpoint: 201 with its id, version 1 and its secret (shown this once)."""
    wanted = _body(body, store.settings)
    async with store.lock(shop_id):
        directory = await store.read()
        if len(directory.of_shop(shop_id)) >= MAX_WEBHOOKS:
            raise WebhookConflictError(
                f"shop {shop_id!r} has {MAX_WEBHOOKS} webhooks, the most it may: delete one first"
            )
        webhook = Webhook(shop_id, new_id(), secret=new_secret(), version=1, **wanted)
        status, answer = await _write(store, webhook, 201)
    return status, {**answer, "secret": webhook.secret}


async def replace(
    store: WebhookStore, shop_id: str, webhook_id: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """Replace an endpoint's URL and filters (next version; the secret stays)."""
    parsed = json_body(body, "a webhook")
    if not isinstance(parsed, dict):
        raise BadRequestError("the body must be a JSON object (a webhook: url, models, segments)")
    async with store.lock(shop_id):
        current = _found(await store.read(), shop_id, webhook_id)
        webhook = revised(current, parsed, store.settings.webhook_allow_private)
        return await _write(store, webhook, 200)


async def delete(store: WebhookStore, shop_id: str, webhook_id: str) -> tuple[int, dict[str, Any]]:
    """Delete an endpoint: nothing more is sent to it."""
    async with store.lock(shop_id):
        directory = await store.read()
        current = _found(directory, shop_id, webhook_id)
        await store.send(shop_id, webhook_id, None)
        answer = {"shop_id": shop_id, "webhook_id": webhook_id, "version": current.version}
        done = await _applied(lambda: directory.get(shop_id, webhook_id) is None)
    return (200, {**answer, "status": "deleted"}) if done else (202, _pending(answer))


async def _write(store: WebhookStore, webhook: Webhook, status: int) -> tuple[int, dict[str, Any]]:
    await store.send(webhook.shop_id, webhook.webhook_id, json.dumps(webhook.to_record()).encode())
    directory = store.directory
    done = await _applied(lambda: directory.versions.get(webhook.key, 0) >= webhook.version)
    answer = webhook.public()
    return (status, {**answer, "status": "live"}) if done else (202, _pending(answer))


async def _applied(check: Callable[[], bool]) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + APPLY_WAIT_S
    while not check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


def _pending(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "status": "accepted", "detail": "written; it takes effect shortly"}
