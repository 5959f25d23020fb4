"""What the worker did with a replay's records, read back from Kafka.

Two sources, both committed by the worker in the transaction of the batch they describe:

* the **progress record** of the shop's partition (``__progress__/<p>`` in the ``shops``
  table's changelog; :class:`segstream.stream.committer.Progress`): the next input offset per
  topic and the outcome counts per event type. Once its offset passes the replay's last
  record on every input topic, the worker has handled the whole replay (a partition's
  records are handled in offset order); the difference of its counts from before the
  replay is what the worker did meanwhile in that partition, the replay's records and any
  other records of the partition's shops;
* the **dead-letter topic**, read from where it ended before the replay: the letters whose
  original value is one of the replay's events (by event id) give the reasons.

A record found outside its shop's partition is counted ``rerouted`` and handled again from
the repartition topic; when there were any, the wait also lasts until the worker has read
the repartition topic to its end. Neither source grows with the history's length: the
progress record is found among a changelog's last records, and only the letters written
since the replay started are read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata

from segstream.settings import REPARTITION_ROLE, Settings
from segstream.state.codec import decode
from segstream.state.keyspace import progress_key
from segstream.stream.kafka import connection_options
from segstream.stream.topics import changelog_topic

PROGRESS_WINDOW = 64
"""Last changelog records first searched for the progress record (it is the last record of
every batch's writes); the window grows eightfold while it holds none."""
POLL_S = 1.0
"""Pause between two reads of the progress record while waiting."""
READ_LIMIT_S = 60.0
"""Longest one read of a partition may take (a broker that stops answering)."""
STATUSES = ("processed", "duplicate", "dead_lettered", "rerouted")

Counts = dict[str, dict[str, int]]
"""Event type -> outcome -> records (the progress record's ``counts``)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """A partition's committed progress: next input offset per topic, outcome counts."""

    offsets: dict[str, int] = field(default_factory=dict)
    counts: Counts = field(default_factory=dict)

    @classmethod
    def of(cls, value: Mapping[str, Any] | None) -> Progress:
        """From the stored record (None: the worker never committed the partition)."""
        if value is None:
            return cls()
        counts = {kind: dict(by) for kind, by in value.get("counts", {}).items()}
        return cls(dict(value.get("offsets", {})), counts)


@dataclass(frozen=True, slots=True)
class Before:
    """What stood before the replay sent anything: the partitions' progress and the ends
    of the dead-letter topic's partitions."""

    progress: dict[int, Progress]
    letter_ends: dict[int, int]


@dataclass(slots=True)
class Outcome:
    """What the worker did meanwhile in the replay's partitions, and the replay's letters."""

    counts: Counts
    ours: int
    letters: list[dict[str, Any]] = field(default_factory=list)
    done: bool = True
    handled: int = 0

    @property
    def others(self) -> int:
        """Records of the partitions' counts that are not the replay's (other producers',
        or a backlog): a rerouted record is counted twice, once rerouted."""
        total = sum(sum(by.values()) for by in self.counts.values())
        rerouted = sum(by.get("rerouted", 0) for by in self.counts.values())
        return max(total - rerouted - self.ours, 0)


def difference(before: Counts, after: Counts) -> Counts:
    """``after - before`` per type and outcome, without zeros.

    >>> difference({"order": {"processed": 2}}, {"order": {"processed": 5, "duplicate": 1}})
    {'order': {'processed': 3, 'duplicate': 1}}
    """
    found: Counts = {}
    for kind, by in after.items():
        for status, count in by.items():
            delta = count - before.get(kind, {}).get(status, 0)
            if delta:
                found.setdefault(kind, {})[status] = delta
    return found


def targets(receipts: Collection[RecordMetadata]) -> dict[tuple[str, int], int]:
    """Per topic and partition the offset the worker's progress must reach (one past the
    replay's last record there)."""
    found: dict[tuple[str, int], int] = {}
    for receipt in receipts:
        key = (receipt.topic, receipt.partition)
        found[key] = max(found.get(key, 0), receipt.offset + 1)
    return found


def handled(
    progress: Mapping[int, Progress],
    firsts: Mapping[tuple[str, int], int],
    ends: Mapping[tuple[str, int], int],
) -> int:
    """About how many of the replay's records the worker has handled: per topic and
    partition, how far its progress is into the replay's offsets."""
    total = 0
    for (topic, partition), end in ends.items():
        at = progress.get(partition, Progress()).offsets.get(topic, 0)
        total += min(max(at - firsts[(topic, partition)], 0), end - firsts[(topic, partition)])
    return total


def firsts_of(receipts: Collection[RecordMetadata]) -> dict[tuple[str, int], int]:
    """Per topic and partition the replay's first offset."""
    found: dict[tuple[str, int], int] = {}
    for receipt in receipts:
        key = (receipt.topic, receipt.partition)
        found[key] = min(found.get(key, receipt.offset), receipt.offset)
    return found


class Reader:
    """Reads for the report: a ``read_committed`` consumer of no group that is never
    assigned (metadata and offsets), and a fresh one assigned once for each partition
    read. Not one consumer re-assigned: aiokafka's fetcher swallows the cancellation
    ``stop()`` sends when it arrives while a re-assignment cancels the fetches in flight,
    and ``stop()`` then waits forever (aio-libs/aiokafka#983; seen here with 0.14.0)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = self._new()

    def _new(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **connection_options(self.settings),
        )

    async def __aenter__(self) -> Reader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partitions ([] if it does not exist)."""
        client = self._consumer._client  # aiokafka: no public call to learn a topic's metadata
        client.add_topic(topic)
        await client.force_metadata_update()
        return sorted(self._consumer.partitions_for_topic(topic) or [])

    async def before(self, partitions: Collection[int]) -> Before:
        """The progress of ``partitions`` and the dead-letter topic's ends, now."""
        progress = {p: await self.progress(p) for p in partitions}
        letters = self.settings.topic("dead_letters")
        tps = [TopicPartition(letters, p) for p in await self.partitions(letters)]
        ends = await self._consumer.end_offsets(tps) if tps else {}
        return Before(progress, {tp.partition: offset for tp, offset in ends.items()})

    async def progress(self, partition: int) -> Progress:
        """The partition's last committed progress record."""
        topic = changelog_topic(self.settings, "shops")
        if partition not in await self.partitions(topic):
            return Progress()
        tp, key = TopicPartition(topic, partition), progress_key(partition).encode()
        end = (await self._consumer.end_offsets([tp]))[tp]
        begin = (await self._consumer.beginning_offsets([tp]))[tp]
        window = PROGRESS_WINDOW
        while True:
            start = max(begin, end - window)
            found = await self._last(tp, key, start, end)
            if found is not None or start == begin:
                return Progress.of(None if found is None else decode(found))
            window *= 8

    async def _last(self, tp: TopicPartition, key: bytes, start: int, end: int) -> bytes | None:
        """The last value of ``key`` in ``[start, end)`` of ``tp``."""
        found = None
        for record in await self._read(tp, start, end):
            if record.key == key and record.value is not None:
                found = record.value
        return found

    async def _read(self, tp: TopicPartition, start: int, end: int) -> list[Any]:
        """The visible records of ``tp`` in ``[start, end)``; TimeoutError (an OSError)
        after READ_LIMIT_S."""
        found: list[Any] = []
        if start >= end:
            return found
        consumer = self._new()
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + READ_LIMIT_S
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {tp.topic} in {READ_LIMIT_S:.0f} s")
                batches = await consumer.getmany(tp, timeout_ms=1000)
                found += [record for record in batches.get(tp, []) if record.offset < end]
            return found
        finally:
            await consumer.stop()

    async def repartition_done(self, progress: Mapping[int, Progress]) -> bool:
        """Whether the worker has read the repartition topic's partitions to their end (a
        transaction marker after the last record occupies an offset no one reads)."""
        topic = self.settings.topic(REPARTITION_ROLE)
        if not await self.partitions(topic):
            return True
        for partition, state in progress.items():
            tp = TopicPartition(topic, partition)
            end = (await self._consumer.end_offsets([tp]))[tp]
            if await self._read(tp, state.offsets.get(topic, 0), end):
                return False
        return True

    async def letters(self, since: Mapping[int, int], ids: Collection[str]) -> list[dict[str, Any]]:
        """The dead letters written since ``since`` whose original is one of ``ids``."""
        topic = self.settings.topic("dead_letters")
        found = []
        for partition in await self.partitions(topic):
            tp = TopicPartition(topic, partition)
            end = (await self._consumer.end_offsets([tp]))[tp]
            for record in await self._read(tp, since.get(partition, 0), end):
                letter = _letter(record.value, ids)
                if letter is not None:
                    found.append(letter)
        return found


def _letter(raw: bytes | None, ids: Collection[str]) -> dict[str, Any] | None:
    """A dead letter whose original value is an event with one of ``ids``, with that id as
    ``event_id`` (None: another's, or unreadable)."""
    try:
        letter = json.loads(raw or b"")
        original = json.loads(base64.b64decode(letter["original_value_b64"]))
        event_id = original["event_id"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(event_id, str) or event_id not in ids:
        return None
    return {**letter, "event_id": event_id}


Say = Callable[[str], None]


async def await_worker(
    reader: Reader,
    before: Before,
    receipts: Collection[RecordMetadata],
    ids: Collection[str],
    wait_s: float,
    say: Say,
    every_s: float,
) -> Outcome:
    """Wait until the worker's committed progress passes the replay's records (and the
    repartition topic, if any were rerouted); give up after ``wait_s`` seconds in which it
    handled none of them. Then what it did meanwhile, and the replay's dead letters."""
    ends, firsts = targets(receipts), firsts_of(receipts)
    partitions = sorted({partition for _, partition in ends})
    started = last_moved = last_said = time.monotonic()
    last = -1
    while True:
        progress = {p: await reader.progress(p) for p in partitions}
        done = all(progress[p].offsets.get(topic, 0) >= end for (topic, p), end in ends.items())
        counts = _meanwhile(before, progress)
        rerouted = any(by.get("rerouted") for by in counts.values())
        if done and rerouted:
            done = await reader.repartition_done(progress)
        count = handled(progress, firsts, ends)
        now = time.monotonic()
        if done or now - last_moved > wait_s:
            outcome = Outcome(counts, len(receipts), done=done, handled=count)
            outcome.letters = await reader.letters(before.letter_ends, ids)
            return outcome
        if count > last:
            last, last_moved = count, now
        if now - last_said >= every_s:
            say(rate_line("worker handled", count, len(receipts), now - started))
            last_said = now
        await asyncio.sleep(POLL_S)


def _meanwhile(before: Before, progress: Mapping[int, Progress]) -> Counts:
    """The partitions' counts now less their counts before, summed."""
    total: Counts = {}
    for partition, state in progress.items():
        earlier = before.progress.get(partition, Progress()).counts
        for kind, by in difference(earlier, state.counts).items():
            into = total.setdefault(kind, {})
            for status, count in by.items():
                into[status] = into.get(status, 0) + count
    return total


def rate_line(what: str, done: int, total: int, seconds: float) -> str:
    """``replay: sent 1,200/5,000 (24 %), 400/s, about 10 s left``.

    >>> rate_line("sent", 1200, 5000, 3.0)
    'replay: sent 1,200/5,000 (24 %), 400/s, about 10 s left'
    """
    rate = done / seconds if seconds > 0 else 0.0
    share = 100 * done // total if total else 100
    left = f"about {(total - done) / rate:,.0f} s left" if rate > 0 else "time left unknown"
    return f"replay: {what} {done:,}/{total:,} ({share} %), {rate:,.0f}/s, {left}"


def report_lines(outcome: Outcome, where: Mapping[str, str], listed: int) -> list[str]:
    """The report: outcomes per event type, the replay's dead letters by reason (each with
    the row it came from: ``where`` maps event ids to ``file:line``), and what else the
    counts hold."""
    lines = []
    for kind in sorted(outcome.counts):
        by = outcome.counts[kind]
        shown = ", ".join(f"{by[s]:,} {s.replace('_', '-')}" for s in STATUSES if by.get(s))
        lines.append(f"  {kind}: {shown}")
    if outcome.others:
        lines.append(
            f"  (these counts include {outcome.others:,} records of other producers or shops "
            "the worker handled meanwhile in the same partition)"
        )
    if outcome.letters:
        reasons = Counter(letter["reason"] for letter in outcome.letters)
        by_reason = ", ".join(f"{reason} {count:,}" for reason, count in reasons.most_common())
        lines.append(f"  dead letters of this replay: {len(outcome.letters):,} ({by_reason})")
        for letter in outcome.letters[:listed]:
            at = where.get(letter["event_id"], "?")
            lines.append(f"    {at}: {letter['reason']}: {letter['detail']}")
        if len(outcome.letters) > listed:
            lines.append(f"    ... and {len(outcome.letters) - listed:,} more")
    return lines
