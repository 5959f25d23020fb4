"""One endpoint's lanes: retries, dead letters, order per customer, its rate limit, its
bounded queue, and that a stuck endpoint never holds up another."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from typing import Any

import pytest

from segstream.settings import Settings
from segstream.webhooks.endpoint import Attempt, Endpoint, Job, Outcome
from segstream.webhooks.registry import Webhook

FAST = {
    "webhook_backoff_base_s": 0.001,
    "webhook_backoff_max_s": 0.004,
    "webhook_rate_per_s": 100_000.0,
    "webhook_burst": 10_000,
}


def settings(**changes: Any) -> Settings:
    return Settings(**(FAST | changes))


def hook(name: str) -> Webhook:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    webhook_id = "wh_" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return Webhook("shop-1", webhook_id, f"https://{name}.example/h", secret, 1)


def job(offset: int, customer: str = "c-1") -> Job:
    return Job(0, offset, 0, f"change-{offset}", f"shop-1|{customer}", b"{}", time.time())


class Log:
    """What the endpoints finished, in order."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, int, Outcome]] = []

    async def finish(self, webhook: Webhook, job: Job, outcome: Outcome) -> None:
        self.ended.append((webhook.webhook_id, job.offset, outcome))

    def of(self, webhook: Webhook) -> list[int]:
        return [offset for name, offset, _ in self.ended if name == webhook.webhook_id]


def endpoint(webhook: Webhook, settings: Settings, post: Any, log: Log) -> Endpoint:
    return Endpoint(webhook, settings, post, log.finish, lambda current, job: current)


async def ok(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
    return Attempt(200, "2xx", "ok")


async def until(done: Any, limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "not reached"
        await asyncio.sleep(0.005)


async def test_a_stuck_endpoint_never_holds_up_another() -> None:
    never = asyncio.Event()

    async def hang(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        await never.wait()
        raise AssertionError("unreachable")

    log, config = Log(), settings(webhook_queue_max=10)
    stuck, healthy = hook("stuck"), hook("healthy")
    slow = endpoint(stuck, config, hang, log)
    fast = endpoint(healthy, config, ok, log)
    offered = [slow.offer(job(n, f"c-{n % 3}")) for n in range(30)]
    assert offered == [True] * 10 + [False] * 20  # bounded: the rest is the caller's to dead-letter
    for n in range(100):  # the healthy one drains its queue while the stuck one holds 10
        while not fast.offer(job(n, f"c-{n % 7}")):
            await until_room(fast)
    await until(lambda: len(log.of(healthy)) == 100)
    assert log.of(stuck) == [] and slow.queued == 10
    await asyncio.gather(slow.close(), fast.close())


async def until_room(target: Endpoint) -> None:
    await until(lambda: target.queued < target.settings.webhook_queue_max)


async def test_retries_end_in_a_dead_letter_with_the_last_answer() -> None:
    calls: list[dict[str, str]] = []

    async def failing(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        calls.append(headers)
        return Attempt(503, "5xx", "down for maintenance")

    log = Log()
    target = endpoint(hook("a"), settings(webhook_max_attempts=4), failing, log)
    target.offer(job(7))
    await until(lambda: len(log.ended) == 1)
    [(_, offset, outcome)] = log.ended
    assert (offset, outcome.kind, outcome.reason, outcome.attempts) == (
        7,
        "dead_lettered",
        "retries_exhausted",
        4,
    )
    assert outcome.last == Attempt(503, "5xx", "down for maintenance")
    assert len(calls) == 4 and {c["webhook-id"] for c in calls} == {"change-7"}
    await target.close()


async def test_a_customer_s_changes_arrive_in_order_through_failures() -> None:
    draws = random.Random(3)
    arrived: list[str] = []

    async def flaky(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        await asyncio.sleep(draws.random() / 1000)
        if draws.random() < 0.4:
            return Attempt(None, "timeout", "no answer")
        arrived.append(headers["webhook-id"])
        return Attempt(200, "2xx", "")

    log = Log()
    target = endpoint(
        hook("a"), settings(webhook_max_attempts=50, webhook_concurrency=4), flaky, log
    )
    jobs = [job(n, f"c-{n % 5}") for n in range(200)]
    for item in jobs:
        assert target.offer(item)
    await until(lambda: len(log.ended) == 200)
    assert sorted(arrived) == sorted(j.change_id for j in jobs)
    for customer in {j.lane_key for j in jobs}:
        theirs = [j.change_id for j in jobs if j.lane_key == customer]
        assert [a for a in arrived if a in theirs] == theirs
    assert len({lane for lane in range(4) if not target.lanes[lane].empty()}) == 0
    await target.close()


async def test_the_rate_limit_paces_one_endpoint() -> None:
    log = Log()
    config = settings(webhook_rate_per_s=50.0, webhook_burst=5, webhook_concurrency=8)
    target = endpoint(hook("a"), config, ok, log)
    started = time.monotonic()
    for n in range(15):
        target.offer(job(n, f"c-{n}"))
    await until(lambda: len(log.ended) == 15)
    assert time.monotonic() - started >= (15 - 5) / 50.0 - 0.01
    await target.close()


async def test_a_job_of_a_deleted_endpoint_is_dropped_unsent() -> None:
    sent: list[str] = []

    async def record(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        sent.append(url)
        return Attempt(200, "2xx", "")

    log = Log()
    target = Endpoint(hook("a"), settings(), record, log.finish, lambda current, job: None)
    target.offer(job(1))
    await until(lambda: len(log.ended) == 1)
    assert sent == [] and log.ended[0][2].kind == "dropped"
    await target.close()


@pytest.mark.parametrize("status", [301, 400, 410, 500])
async def test_anything_but_a_2xx_is_retried(status: int) -> None:
    answers = [Attempt(status, "4xx", "no"), Attempt(204, "2xx", "")]

    async def then_ok(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        return answers.pop(0)

    log = Log()
    target = endpoint(hook("a"), settings(), then_ok, log)
    target.offer(job(1))
    await until(lambda: len(log.ended) == 1)
    assert (log.ended[0][2].kind, log.ended[0][2].attempts) == ("delivered", 2)
    await target.close()


async def test_a_failing_finish_leaves_its_job_unfinished_and_the_lane_going() -> None:
    log, finished = Log(), []

    async def finish(webhook: Webhook, job: Job, outcome: Outcome) -> None:
        if job.offset == 0:
            raise RuntimeError("a bug")
        finished.append(job.offset)

    target = Endpoint(
        hook("a"), settings(webhook_concurrency=1), ok, finish, lambda current, job: current
    )
    for n in range(3):
        target.offer(job(n))
    await until(lambda: finished == [1, 2])
    assert target.queued == 0 and log.ended == []
    await target.close()
