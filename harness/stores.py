"""An in-memory table store, for running the pipeline's tables without Faust."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from faust.types import TP

from service.stream.tables import Pending


class DictStore:
    """A :class:`~service.stream.tables.LocalStore` of plain dicts, one per partition."""

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

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self.data[partition]):
            if key.startswith(prefix):
                yield key, self.data[partition][key]
