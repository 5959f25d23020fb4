"""Table keys and the partition every key belongs to.

Input topics are keyed by ``shop_id``, so Kafka's default partitioner puts a shop's events
in partition ``murmur2(shop_id) % partitions``. Every table key starts with the shop id it
belongs to (``shop``, ``shop/customer``, ``shop|...``), so its partition is the shop's; a
few per-partition keys (``__progress__/3``, ``__partition__/3``) name their partition
instead. Only those exact forms are per-partition keys: a shop id never starts with ``_``
(``envelope.json#/$defs/shop_id``, and the API checks path ids the same way), and a key
that merely starts with ``__`` is routed as a shop's, never parsed as a partition.

>>> partition_of("tea-1/c-7", 8) == shop_partition("tea-1", 8)
True
>>> partition_of(progress_key(3), 8)
3
>>> partition_of("__main__|definitions", 8) == shop_partition("__main__", 8)
True
"""

from __future__ import annotations

import functools
import re

from aiokafka.partitioner import murmur2

PARTITION_KEY_PREFIX = "__"
PARTITION_KEY = re.compile(r"__(?:progress|partition)__/([0-9]{1,9})")
"""The per-partition keys (:func:`progress_key`, :func:`prior_key`), matched whole."""


@functools.lru_cache(maxsize=65_536)
def shop_partition(shop_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives records keyed by ``shop_id``
    (remembered: every table access asks, for a few shops)."""
    return int(murmur2(shop_id.encode()) & 0x7FFFFFFF) % partitions


def customer_key(shop_id: str, customer_id: str) -> str:
    """Table key of a customer (shop ids never contain ``/``)."""
    return f"{shop_id}/{customer_id}"


def shop_record_key(shop_id: str, record: str) -> str:
    """Key of one of a shop's records beside its main one in the ``shops`` table (its
    definitions, its lifetime model)."""
    return f"{shop_id}|{record}"


def progress_key(partition: int) -> str:
    """Key of a partition's progress record (input offsets and counts it includes)."""
    return f"__progress__/{partition}"


def prior_key(partition: int) -> str:
    """Key of the models shared by all shops of one partition."""
    return f"__partition__/{partition}"


def shop_of(key: str) -> str:
    """The shop a table key belongs to (shop ids never contain ``/`` or ``|``)."""
    cut = len(key)
    for separator in ("/", "|"):
        found = key.find(separator)
        if found != -1:
            cut = min(cut, found)
    return key[:cut]


def partition_of(key: str, partitions: int) -> int:
    """The partition a table key lives in."""
    if key.startswith(PARTITION_KEY_PREFIX) and (found := PARTITION_KEY.fullmatch(key)):
        return int(found.group(1))
    return shop_partition(shop_of(key), partitions)
