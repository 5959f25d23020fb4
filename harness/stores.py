"""The worker's pipeline without Kafka or Faust, over the worker's own codecs (unit tests,
in-process benches): :class:`InProcessPipeline` on in-memory stores, and :func:`feed` for a
:class:`Pipeline` over plain dicts, whose values it passes through the codecs after each
batch."""

from __future__ import annotations

import errno
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from faust.types import TP

from segstream.domain.changes import Source
from segstream.domain.contracts import EVENT_TYPES, EventType
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.state.store import MemoryTable, Tables
from segstream.stream.tables import CODECS, Pending, TableState, engine_tables
from segstream.tools.publish import encode


class DictStore:
    """A :class:`~segstream.stream.tables.LocalStore` of plain dicts, one per partition."""

    def __init__(self) -> None:
        self.data: defaultdict[int, dict[bytes, bytes]] = defaultdict(dict)
        self.offsets: dict[TP, int] = {}
        self.full = False
        """While set, every write fails as on a full disk (``ENOSPC``)."""
        self.refusing = False
        """Set by a failed write, cleared by :meth:`reopen`: as RocksDB, a store that
        failed a write refuses every later one until it is opened again."""

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data[partition].get(key)

    def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        if self.full or self.refusing:
            self.refusing = True
            raise OSError(errno.ENOSPC, "No space left on device")
        for key, value in items.items():
            if value is None:
                self.data[partition].pop(key, None)
            else:
                self.data[partition][key] = value
        self.offsets[tp] = offset

    def keys(self, partition: int) -> Iterator[bytes]:
        yield from list(self.data[partition])

    def scan(
        self, partition: int, prefix: bytes, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        first = start or prefix
        for key in sorted(self.data[partition]):
            if key.startswith(prefix) and key >= first:
                yield key, self.data[partition][key]

    def where(self, partition: int) -> Path | None:
        return None

    def reopen(self, partition: int) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.refusing = False


class InProcessPipeline:
    """The worker's pipeline over its own tables and codecs on in-memory stores, without
    Kafka or Faust: records are handled one by one and :meth:`commit` flushes a batch and
    applies its encoded writes, as the worker's commit does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        partitions = settings.topic_partitions
        self.stores = {name: DictStore() for name in CODECS}
        self.tables = {
            name: TableState(
                name,
                lambda store=self.stores[name]: store,  # type: ignore[misc]
                partitions,
                lambda: set(range(partitions)),
                CODECS[name],
                settings.state_cache_entries,
            )
            for name in CODECS
        }
        self.pipeline = Pipeline(settings, engine_tables(self.tables))
        self.offset = 0
        self._touched: set[int] = set()

    def handle(self, kind: EventType, role: str, value: bytes, shop_id: str) -> Outcome:
        """One input record, as if read at the next offset of its shop's partition."""
        partition = shop_partition(shop_id, self.settings.topic_partitions)
        self._touched.add(partition)
        self.offset += 1
        return self.pipeline.handle(value, kind, Source(role, partition, self.offset), None)

    def commit(self, *also: int) -> None:
        """Flush the batch and apply its writes to the stores (of the partitions records
        went to, and of ``also``: those of work no record caused)."""
        self.pipeline.flush()
        for partition in sorted(self._touched | set(also)):
            for state in self.tables.values():
                state.apply(partition, state.writes(partition), TP("", partition), self.offset)
        self._touched.clear()


def feed(pipeline: Pipeline, records: Iterable[tuple[str, bytes | Mapping[str, Any]]]) -> None:
    """Hand ``(role, event or raw bytes)`` records to ``pipeline`` in order (each in the
    partition its shop hashes to, as Kafka's default partitioner puts them), then write
    the shops' books as the worker does at the end of a batch, and pass what the tables
    hold through the worker's codecs (:func:`through_codecs`)."""
    partitions = pipeline.settings.topic_partitions
    for offset, (role, value) in enumerate(records):
        raw = value if isinstance(value, bytes) else encode(value)
        partition = 0 if isinstance(value, bytes) else shop_partition(value["shop_id"], partitions)
        pipeline.handle(raw, EVENT_TYPES[role], Source(role, partition, offset), None)
    pipeline.flush()
    through_codecs(pipeline.tables)


def through_codecs(tables: Tables) -> None:
    """Replace every value of the dict tables in ``tables`` by its table's codec's decoding
    of its encoding (:data:`CODECS`): what a worker reads back from its store after the
    batch committed and it restarted, so a value the codec cannot carry fails or shows.
    Other tables (:class:`TableState`) run the codecs themselves when committed."""
    for item in fields(Tables):
        table = getattr(tables, item.name)
        if isinstance(table, MemoryTable):  # a dict of customers, wrapped for its scans
            table = table.data
        if type(table) is not dict:
            continue
        codec = CODECS[item.name]
        for key, value in list(table.items()):
            table[key] = codec.decode(key, codec.encode(key, value))
