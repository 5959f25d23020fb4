"""An in-memory table store, and the worker's pipeline on it, for running the pipeline
without Kafka or Faust (unit tests, in-process benches)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from faust.types import TP

from segstream.core.changes import Source
from segstream.core.contracts import EventType
from segstream.core.keys import shop_partition
from segstream.core.pipeline import Outcome, Pipeline
from segstream.settings import Settings
from segstream.stream.tables import CODECS, Pending, TableState


class DictStore:
    """A :class:`~segstream.stream.tables.LocalStore` of plain dicts, one per partition."""

    def __init__(self) -> None:
        self.data: defaultdict[int, dict[bytes, bytes]] = defaultdict(dict)
        self.offsets: dict[TP, int] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data[partition].get(key)

    def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
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
        self.pipeline = Pipeline(settings, *(self.tables[name] for name in CODECS))
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
