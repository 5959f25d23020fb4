"""The batch loop: offsets already in the tables are skipped, failed commits re-run the
batch from committed state, fenced partitions are dropped, a record the pipeline fails on
is dead-lettered without its half-made writes."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from harness.stores import DictStore
from segstream.domain.changes import ORIGIN_HEADER, Cause, SegmentChange, Source
from segstream.domain.contracts import EventType, validate_output
from segstream.domain.customer import CustomerState
from segstream.domain.events import Cancellation, Order
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.settings import REPARTITION_ROLE, Settings
from segstream.state import codec
from segstream.state.keyspace import progress_key, shop_partition
from segstream.stream.checkpoint import FencedError
from segstream.stream.gaps import GapGuard
from segstream.stream.poison import MAX_ERROR_STREAK
from segstream.stream.runner import MAX_COMMIT_ATTEMPTS, BatchRunner, output_records
from segstream.stream.topics import TABLES
from tests.unit.stream.fakes import (
    T0,
    Event,
    FakeCheckpoint,
    Message,
    batch,
    order_value,
    table_state,
)

SETTINGS = Settings(topic_partitions=4, rfm_min_customers=1)
ORDERS = SETTINGS.topic("orders")
REPARTITION = SETTINGS.topic(REPARTITION_ROLE)
SHOP = "tea-1"
PARTITION = shop_partition(SHOP, 4)


def events(*offsets: int) -> list[Any]:
    return [
        Event(Message(ORDERS, PARTITION, n), order_value(SHOP, n), SHOP.encode()) for n in offsets
    ]


def runner(checkpoint: FakeCheckpoint) -> tuple[BatchRunner, dict[str, Any]]:
    owned = {PARTITION}
    stores = {name: DictStore() for name in TABLES}
    tables = {name: table_state(name, stores[name], owned) for name in TABLES}
    pipeline = Pipeline(SETTINGS, *(tables[name] for name in TABLES))
    expected = {ORDERS: Order}
    batches = BatchRunner(SETTINGS, pipeline, tables, checkpoint, expected)  # type: ignore[arg-type]
    batches.ready = True  # as after a recovery of empty tables
    return batches, tables


def order_count(tables: dict[str, Any]) -> int:
    return int(tables["customers"][f"{SHOP}/c-1"].order_count)


@pytest.fixture
def checkpoint() -> FakeCheckpoint:
    return FakeCheckpoint(SETTINGS, assigned={PARTITION})


async def test_records_below_the_committed_progress_are_skipped(
    checkpoint: FakeCheckpoint,
) -> None:
    batches, tables = runner(checkpoint)
    await batches.run(events(0, 1, 2))
    await batches.run(events(1, 2, 3))  # redelivered after a rebalance: 1 and 2 are in
    assert order_count(tables) == 4
    progress = tables["shops"][progress_key(PARTITION)]
    assert progress["offsets"] == {ORDERS: 4}
    assert progress["counts"] == {"order": {"processed": 4}}
    assert [w.offsets for w in checkpoint.committed] == [{ORDERS: 3}, {ORDERS: 4}]


async def test_a_batch_wholly_in_the_tables_never_moves_the_committed_offset_back(
    checkpoint: FakeCheckpoint,
) -> None:
    batches, tables = runner(checkpoint)
    await batches.run(events(0, 1, 2, 3, 4))
    await batches.run(events(1, 2))  # an old fetch, redelivered after a seek or rebalance
    assert [w.offsets for w in checkpoint.committed] == [{ORDERS: 5}, {ORDERS: 5}]
    assert order_count(tables) == 5


async def test_a_failed_commit_reruns_the_batch_from_committed_state(
    checkpoint: FakeCheckpoint,
) -> None:
    batches, tables = runner(checkpoint)
    await batches.run(events(0))
    checkpoint.fail = 2
    await batches.run(events(1, 2))
    assert order_count(tables) == 3
    assert tables["shops"][progress_key(PARTITION)]["counts"] == {"order": {"processed": 3}}


async def test_a_fenced_partition_drops_its_batch(checkpoint: FakeCheckpoint) -> None:
    batches, tables = runner(checkpoint)
    await batches.run(events(0))
    checkpoint.fail, checkpoint.error = 1, FencedError
    await batches.run(events(1))
    assert order_count(tables) == 1
    assert len(checkpoint.committed) == 1


async def test_a_record_the_pipeline_fails_on_is_dead_lettered_without_its_writes(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches, tables = runner(checkpoint)
    ledger = batches.pipeline.ledger
    original = ledger.record
    calls = {"n": 0}

    def record(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the second record: state already saved, then a bug
            raise RuntimeError("bug in the ledger")
        return original(*args, **kwargs)

    monkeypatch.setattr(ledger, "record", record)
    await batches.run(events(0, 1, 2))
    assert order_count(tables) == 2  # orders 0 and 2; order 1's half-made write is gone
    (work,) = checkpoint.committed
    letters = [r for r in work.outputs if r.topic == SETTINGS.topic("dead_letters")]
    assert len(letters) == 1
    assert json.loads(letters[0].value or b"")["reason"] == "processing_error"
    counts = tables["shops"][progress_key(PARTITION)]["counts"]
    assert counts == {"order": {"processed": 2, "dead_lettered": 1}}


async def test_records_arriving_during_recovery_wait_for_the_refetch(
    checkpoint: FakeCheckpoint,
) -> None:
    batches, tables = runner(checkpoint)
    batches.rebalancing()
    await batches.run(events(0, 1))
    assert checkpoint.committed == [] and f"{SHOP}/c-1" not in tables["customers"]
    await batches.recovered()
    await batches.run(events(0, 1))
    assert order_count(tables) == 2


async def test_recovery_forgets_what_was_read_while_tables_were_half_recovered(
    checkpoint: FakeCheckpoint,
) -> None:
    batches, _ = runner(checkpoint)
    batches.rebalancing()
    assert batches.pipeline.book(SHOP).stream_time is None  # a timer or query reads early
    await batches.recovered()
    assert SHOP not in batches.pipeline._books


class ProbedGuard(GapGuard):
    """A gap guard whose log starts at ``first`` in every partition, seeks recorded."""

    def __init__(self, first: int) -> None:
        self.sought: list[tuple[str, int, int]] = []

        async def seek(topic: str, partition: int, offset: int) -> None:
            self.sought.append((topic, partition, offset))

        super().__init__({}, seek)
        self.first = first
        self.asked: list[list[Any]] = []

    async def first_visible(self, tp: Any, offset: int) -> int | None:
        return max(self.first, offset)

    async def log_starts(self, tps: Any) -> dict[Any, int]:
        self.asked.append(list(tps))
        return dict.fromkeys(tps, self.first)


async def test_recovery_seeks_each_input_to_where_the_tables_end(
    checkpoint: FakeCheckpoint,
) -> None:
    """Orders: the committed next offset; the topics never committed (say, input topics
    the platform does not use): the log's start, asked for all of them in one request."""
    batches, _ = runner(checkpoint)
    await batches.run(events(0, 1, 2))
    unused = ["segstream.cancellations", "segstream.feedback-responses"]
    for topic in unused:
        batches.expected[topic] = Cancellation
    batches.topics = sorted([*batches.expected, "segstream.segment-definitions"])
    unused.append("segstream.segment-definitions")
    guard = batches.guard = ProbedGuard(first=5)
    batches.rebalancing()
    await batches.recovered()
    assert sorted(guard.sought) == sorted(
        [*((t, PARTITION, 5) for t in unused), (ORDERS, PARTITION, 3)]
    )
    assert guard.asked == [[TopicPartition(t, PARTITION) for t in sorted(unused)]]


async def test_records_delivered_while_recovery_seeks_are_processed(
    checkpoint: FakeCheckpoint,
) -> None:
    """The fetcher delivers the records a seek asked for while the next partition's seek is
    still under way: they are processed, not set aside after the last seek (which would
    leave them unread until new records arrive)."""
    batches, tables = runner(checkpoint)
    delivered: list[asyncio.Task[None]] = []

    class DeliveringGuard(ProbedGuard):
        async def restart(self, partition: int, topics: Any, committed: Any) -> None:
            await super().restart(partition, topics, committed)
            delivered.append(asyncio.create_task(batches.run(events(0, 1))))
            await asyncio.sleep(0)

    batches.guard = DeliveringGuard(first=0)
    batches.rebalancing()
    await batches.run(events(0, 1))  # during recovery: set aside
    await batches.recovered()
    await asyncio.gather(*delivered)
    assert order_count(tables) == 2


async def test_a_partition_never_committed_is_checked_for_a_gap_from_its_start() -> None:
    guard = ProbedGuard(first=0)
    admitted = await guard.admit(PARTITION, events(4, 5), {})
    assert admitted == [] and guard.sought == [(ORDERS, PARTITION, 0)]


def test_each_change_also_sets_the_customers_membership_in_the_shops_partition() -> None:
    settings = Settings()
    at = datetime(2026, 3, 1, tzinfo=UTC)
    cause = Cause("event", "e-1", "order")
    entered = SegmentChange("tea-1", "c-1", "lifecycle", "active", "at_risk", at, cause, True)
    left = SegmentChange("tea-1", "c-1", "cluster", "c2", None, at, cause, None)
    records = output_records(settings, Outcome("processed", changes=[entered, left]))
    members = [r for r in records if r.topic == settings.topic("segment_membership")]
    assert [r.key for r in members] == [b"tea-1|c-1|lifecycle", b"tea-1|c-1|cluster"]
    assert {r.partition for r in members} == {shop_partition("tea-1", settings.topic_partitions)}
    member = json.loads(members[0].value or b"")
    validate_output("segment_membership", member)
    assert (member["segment"], member["change_id"]) == ("at_risk", entered.event_id)
    assert member["marketing_opt_in"] is True
    assert members[1].value is None  # left every cluster: a tombstone


async def test_a_live_shops_clock_follows_the_wall_clock_in_one_commit(
    checkpoint: FakeCheckpoint,
) -> None:
    """A quiet shop's due customers move when the wall clock passes their time, committed
    with the state they change (no input offsets); a failed commit changes nothing."""
    batches, tables = runner(checkpoint)
    await batches.run(events(0))  # c-1's only order; at risk after 45 quiet days
    pipeline = batches.pipeline
    wall = T0 + timedelta(days=46)

    def move() -> list[Outcome]:
        moved = pipeline.advance_clock(SHOP, wall, live_s=100 * 86_400)
        return [] if moved is None else [moved]

    checkpoint.fail = 1
    assert await batches.advance(PARTITION, move) == 0
    assert pipeline.stream_time(SHOP) == T0  # undone: rebuilt from the committed tables
    assert await batches.advance(PARTITION, move) >= 1
    work = checkpoint.committed[-1]
    assert work.offsets == {}
    assert work.writes[-1].key == progress_key(PARTITION).encode()
    changes = [
        json.loads(r.value or b"")
        for r in work.outputs
        if r.topic == SETTINGS.topic("segment_changes")
    ]
    assert {c["cause"]["kind"] for c in changes} == {"timer"}
    assert ("lifecycle", "at_risk") in {(c["model"], c["current"]) for c in changes}
    assert pipeline.stream_time(SHOP) == wall
    assert tables["customers"][f"{SHOP}/c-1"].segments["lifecycle"] == "at_risk"
    assert await batches.advance(PARTITION, move) == 0  # nothing due any more


async def test_a_fenced_clock_step_is_undone_like_a_fenced_batch(
    checkpoint: FakeCheckpoint,
) -> None:
    """A timer's step commits through the batches' commit path: fenced, its writes are
    undone and the partition is left to its new owner."""
    batches, tables = runner(checkpoint)
    await batches.run(events(0))
    pipeline = batches.pipeline
    wall = T0 + timedelta(days=46)

    def move() -> list[Outcome]:
        moved = pipeline.advance_clock(SHOP, wall, live_s=100 * 86_400)
        return [] if moved is None else [moved]

    checkpoint.fail, checkpoint.error = 1, FencedError
    assert await batches.advance(PARTITION, move) == 0
    assert pipeline.stream_time(SHOP) == T0
    assert tables["customers"][f"{SHOP}/c-1"].segments["lifecycle"] != "at_risk"
    assert await batches.advance(PARTITION, move) == 0  # not this worker's any more
    assert len(checkpoint.committed) == 1


async def test_a_definition_record_commits_and_its_reevaluation_follows_in_steps(
    checkpoint: FakeCheckpoint,
) -> None:
    """A record of the definitions topic commits with its offset like an event; the
    existing customers then enter by steps that each commit their cursor, outputs and
    states together, and no step runs for a partition the worker does not own."""
    batches, tables = runner(checkpoint)
    await batches.run([*events(0), *events_of("c-2", 1)])
    definitions = SETTINGS.topic("segment_definitions")
    rule = {"field": "behaviour.order_count", "op": "gte", "value": 1}
    value = {"schema_version": 1, "shop_id": SHOP, "segment_id": "buyers", "name": "Buyers"}
    raw = json.dumps({**value, "version": 1, "rule": rule}).encode()
    record = Event(Message(definitions, PARTITION, 0), raw, f"{SHOP}|buyers".encode())
    await batches.run(batch(record))
    assert checkpoint.committed[-1].offsets == {definitions: 1}
    assert batches.pipeline.reevaluating() == [SHOP]

    def step() -> list[Outcome]:
        found = batches.pipeline.reevaluate(SHOP, limit=1)
        return [] if found is None else [found]

    assert [await batches.advance(PARTITION, step) for _ in range(3)] == [1, 1, 0]
    assert batches.pipeline.reevaluating() == []
    assert await batches.advance(PARTITION, step) == 0  # nothing left: nothing committed
    entries = [json.loads(r.value or b"") for w in checkpoint.committed[-3:-1] for r in w.outputs]
    changes = [e for e in entries if e.get("kind") == "segment_changed"]
    assert [(c["customer_id"], c["current"], c["definition_version"]) for c in changes] == [
        ("c-1", "buyers", 1),
        ("c-2", "buyers", 1),
    ]
    assert tables["customers"][f"{SHOP}/c-2"].segments["defined:buyers"] == "buyers"


def events_of(customer: str, *offsets: int) -> list[Any]:
    return [
        Event(Message(ORDERS, PARTITION, n), order_value(SHOP, n, customer), SHOP.encode())
        for n in offsets
    ]


async def test_a_rebalance_waits_for_work_in_flight_before_it_replaces_the_producers(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit under way when the assignment changes ends before its producer is
    stopped (a producer stopped under an open commit never answers it); a holder that
    does not finish in time is waited for only so long."""
    batches, _ = runner(checkpoint)
    order: list[str] = []
    real_assign = checkpoint.assign

    async def assign(partitions: set[int]) -> None:
        order.append("producers replaced")
        await real_assign(partitions)

    monkeypatch.setattr(checkpoint, "assign", assign)

    async def commit_in_flight() -> None:
        async with batches.locks[PARTITION]:
            await asyncio.sleep(0.05)
            order.append("commit ended")

    working = asyncio.create_task(commit_in_flight())
    await asyncio.sleep(0)
    await batches.assign({PARTITION})
    await working
    assert order == ["commit ended", "producers replaced"]
    monkeypatch.setattr("segstream.stream.runner.QUIESCE_S", 0.01)
    stuck = asyncio.Event()

    async def never_ends() -> None:
        async with batches.locks[PARTITION]:
            await stuck.wait()

    holder = asyncio.create_task(never_ends())
    await asyncio.sleep(0)
    await batches.assign({PARTITION})  # does not wait for good
    assert order[-1] == "producers replaced"
    stuck.set()
    await holder


def mixed(*customers: str) -> list[Any]:
    """One order per customer, at offsets 0, 1, ... in order."""
    return [
        Event(Message(ORDERS, PARTITION, n), order_value(SHOP, n, customer), SHOP.encode())
        for n, customer in enumerate(customers)
    ]


def letters_of(checkpoint: FakeCheckpoint) -> list[dict[str, Any]]:
    return [
        json.loads(record.value or b"")
        for work in checkpoint.committed
        for record in work.outputs
        if record.topic == SETTINGS.topic("dead_letters")
    ]


async def test_a_record_whose_state_cannot_be_stored_is_found_and_dead_lettered(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure comes after every record was handled (encoding the batch's writes), so
    no record raised: the runner bisects the batch to the one that made it fail."""
    from segstream.stream import tables as table_module

    original = codec.encode_state

    def encode_state(state: CustomerState) -> bytes:
        if state.customer_id == "c-bad":
            raise OverflowError("cannot convert float infinity to integer")
        return original(state)

    monkeypatch.setattr(table_module, "encode_state", encode_state)
    batches, tables = runner(checkpoint)
    await batches.run(mixed("c-1", "c-2", "c-3", "c-bad", "c-4", "c-5", "c-6"))
    (letter,) = letters_of(checkpoint)
    assert (letter["reason"], letter["source"]["offset"]) == ("processing_error", 3)
    assert letter["detail"] == "OverflowError: cannot convert float infinity to integer"
    assert base64.b64decode(letter["original_value_b64"]) == order_value(SHOP, 3, "c-bad")
    assert f"{SHOP}/c-bad" not in tables["customers"]
    assert all(f"{SHOP}/c-{n}" in tables["customers"] for n in range(1, 7))
    assert not batches.stalls


async def test_a_failure_no_record_explains_stalls_the_partition_until_it_is_gone(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flushing fails even with no record in the batch: not any record's fault. Nothing
    commits, the partition is named with the reason, and once the fault is gone its
    next try commits everything."""
    monkeypatch.setattr("segstream.stream.stalls.STALL_FIRST_RETRY_S", 0.0)
    batches, tables = runner(checkpoint)
    original = batches.pipeline.flush

    def broken() -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batches.pipeline, "flush", broken)
    await batches.run(events(0, 1))
    assert checkpoint.committed == [] and letters_of(checkpoint) == []
    stall = batches.stalls[PARTITION]
    assert stall.reason == "OSError: [Errno 28] No space left on device"
    monkeypatch.setattr(batches.pipeline, "flush", original)
    await batches.run(events(0, 1))
    assert order_count(tables) == 2 and not batches.stalls


async def test_a_bug_every_record_meets_stalls_instead_of_dead_lettering_everything(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches, tables = runner(checkpoint)

    def handle(*args: Any) -> Outcome:
        raise KeyError("a bug in every order")

    await batches.run(events(0))  # one good order first
    monkeypatch.setattr(batches.pipeline, "handle", handle)
    await batches.run(events(*range(1, MAX_ERROR_STREAK - 2)))  # below the limit: letters
    assert len(letters_of(checkpoint)) == MAX_ERROR_STREAK - 3
    assert not batches.stalls
    committed = len(checkpoint.committed)
    await batches.run(events(*range(MAX_ERROR_STREAK - 2, 40)))
    assert len(checkpoint.committed) == committed, "the streak crossed the limit: no commit"
    assert "records in a row failed" in batches.stalls[PARTITION].reason
    assert "KeyError" in batches.stalls[PARTITION].reason
    assert order_count(tables) == 1
    monkeypatch.undo()  # the bug is fixed: the retry handles every record again
    batches.stalls[PARTITION].retry_at = 0.0
    await batches.run(events(*range(MAX_ERROR_STREAK - 2, 40)))
    assert order_count(tables) == 40 - (MAX_ERROR_STREAK - 2) + 1
    assert not batches.stalls


async def test_a_stalled_partition_drops_its_records_until_its_retry(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the retry time, records of a stalled partition are set aside (the retry reads
    them again from the committed offsets): none is processed out of order."""
    batches, tables = runner(checkpoint)
    monkeypatch.setattr(batches.pipeline, "flush", lambda: (_ for _ in ()).throw(OSError()))
    await batches.run(events(0))
    assert PARTITION in batches.stalls
    monkeypatch.undo()
    await batches.run(events(1, 2))  # the retry is 5 s away
    assert checkpoint.committed == [] and f"{SHOP}/c-1" not in tables["customers"]


async def test_commits_that_keep_failing_stall_the_partition(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches, _ = runner(checkpoint)
    checkpoint.fail = MAX_COMMIT_ATTEMPTS
    await batches.run(events(0))
    assert checkpoint.committed == []
    assert batches.stalls[PARTITION].reason.startswith(
        f"{MAX_COMMIT_ATTEMPTS} commits in a row failed"
    )


async def test_a_poisoned_offset_is_only_its_own_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offsets repeat across partitions: a record failing at offset 0 of one partition
    does not dead-letter offset 0 of another."""
    other_shop = next(
        s for s in (f"tea-{n}" for n in range(2, 99)) if shop_partition(s, 4) != PARTITION
    )
    other = shop_partition(other_shop, 4)
    checkpoint = FakeCheckpoint(SETTINGS, assigned={PARTITION, other})
    batches, tables = runner(checkpoint)
    bad = Event(Message(ORDERS, PARTITION, 0), order_value(SHOP, 0), SHOP.encode())
    good_value = order_value(SHOP, 0).replace(SHOP.encode(), other_shop.encode())
    good = Event(Message(ORDERS, other, 0), good_value, other_shop.encode())
    original = batches.pipeline.handle

    def handle(
        raw: bytes | None, expected: EventType, source: Source, key: bytes | None
    ) -> Outcome:
        if raw is not None and SHOP.encode() + b'"' in raw:
            raise ValueError("only this shop's")
        return original(raw, expected, source, key)

    monkeypatch.setattr(batches.pipeline, "handle", handle)
    await batches.run(batch(bad, good))
    assert [letter["source"]["partition"] for letter in letters_of(checkpoint)] == [PARTITION]
    assert tables["customers"][f"{other_shop}/c-1"].order_count == 1


async def test_a_record_outside_its_shops_partition_takes_a_detour_there() -> None:
    """A producer whose partitioner is not murmur2 over the shop id (librdkafka's default,
    kcat's) put the shop's order in another partition: it goes on to the shop's partition of
    the repartition topic, in the same commit as its input offset, and is processed there."""
    elsewhere = (PARTITION + 1) % 4
    checkpoint = FakeCheckpoint(SETTINGS, assigned={PARTITION, elsewhere})
    batches, tables = runner(checkpoint)
    await batches.run(batch(Event(Message(ORDERS, elsewhere, 0), order_value(SHOP, 0), None)))
    (work,) = checkpoint.committed
    (detour,) = work.outputs
    assert (detour.topic, detour.partition, detour.key) == (REPARTITION, PARTITION, None)
    assert detour.value == order_value(SHOP, 0) and dict(detour.headers) == {
        ORIGIN_HEADER: f"{ORDERS}/{elsewhere}/0".encode()
    }
    assert work.offsets == {ORDERS: 1} and f"{SHOP}/c-1" not in tables["customers"]
    carried = Message(REPARTITION, PARTITION, 0, list(detour.headers))
    await batches.run(batch(Event(carried, detour.value, detour.key)))
    assert order_count(tables) == 1
    counts = [tables["shops"][progress_key(p)]["counts"] for p in (elsewhere, PARTITION)]
    assert counts == [{"order": {"rerouted": 1}}, {"order": {"processed": 1}}]


async def test_a_record_on_the_repartition_topic_that_segstream_did_not_put_there() -> None:
    checkpoint = FakeCheckpoint(SETTINGS, assigned={PARTITION})
    batches, tables = runner(checkpoint)
    await batches.run(
        batch(Event(Message(REPARTITION, PARTITION, 0), order_value(SHOP, 0), SHOP.encode()))
    )
    (letter,) = letters_of(checkpoint)
    assert letter["reason"] == "wrong_topic" and "repartition" in letter["detail"]
    assert f"{SHOP}/c-1" not in tables["customers"]


class RestartingBroker(ProbedGuard):
    """A gap guard whose broker cannot answer the first ``down`` questions (restarting)."""

    def __init__(self, down: int) -> None:
        super().__init__(first=0)
        self.down = down

    def _unanswered(self) -> None:
        if self.down > 0:
            self.down -= 1
            raise KafkaTimeoutError("Failed to get offsets by times in 20000 ms")

    async def log_starts(self, tps: Any) -> dict[Any, int]:
        self._unanswered()
        return await super().log_starts(tps)

    async def first_visible(self, tp: Any, offset: int) -> int | None:
        self._unanswered()
        return await super().first_visible(tp, offset)


async def test_a_broker_that_cannot_say_where_to_seek_after_recovery_stalls_the_partition(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offsets request timing out (a broker restarting) once crashed a worker's
    recovery: now the partition stalls, and its retries seek once the broker answers."""
    monkeypatch.setattr("segstream.stream.stalls.STALL_FIRST_RETRY_S", 0.0)
    batches, tables = runner(checkpoint)
    guard = batches.guard = RestartingBroker(down=2)
    batches.rebalancing()
    await batches.recovered()  # does not raise
    assert "KafkaTimeoutError" in batches.stalls[PARTITION].reason
    for _ in range(20):  # the first retry fails too; the second seeks
        await asyncio.sleep(0)
        if guard.sought:
            break
    assert guard.down == 0 and (ORDERS, PARTITION, 0) in guard.sought
    await batches.run(events(0, 1))
    assert order_count(tables) == 2 and not batches.stalls


async def test_a_gap_the_broker_cannot_check_stalls_the_partition(
    checkpoint: FakeCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches, tables = runner(checkpoint)
    batches.guard = RestartingBroker(down=1)
    await batches.run(events(0))
    await batches.run(events(3))  # a gap, and the probe's question times out
    assert "checking the input for a gap" in batches.stalls[PARTITION].reason
    assert order_count(tables) == 1
