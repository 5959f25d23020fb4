"""The delivery process: reads the change topic (``read_committed``, in the consumer group
``<app id>-webhooks``, so more processes share its partitions like workers do), hands
each change to the queues of the endpoints it matches, and commits a partition's offset
only up to the oldest change not yet delivered or dead-lettered for all of them
(at-least-once: after a crash a change may be POSTed again, always with the same
``webhook-id``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from segstream.domain.events import format_time
from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.settings import WEBHOOK_DEAD_LETTERS_ROLE, Settings
from segstream.stream.kafka import connection_options
from segstream.webhooks.directory import DirectoryFeed, WebhookDirectory
from segstream.webhooks.endpoint import Attempt, Endpoint, Job, Outcome, Post
from segstream.webhooks.pacing import PartitionProgress
from segstream.webhooks.registry import Webhook

log = get_logger(__name__)
EXCERPT_CHARS = 500
"""Most characters of an endpoint's answer a dead letter keeps."""
DIRECTORY_WAIT_S = 60.0


def result_class(status: int) -> str:
    """The metrics' name for a status: 2xx, 4xx, or 5xx (anything else too)."""
    return "2xx" if 200 <= status < 300 else "4xx" if 400 <= status < 500 else "5xx"


def client_session() -> aiohttp.ClientSession:
    """The HTTP client of all endpoints, without aiohttp's default cap of 100 connections
    in all: endpoints hanging until their timeout would hold the cap and make the others
    wait (each endpoint's own lanes, ``SEGSTREAM_WEBHOOK_CONCURRENCY``, bound its share)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0))


def http_poster(session: aiohttp.ClientSession, timeout_s: float) -> Post:
    """POST with ``session``: no redirects followed (a 3xx is a failure), ``timeout_s``
    for the whole exchange."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def post(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        try:
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as answer:
                excerpt = (await answer.content.read(EXCERPT_CHARS)).decode("utf-8", "replace")
                return Attempt(answer.status, result_class(answer.status), excerpt)
        except TimeoutError:
            return Attempt(None, "timeout", f"no answer within {timeout_s:g} s")
        except (aiohttp.ClientError, ValueError, OSError) as error:
            return Attempt(None, "error", f"{type(error).__name__}: {error}"[:EXCERPT_CHARS])

    return post


def dead_letter(webhook: Webhook, job: Job, outcome: Outcome) -> dict[str, Any]:
    """The webhook dead-letter record: the change as it was, the endpoint, why, how many
    attempts, and the last answer (status and the start of its body)."""
    last = outcome.last
    return {
        "schema_version": 1,
        "kind": "webhook_dead_letter",
        "reason": outcome.reason,
        "shop_id": webhook.shop_id,
        "webhook_id": webhook.webhook_id,
        "webhook_version": webhook.version,
        "url": webhook.url,
        "change_id": job.change_id,
        "change": json.loads(job.body),
        "source": {"partition": job.partition, "offset": job.offset},
        "attempts": outcome.attempts,
        "last_status": None if last is None else last.status,
        "last_response": None if last is None else last.excerpt[:EXCERPT_CHARS],
        "dead_lettered_at": format_time_now(),
    }


def format_time_now() -> str:
    """Now, as the contracts write times."""
    return format_time(datetime.now(UTC))


class Delivery(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer loop, the endpoints' queues and the partitions' progress."""

    def __init__(self, settings: Settings, post: Post | None = None) -> None:
        self.settings = settings
        self.directory = WebhookDirectory()
        self.feed = DirectoryFeed(settings, self.directory)
        self.post = post
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self.progress: dict[int, PartitionProgress] = {}
        self.generation: dict[int, int] = {}
        self.topic = settings.topic("segment_changes")
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.committed: dict[int, int] = {}

    def dispatch(self, partition: int, record: ConsumerRecord[bytes, bytes]) -> None:
        """Queue one change for every endpoint it matches (malformed: skipped, counted)."""
        progress = self.progress.setdefault(partition, PartitionProgress())
        change = _change(record.value)
        if change is None:
            telemetry.WEBHOOK_RECORDS_SKIPPED.inc()
            log.warning("webhook_change_skipped", partition=partition, offset=record.offset)
            progress.add(record.offset, 0)
            return
        matched = self.directory.matching(change)
        progress.add(record.offset, len(matched))
        customer = change.get("customer_id") or change.get("segment")
        for webhook in matched:
            job = Job(
                partition,
                record.offset,
                self.generation.get(partition, 0),
                str(change.get("event_id")),
                f"{webhook.shop_id}|{customer}",
                record.value or b"",
                record.timestamp / 1000.0,
            )
            if not self._endpoint(webhook).offer(job):
                self._spawn(
                    self.finish(webhook, job, Outcome("dead_lettered", 0, None, "queue_full"))
                )

    def _endpoint(self, webhook: Webhook) -> Endpoint:
        endpoint = self.endpoints.get(webhook.key)
        if endpoint is None:
            post = self.post
            assert post is not None
            endpoint = Endpoint(webhook, self.settings, post, self.finish, self.live)
            self.endpoints[webhook.key] = endpoint
        return endpoint

    def live(self, webhook: Webhook, job: Job) -> Webhook | None:
        """The endpoint's current version, None to drop ``job``: the endpoint was deleted,
        or the job's partition is no longer this process's."""
        if not self._current(job):
            return None
        return self.directory.get(webhook.shop_id, webhook.webhook_id)

    async def finish(self, webhook: Webhook, job: Job, outcome: Outcome) -> None:
        """Count a job's end and its offset as finished; a dead letter is written (and
        acknowledged) first. A job of a partition this process no longer owns changes
        nothing: the partition's next owner sends it again."""
        if not self._current(job):
            return
        if outcome.kind == "dead_lettered":
            await self._send_dead_letter(webhook, job, outcome)
            telemetry.WEBHOOK_DEAD_LETTERS.labels(reason=outcome.reason).inc()
            log.warning(
                "webhook_dead_lettered",
                shop_id=webhook.shop_id,
                webhook_id=webhook.webhook_id,
                reason=outcome.reason,
                attempts=outcome.attempts,
                last_status=outcome.last.status if outcome.last else None,
            )
        telemetry.WEBHOOK_DELIVERIES.labels(outcome=outcome.kind).inc()
        progress = self.progress.get(job.partition)
        if progress is not None and self._current(job):
            progress.finish(job.offset)

    def _current(self, job: Job) -> bool:
        """Whether ``job``'s partition is still this process's, as when it was read."""
        same = self.generation.get(job.partition, 0) == job.generation
        return same and job.partition in self.progress

    async def _send_dead_letter(self, webhook: Webhook, job: Job, outcome: Outcome) -> None:
        """Write the dead letter, retrying until Kafka has it: the job's offset may not be
        committed before (the lane waits; so does the change's partition)."""
        assert self.producer is not None
        value = json.dumps(dead_letter(webhook, job, outcome)).encode()
        topic = self.settings.topic(WEBHOOK_DEAD_LETTERS_ROLE)
        pause = min(1.0, self.settings.webhook_backoff_max_s)
        while True:
            try:
                await self.producer.send_and_wait(topic, value, key=webhook.shop_id.encode())
                return
            except KafkaError as error:
                log.warning("webhook_dead_letter_retry", error=type(error).__name__)
                await asyncio.sleep(pause)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------ consumer group

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Commit what is finished, then forget the partitions: their queued jobs are
        dropped (the next owner delivers them again, with the same ids)."""
        await self.commit()
        for tp in revoked:
            self.generation[tp.partition] = self.generation.get(tp.partition, 0) + 1
            self.progress.pop(tp.partition, None)
            self.committed.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Start the partitions' progress afresh."""
        for tp in assigned:
            self.progress[tp.partition] = PartitionProgress()

    async def commit(self) -> None:
        """Commit, per partition, the offset before which every change is finished."""
        if self.consumer is None:
            return
        offsets = {}
        for partition, progress in self.progress.items():
            offset = progress.committable()
            if offset is not None and offset > self.committed.get(partition, -1):
                offsets[TopicPartition(self.topic, partition)] = offset
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as error:  # a rebalance meanwhile: the next commit, or owner
                log.warning("webhook_commit_failed", error=type(error).__name__)
            else:
                for tp, offset in offsets.items():
                    self.committed[tp.partition] = offset
        self._gauges()

    async def forget_deleted(self) -> None:
        """Stop the lanes of endpoints deleted meanwhile once their queues are empty."""
        for key, endpoint in list(self.endpoints.items()):
            if endpoint.queued == 0 and self.directory.get(*key) is None:
                del self.endpoints[key]
                await endpoint.close()

    def _gauges(self) -> None:
        queued = [endpoint.queued for endpoint in self.endpoints.values()]
        telemetry.WEBHOOK_QUEUED.set(sum(queued))
        fullest = max((e.fullness for e in self.endpoints.values()), default=0.0)
        telemetry.WEBHOOK_QUEUE_FULLEST.set(fullest)
        telemetry.WEBHOOK_ENDPOINTS.set(self.directory.endpoints())

    # ------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set."""
        if not await self.feed.ready(DIRECTORY_WAIT_S):
            raise TimeoutError("the webhooks topic could not be read")
        options = connection_options(self.settings)
        self.producer = AIOKafkaProducer(**options, enable_idempotence=True, acks="all")
        self.consumer = AIOKafkaConsumer(
            **options,
            group_id=f"{self.settings.app_id}-webhooks",
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.broker_session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.broker_session_timeout_s * 1000 / 3),
        )
        async with client_session() as session:
            if self.post is None:
                self.post = http_poster(session, self.settings.webhook_timeout_s)
            await self.producer.start()
            self.consumer.subscribe([self.topic], listener=self)
            await self.consumer.start()
            try:
                await self._loop(stop)
            finally:
                await self._close()

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        interval = self.settings.webhook_commit_interval_s
        next_commit = time.monotonic() + interval
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=50, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    self.dispatch(tp.partition, record)
            if time.monotonic() >= next_commit:
                await self.commit()
                await self.forget_deleted()
                next_commit = time.monotonic() + interval

    async def _close_endpoints(self) -> None:
        """Stop every endpoint's lanes and wait for the dead letters being written."""
        for endpoint in self.endpoints.values():
            await endpoint.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _close(self) -> None:
        await self._close_endpoints()
        if self.consumer is not None:
            await self.commit()
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()
        await self.feed.stop()


def _change(value: bytes | None) -> dict[str, Any] | None:
    """A change record as JSON, None when it is not a JSON object with an event id."""
    try:
        parsed = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("event_id"), str):
        return None
    return parsed
