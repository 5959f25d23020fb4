"""Committing a partition's batch: table writes, outputs and input offsets together.

The rule every trusted stream processor follows (Kafka Streams, quix-streams): input
offsets are committed only with, or after, every state and output record they cover.

- ``exactly_once`` (default): one transactional producer per input partition
  (``transactional.id = <app id>-p<partition>``). A batch's changelog records, segment
  changes, dead letters and the consumed offsets go into one transaction: they become
  visible to ``read_committed`` consumers together, or not at all. A worker that takes
  over a partition starts its producer before it recovers the partition's tables; that
  fences the previous owner and settles its open transaction, so recovery and the new
  owner's offsets see exactly what was committed.
- ``at_least_once``: one idempotent producer; outputs are sent and acknowledged first,
  then the table writes (the partition's progress record last), then the offsets are
  committed. A crash re-runs at most one batch: its outputs may appear twice (same
  deterministic ids), its state is never half-applied.

A partition's transactional producer is started only at an assignment, before recovery,
and never again until the next one: a new producer takes the transactional id over, and a
worker may no longer own the partition (see :meth:`Checkpoint._park`). A transaction that
fails before its commit is asked for is aborted on the same producer and
:class:`RetryError` is raised (re-run the batch; one that keeps failing stalls in the
runner). A fence, a commit whose outcome is unknown, or an abort that fails raises
:class:`FencedError`: the batch is dropped, the partition waits for its next assignment
and the worker rejoins its group to get one; that assignment fences any other owner, and
recovery reads what was committed. With ``at_least_once`` a failed commit raises
:class:`RetryError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
)
from aiokafka.structs import RecordMetadata

from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.settings import Settings
from segstream.stream.kafka import connection_options, wait_for_broker

log = get_logger(__name__)

FENCED = (ProducerFenced, InvalidProducerEpoch)

TRANSACTION_RETRY_BACKOFF_MS = 20
"""Retry pause of the transactional producers. A transaction begun right after the last
one's commit often gets CONCURRENT_TRANSACTIONS while the broker still writes the commit
markers; aiokafka retries AddOffsetsToTxn and EndTxn after ``retry_backoff_ms`` (100 ms by
default): the slowest tenth of the commits. Kafka's own client uses 20 ms there
(KAFKA-5477, apache/kafka #3377; confluent-kafka-python #967)."""


@dataclass(frozen=True, slots=True)
class ProducerRecord:
    """One record to produce: ``partition`` None lets the key decide (Kafka's default
    partitioner, the same murmur2 as the input topics)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class Work:
    """What one batch of one partition commits: outputs, table writes (changelog records,
    the partition's progress record last) and the input offsets."""

    partition: int
    outputs: list[ProducerRecord] = field(default_factory=list)
    writes: list[ProducerRecord] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    """Input topic -> the next offset to consume (the last processed + 1)."""

    @property
    def records(self) -> list[ProducerRecord]:
        """Everything the batch produces, outputs first."""
        return [*self.outputs, *self.writes]


Written = dict[TopicPartition, int]
"""Changelog partition -> offset of the last record a commit wrote to it."""


class RetryError(Exception):
    """Nothing of the batch was committed; process it again."""


class FencedError(Exception):
    """The partition waits for its next assignment (another worker may own it now); the
    batch must be dropped."""


CommitOffsets = Callable[[Mapping[TopicPartition, int]], Awaitable[None]]


class Checkpoint:
    """Commits :class:`Work` per partition with the configured processing guarantee."""

    def __init__(
        self,
        settings: Settings,
        commit_offsets: CommitOffsets,
        on_fenced: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_fenced = on_fenced
        """Called with a partition whose producer was fenced (the worker rejoins its group:
        see :func:`segstream.stream.wiring.rejoin_when_fenced`)."""
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self._commit_offsets = commit_offsets
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._shared: AIOKafkaProducer | None = None
        self.fenced: set[int] = set()
        """Partitions that wait for the next assignment (fenced, or parked by a failed
        transaction); :meth:`assign` clears them."""
        self._parked_at: dict[int, float] = {}
        self._assigned: set[int] = set()

    @property
    def partitions(self) -> set[int]:
        """Partitions this worker owns and may commit for (a fenced or parked one waits for
        the next assignment)."""
        return self._assigned - self.fenced

    async def assign(self, partitions: set[int]) -> None:
        """Own exactly ``partitions`` from now on: stop the other producers, (re)start one
        per partition (fencing any previous owner and settling its transaction)."""
        self.fenced.clear()
        self._parked_at.clear()
        telemetry.PARTITIONS_PARKED.set(0)
        self._assigned = set(partitions)
        if not self.exactly_once:
            await self._shared_producer()
            return
        for partition in sorted(self._producers):
            await self._stop(partition)
        for partition in sorted(partitions):
            await self._start_when_reachable(partition)

    async def _start_when_reachable(self, partition: int) -> None:
        """Start the partition's producer at its assignment (it fences the previous owner
        before recovery), waiting up to ``kafka_wait_s`` for a broker that cannot be
        reached: a rebalance during a broker restart crashed the worker (aiokafka's
        bootstrap fails at once), seen in the short chaos run with seed 969525; so did a
        connection reset while the producer looked up its transaction coordinator (short
        chaos with network faults, seed 908039)."""
        call = lambda: self._start(partition)  # noqa: E731
        await wait_for_broker(call, self.settings.kafka_wait_s, f"producer_start p{partition}")

    async def close(self) -> None:
        """Own nothing any more and stop every producer (an open transaction is aborted by
        the next owner)."""
        self._assigned = set()
        for partition in sorted(self._producers):
            await self._stop(partition)
        if self._shared is not None:
            await self._shared.stop()
            self._shared = None

    async def commit(self, work: Work) -> Written:
        """Commit ``work``; where its table writes landed."""
        if work.partition in self.fenced:
            raise FencedError(f"partition {work.partition} is owned elsewhere")
        if self.exactly_once:
            return await self._commit_transaction(work)
        return await self._commit_in_order(work)

    async def publish(self, partition: int, outputs: list[ProducerRecord]) -> None:
        """Send outputs that no input record caused (a transaction of their own with
        exactly_once); failures are logged, the next period sends them again (with
        exactly_once a failed transaction parks the partition, as a failed commit does)."""
        if self.exactly_once:
            await self._publish_transaction(partition, outputs)
            return
        try:
            producer = await self._shared_producer()
            await asyncio.gather(*await _send_all(producer, outputs))
        except Exception as error:
            log.warning("publish_failed", partition=partition, error=repr(error))

    async def _publish_transaction(self, partition: int, outputs: list[ProducerRecord]) -> None:
        producer = self._producers.get(partition)
        if producer is None or partition in self.fenced:
            return  # it waits for its next assignment
        bound = self.settings.broker_request_timeout_s
        try:
            await producer.begin_transaction()
            await asyncio.wait_for(asyncio.gather(*await _send_all(producer, outputs)), bound)
        except FENCED as error:
            await self._fence(partition, producer, error)
            return
        except Exception as error:
            await self._abort(partition, producer, error)
            return
        try:
            await asyncio.wait_for(producer.commit_transaction(), bound)
        except FENCED as error:
            await self._fence(partition, producer, error)
        except Exception as error:
            await self._park(partition, producer, error)

    # ------------------------------------------------------------ exactly once

    async def _start(self, partition: int) -> None:
        producer = AIOKafkaProducer(
            **connection_options(self.settings),
            transactional_id=f"{self.settings.app_id}-p{partition}",
            enable_idempotence=True,
            retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,
            acks="all",
            linger_ms=self.settings.producer_linger_ms,
            max_request_size=self.settings.max_record_bytes,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # closes the client a failed start leaves open
            raise
        self._producers[partition] = producer

    async def _stop(self, partition: int) -> None:
        producer = self._producers.pop(partition, None)
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # a broken producer still has to go
                log.warning("producer_stop_failed", partition=partition, exc_info=True)

    def _producer(self, partition: int) -> AIOKafkaProducer:
        """The partition's producer, started at its assignment (none: it waits for the
        next one, see :meth:`_park`)."""
        producer = self._producers.get(partition)
        if producer is None:
            raise FencedError(f"partition {partition} waits for its next assignment")
        return producer

    async def _commit_transaction(self, work: Work) -> Written:
        bound = self.settings.broker_request_timeout_s
        partition, producer = work.partition, self._producer(work.partition)
        try:
            futures = await asyncio.wait_for(self._send_in_transaction(producer, work), bound)
        except FENCED as error:
            await self._fence(partition, producer, error)
            raise FencedError(str(error)) from error
        except Exception as error:  # no commit asked for: abort it on the same producer
            if await self._abort(partition, producer, error):
                raise RetryError(str(error)) from error
            raise FencedError(f"partition {partition}: {error!r}") from error
        try:
            # bounded: a producer stopped under an open commit (a rebalance) never answers
            await asyncio.wait_for(producer.commit_transaction(), bound)
        except FENCED as error:
            await self._fence(partition, producer, error)
            raise FencedError(str(error)) from error
        except Exception as error:  # the outcome is unknown
            await self._park(partition, producer, error)
            raise FencedError(f"partition {partition}: {error!r}") from error
        return _written(work, futures)

    async def _send_in_transaction(
        self, producer: AIOKafkaProducer, work: Work
    ) -> list[asyncio.Future[RecordMetadata]]:
        """Begin a transaction and send the work's records and offsets into it."""
        await producer.begin_transaction()
        futures = await _send_all(producer, work.records)
        if work.offsets:
            await producer.send_offsets_to_transaction(_offsets(work), self.settings.app_id)
        return futures

    async def _abort(self, partition: int, producer: AIOKafkaProducer, error: Exception) -> bool:
        """Abort the open transaction on the producer that began it (no new epoch: if
        another worker took the transactional id over, the broker refuses the old one), so
        the batch can run again; a record over the size limit or a refused topic keeps
        failing and ends in the runner's stall, as before. When the abort fails too, the
        partition is parked (False)."""
        log.warning("transaction_aborted", partition=partition, error=repr(error))
        try:
            await asyncio.wait_for(
                producer.abort_transaction(), self.settings.broker_request_timeout_s
            )
        except FENCED as fenced:
            await self._fence(partition, producer, fenced)
            return False
        except Exception as failed:
            await self._park(partition, producer, failed)
            return False
        await asyncio.sleep(self.settings.retry_backoff_s)
        return True

    async def _fence(
        self, partition: int, producer: AIOKafkaProducer, error: BaseException
    ) -> None:
        """Stop committing for ``partition`` until the next assignment, and ask for that
        assignment: a fence does not always come with a rebalance (the coordinator aborts
        a transaction that outlived its timeout by bumping the producer's epoch), and a
        partition waiting for one that never comes drops its records for good."""
        log.warning("partition_fenced", partition=partition, error=str(error))
        await self._wait_for_assignment(partition, producer)

    async def _park(self, partition: int, producer: AIOKafkaProducer, error: BaseException) -> None:
        """A transaction whose commit's outcome is unknown, or that could not be aborted
        (the broker went away, a request timed out): the partition waits for its next
        assignment, as a fenced one does, and is never given a new producer before it.

        Starting one here would be unsafe: a new producer takes the transactional id over
        (it bumps the epoch), and this worker may no longer own the partition. A worker cut
        off past its session timeout did that in a chaos run (seed 13896): back, it
        restarted its producer, fenced the partition's new owner, and committed batches
        from its own stale tables (offsets went back from 805 to 174; 1,000 records
        counted twice). The next assignment starts the producer before recovery, which
        reads whatever this transaction committed: no outcome needs to be guessed."""
        log.warning("transaction_failed", partition=partition, error=repr(error))
        await self._wait_for_assignment(partition, producer)

    async def _wait_for_assignment(self, partition: int, producer: AIOKafkaProducer) -> None:
        """Park ``partition`` and ask for an assignment, unless ``producer`` is not its
        producer any more: a commit that outlived the wait of a rebalance failed because
        that assignment replaced its producer, and the new one must be left alone."""
        if self._producers.get(partition) is not producer:
            return
        self.fenced.add(partition)
        self._parked_at[partition] = time.monotonic()
        telemetry.PARTITIONS_PARKED.set(len(self.fenced))
        if self._on_fenced is not None:
            self._on_fenced(partition)  # first: stopping may flush for a request timeout
        await self._stop(partition)

    def remind(self, after_s: float) -> None:
        """Ask again for an assignment when a partition has been parked for ``after_s``
        (the rejoin request failed, or came while another was under way)."""
        now = time.monotonic()
        waiting = sorted(p for p, since in self._parked_at.items() if now - since > after_s)
        if waiting and self._on_fenced is not None:
            log.warning("still_parked", partitions=waiting)
            for partition in waiting:
                self._parked_at[partition] = now
            self._on_fenced(waiting[0])

    # ------------------------------------------------------------ at least once

    async def _shared_producer(self) -> AIOKafkaProducer:
        if self._shared is None:
            self._shared = AIOKafkaProducer(
                **connection_options(self.settings),
                enable_idempotence=True,
                acks="all",
                linger_ms=self.settings.producer_linger_ms,
                max_request_size=self.settings.max_record_bytes,
            )
            await self._shared.start()
        return self._shared

    async def _commit_in_order(self, work: Work) -> Written:
        """Outputs, then table writes, then the progress record, then offsets: each step
        acknowledged before the next starts."""
        if work.partition not in self._assigned:
            raise FencedError(f"partition {work.partition} is not assigned here")
        try:
            producer = await self._shared_producer()
            await asyncio.gather(*await _send_all(producer, work.outputs))
            *tables, progress = work.writes
            futures = await _send_all(producer, tables)
            await asyncio.gather(*futures)
            futures += await _send_all(producer, [progress])
            await asyncio.gather(*futures)
            if work.offsets:
                await self._commit_offsets(_offsets(work))
        except KafkaError as error:
            log.warning("commit_failed", partition=work.partition, error=repr(error))
            await asyncio.sleep(self.settings.retry_backoff_s)
            raise RetryError(str(error)) from error
        return _written(Work(work.partition, writes=work.writes), futures)


async def _send_all(
    producer: AIOKafkaProducer, records: Sequence[ProducerRecord]
) -> list[asyncio.Future[RecordMetadata]]:
    futures: list[asyncio.Future[RecordMetadata]] = []
    for record in records:
        future = await producer.send(
            record.topic,
            record.value,
            key=record.key,
            partition=record.partition,
            headers=list(record.headers) or None,
        )
        future.add_done_callback(_retrieve)
        futures.append(future)
    return futures


def _retrieve(future: asyncio.Future[RecordMetadata]) -> None:
    """A failed send fails its whole batch, which reports it: mark the error as seen."""
    if not future.cancelled():
        future.exception()


def _offsets(work: Work) -> dict[TopicPartition, int]:
    return {TopicPartition(topic, work.partition): offset for topic, offset in work.offsets.items()}


def _written(work: Work, futures: Sequence[asyncio.Future[RecordMetadata]]) -> Written:
    """The last offset per changelog partition, from the futures of ``work.records``."""
    written: Written = {}
    for record, future in zip(work.records[-len(futures) :], futures, strict=True):
        if record.partition is not None:
            metadata = future.result()
            tp = TopicPartition(metadata.topic, metadata.partition)
            written[tp] = max(written.get(tp, -1), metadata.offset)
    return written
