"""The worker's four tables as one typed object: what the engine is given.

The worker backs each with a changelog-backed table (``segstream.stream.tables``); tests
and benches use dicts (the customers table in a :class:`MemoryTable`, which scans them).
Keys are those of :mod:`segstream.state.keyspace`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

Table = MutableMapping[str, Any]


@runtime_checkable
class ScanTable(Protocol):
    """A table the engine reads by key and scans by key range: the customers table
    (a shop's customers are the keys with its prefix, on the shop's partition)."""

    def __getitem__(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def __delitem__(self, key: str) -> None: ...

    def __contains__(self, key: object) -> bool: ...

    def __iter__(self) -> Iterator[str]: ...

    def get(self, key: str, /) -> Any: ...

    def keys_of(self, partition: int, prefix: str = "", start: str | None = None) -> Iterator[str]:
        """The keys of ``partition`` that start with ``prefix``, in order, from ``start``
        on (the whole prefix when None)."""
        ...


class MemoryTable(MutableMapping[str, Any]):
    """A :class:`ScanTable` over a plain dict (tests, benches), which it reads and writes
    in place. The dict holds every partition's keys: a scan of one partition is a scan
    of its prefix, since a prefix's keys are all on one partition (the shop's).

    >>> table = MemoryTable({"b/2": 2, "a/1": 1, "b/1": 1})
    >>> list(table.keys_of(0, "b/")), list(table.keys_of(0, "b/", "b/2"))
    (['b/1', 'b/2'], ['b/2'])
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"MemoryTable({self.data!r})"

    def keys_of(self, partition: int, prefix: str = "", start: str | None = None) -> Iterator[str]:
        """Keys starting with ``prefix``, in order, from ``start`` on."""
        first = prefix if start is None or start < prefix else start
        return iter(sorted(k for k in list(self.data) if k.startswith(prefix) and k >= first))


def scan_table(table: Table) -> ScanTable:
    """``table`` if it scans (the worker's tables), else a :class:`MemoryTable` over it."""
    if isinstance(table, ScanTable):
        return table
    if not isinstance(table, dict):
        raise TypeError(f"the customers table must be a dict or scan its keys, not {table!r}")
    return MemoryTable(table)


@dataclass(frozen=True, slots=True)
class Tables:
    """``customers`` (customer states), ``shops`` (a shop's records and the partitions'
    progress), ``models`` (model checkpoints) and ``metrics`` (the ledger's buckets)."""

    customers: ScanTable
    shops: Table
    models: Table = field(default_factory=dict)
    metrics: Table = field(default_factory=dict)

    @classmethod
    def of(cls, *mappings: Table | None) -> Tables:
        """From mappings in that order (the last two may be None or left out), as callers
        older than this class pass them.

        >>> Tables.of({}, {"tea-1": {}}).shops
        {'tea-1': {}}
        """
        if not 2 <= len(mappings) <= 4 or mappings[0] is None or mappings[1] is None:
            raise TypeError("expected the customers and shops tables, then models and metrics")
        customers, shops, models, metrics = (*mappings, None, None)[:4]
        assert customers is not None and shops is not None
        models, metrics = ({} if m is None else m for m in (models, metrics))
        return cls(scan_table(customers), shops, models, metrics)

    @classmethod
    def named(cls, tables: Mapping[str, Table]) -> Tables:
        """From tables by their names (``customers``, ``shops``, ``models``, ``metrics``)."""
        customers, shops, models, metrics = (tables[item.name] for item in fields(cls))
        return cls(scan_table(customers), shops, models, metrics)


def tables_of(tables: Tables | Table, *older: Table | None) -> Tables:
    """``tables``; or, from a caller older than :class:`Tables`, its mappings in order
    (:meth:`Tables.of`)."""
    if isinstance(tables, Tables):
        if older:
            raise TypeError("pass the Tables alone")
        return tables
    return Tables.of(tables, *older)
