"""One endpoint's deliveries: a bounded queue split into lanes by customer, each lane a
task that POSTs its changes one after the other (so a customer's changes arrive in order),
retrying with backoff, paced by the endpoint's token bucket.

Every endpoint has its own tasks, queue and bucket: a slow or failing endpoint only ever
waits on itself. When its queue is at its bound, :meth:`Endpoint.offer` refuses the change
and the caller dead-letters it (``queue_full``): a dead endpoint holds neither unbounded
memory nor, beyond its retry budget, the commits of the changes behind it.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.settings import Settings
from segstream.webhooks import signing
from segstream.webhooks.pacing import TokenBucket, backoff_s
from segstream.webhooks.registry import Webhook

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One change for one endpoint: where it was read, its bytes (POSTed as they are on the
    change topic), its id (``webhook-id``), and its record's timestamp."""

    partition: int
    offset: int
    generation: int
    change_id: str
    lane_key: str
    body: bytes
    produced_at: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST got: the status (None: no answer), a result class for the metrics,
    and the start of the answer's body (or the error)."""

    status: int | None
    result: str
    excerpt: str

    @property
    def ok(self) -> bool:
        """A 2xx."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended: ``delivered``, ``dead_lettered`` (with the reason) or ``dropped``
    (its endpoint was deleted, or its partition went to another process)."""

    kind: str
    attempts: int
    last: Attempt | None = None
    reason: str | None = None


Post = Callable[[str, bytes, dict[str, str]], Awaitable[Attempt]]
"""POST (url, body, headers) once; what it got (never raises)."""
Finish = Callable[[Webhook, Job, Outcome], Awaitable[None]]
"""Called once per job when it ends (the caller writes a dead letter, then counts the
job's offset as finished, unless the job's partition went elsewhere meanwhile)."""
Live = Callable[[Webhook, Job], Webhook | None]
"""The endpoint's current version for a job, or None when the job is to be dropped."""


class Endpoint:
    """The queue, lanes and bucket of one webhook."""

    def __init__(
        self, webhook: Webhook, settings: Settings, post: Post, finish: Finish, live: Live
    ) -> None:
        self.webhook = webhook
        self.settings = settings
        self.post = post
        self.finish = finish
        self.live = live
        self.bucket = TokenBucket(settings.webhook_rate_per_s, settings.webhook_burst)
        self.lanes: list[asyncio.Queue[Job]] = [
            asyncio.Queue() for _ in range(settings.webhook_concurrency)
        ]
        self.queued = 0
        self.tasks: list[asyncio.Task[None]] = []

    def offer(self, job: Job) -> bool:
        """Queue ``job`` in its customer's lane; False when the queue is at its bound."""
        if self.queued >= self.settings.webhook_queue_max:
            return False
        if not self.tasks:
            self.tasks = [asyncio.create_task(self._lane(lane)) for lane in self.lanes]
        self.queued += 1
        lane = zlib.crc32(job.lane_key.encode()) % len(self.lanes)
        self.lanes[lane].put_nowait(job)
        return True

    @property
    def fullness(self) -> float:
        """Queued changes as a share of the bound."""
        return self.queued / self.settings.webhook_queue_max

    async def _lane(self, lane: asyncio.Queue[Job]) -> None:
        while True:
            job = await lane.get()
            try:
                outcome = await self.deliver(job)
                await self.finish(self.webhook, job, outcome)
            except Exception:  # a bug: the job stays unfinished (its offset uncommitted,
                # so it is sent again after a restart); the lane goes on with the next
                log.exception(
                    "webhook_lane_failed", webhook_id=self.webhook.webhook_id, offset=job.offset
                )
            finally:
                self.queued -= 1

    async def deliver(self, job: Job) -> Outcome:
        """POST ``job`` until a 2xx, the retry budget is spent, or it is to be dropped."""
        settings, last = self.settings, None
        for attempt in range(1, settings.webhook_max_attempts + 1):
            if attempt > 1:
                retry = attempt - 1
                wait = backoff_s(
                    retry, settings.webhook_backoff_base_s, settings.webhook_backoff_max_s
                )
                await asyncio.sleep(wait)
            webhook = self.live(self.webhook, job)
            if webhook is None:
                return Outcome("dropped", attempt - 1, last)
            self.webhook = webhook
            await asyncio.sleep(self.bucket.reserve())
            last = await self._attempt(webhook, job)
            if last.ok:
                telemetry.WEBHOOK_DELIVERY_SECONDS.observe(max(0.0, time.time() - job.produced_at))
                return Outcome("delivered", attempt, last)
        return Outcome("dead_lettered", settings.webhook_max_attempts, last, "retries_exhausted")

    async def _attempt(self, webhook: Webhook, job: Job) -> Attempt:
        stamp = int(time.time())
        headers = signing.headers(webhook.secret, job.change_id, stamp, job.body)
        attempt = await self.post(webhook.url, job.body, headers)
        telemetry.WEBHOOK_ATTEMPTS.labels(result=attempt.result).inc()
        return attempt

    async def close(self) -> None:
        """Stop the lanes (jobs still queued are dropped: their offsets stay uncommitted,
        so the next owner of the partition delivers them)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
