"""Every key segstream stores or sends, and the partition every key belongs to.

This module is the whole keyspace: no other module formats or parses a table key. Per
table:

- ``customers``: ``<shop>/<customer>`` (:func:`customer_key`).
- ``shops``: ``<shop>`` (the shop's main record), ``<shop>|<record>`` beside it
  (:func:`definitions_key`, :func:`experiments_key`, :func:`lifetime_key`,
  :func:`funnel_key`, :func:`erasure_key`, :func:`referrals_key`) and one
  ``__progress__/<partition>`` per partition (:func:`progress_key`).
- ``models``: ``<shop>`` (the shop's checkpoints) and ``__partition__/<partition>``
  (:func:`prior_key`).
- ``metrics``: ``<shop>|day|<YYYY-MM-DD>|<dimension>``, ``<shop>|total|<dimension>`` and
  ``<shop>|index`` (:func:`day_key`, :func:`total_key`, :func:`index_key`).
- the segment-definitions topic: ``<shop>|<segment_id>`` and ``<shop>|experiment:<id>``
  (:func:`definition_record_key`, :func:`parse_definition_record_key`).

Why no id can collide with an internal key: a shop id is 1-64 letters, digits, ``.``,
``_`` or ``-`` starting with a letter or digit (``envelope.json#/$defs/shop_id``, and the
API checks path ids the same way), so it never holds ``/`` or ``|`` and never starts with
``_``; everything a key holds after the shop id starts with ``/`` (a customer) or ``|`` (a
record), and a customer id, which may hold any printable character, only ever follows
``/``, or appears hashed (:func:`id_digest`). ``tests/unit/state/test_keyspace.py`` checks
this over the ids the contract accepts.

Input topics are keyed by ``shop_id``, so Kafka's default partitioner puts a shop's events
in partition ``murmur2(shop_id) % partitions``. Every table key starts with the shop id it
belongs to, so its partition is the shop's; the per-partition keys name their partition
instead. Only those exact forms are per-partition keys: a key that merely starts with
``__`` is routed as a shop's, never parsed as a partition.

>>> partition_of("tea-1/c-7", 8) == shop_partition("tea-1", 8)
True
>>> partition_of(progress_key(3), 8)
3
>>> partition_of("__main__|definitions", 8) == shop_partition("__main__", 8)
True
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import date

from aiokafka.partitioner import murmur2

CUSTOMER_SEPARATOR = "/"
"""Between the shop id and the customer id of a customer's key."""
RECORD_SEPARATOR = "|"
"""Between the shop id and the name of one of its records."""
PARTITION_KEY_PREFIX = "__"
PARTITION_KEY = re.compile(r"__(?:progress|partition)__/([0-9]{1,9})")
"""The per-partition keys (:func:`progress_key`, :func:`prior_key`), matched whole."""
EXPERIMENT_KEY_PREFIX = "experiment:"
"""Names of experiments on the segment-definitions topic (``<shop_id>|experiment:<id>``)
and of the enrolment passes older records kept among the definitions' re-evaluations (a
segment id cannot contain ``:``)."""
REHOMING_PREFIX = "model:"
"""Name of a pass that moves the customers of segments a learned model retired
(``model:<model name>``), queued with the shop's definition re-evaluations."""


@functools.lru_cache(maxsize=65_536)
def shop_partition(shop_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives records keyed by ``shop_id``
    (remembered: every table access asks, for a few shops)."""
    return int(murmur2(shop_id.encode()) & 0x7FFFFFFF) % partitions


def id_digest(customer_id: str) -> str:
    """A customer id hashed, for keys that must not hold the id itself (a compacted
    changelog would keep it)."""
    return hashlib.blake2b(customer_id.encode(), digest_size=16).hexdigest()


# ------------------------------------------------------------------ customers


def customer_key(shop_id: str, customer_id: str) -> str:
    """Table key of a customer (shop ids never contain ``/``)."""
    return f"{shop_id}{CUSTOMER_SEPARATOR}{customer_id}"


# ------------------------------------------------------------------ shops


def shop_record_key(shop_id: str, record: str) -> str:
    """Key of one of a shop's records beside its main one (whose key is the shop id)."""
    return f"{shop_id}{RECORD_SEPARATOR}{record}"


def definitions_key(shop_id: str) -> str:
    """Key of a shop's segment definitions in the ``shops`` table."""
    return shop_record_key(shop_id, "definitions")


def experiments_key(shop_id: str) -> str:
    """Key of a shop's experiments in the ``shops`` table."""
    return shop_record_key(shop_id, "experiments")


def lifetime_key(shop_id: str) -> str:
    """Key of a shop's lifetime model (sample and fit) in the ``shops`` table."""
    return shop_record_key(shop_id, "lifetime")


def funnel_key(shop_id: str) -> str:
    """Key of a shop's journey funnel in the ``shops`` table."""
    return shop_record_key(shop_id, "journey")


def erasure_key(shop_id: str, customer_id: str) -> str:
    """Key of the marker an erased customer leaves in the ``shops`` table: their id hashed
    (the id itself must not stay in a compacted changelog)."""
    return shop_record_key(shop_id, f"erased|{id_digest(customer_id)}")


def referrals_key(shop_id: str, customer_id: str) -> str:
    """Key of the referrals pending in the ``shops`` table for a customer segstream does
    not know (yet, or any more after an erasure): their id hashed, as for the marker."""
    return shop_record_key(shop_id, f"referrals|{id_digest(customer_id)}")


def is_shop_key(key: str) -> bool:
    """Whether a ``shops``-table key is a shop's main record (its id), not a
    per-partition record nor one of the records beside it.

    >>> is_shop_key("tea-1"), is_shop_key(definitions_key("tea-1")), is_shop_key(progress_key(0))
    (True, False, False)
    """
    return not key.startswith(PARTITION_KEY_PREFIX) and RECORD_SEPARATOR not in key


def progress_key(partition: int) -> str:
    """Key of a partition's progress record (input offsets and counts it includes)."""
    return f"__progress__/{partition}"


# ------------------------------------------------------------------ models


def prior_key(partition: int) -> str:
    """Key of the models shared by all shops of one partition."""
    return f"__partition__/{partition}"


# ------------------------------------------------------------------ metrics


def day_key(shop_id: str, day: date, dimension: str) -> str:
    """Key of a day's bucket of one dimension in the ``metrics`` table."""
    return shop_record_key(shop_id, f"day|{day.isoformat()}|{dimension}")


def total_key(shop_id: str, dimension: str) -> str:
    """Key of a dimension's running totals."""
    return shop_record_key(shop_id, f"total|{dimension}")


def index_key(shop_id: str) -> str:
    """Key of a shop's ledger index (stream day, kept days, dimensions)."""
    return shop_record_key(shop_id, "index")


# ------------------------------------------------------------------ definitions topic


def definition_record_key(shop_id: str, name: str) -> bytes:
    """Key of a record of the segment-definitions topic: ``name`` is a segment id or
    ``experiment:<id>`` (:func:`experiment_name`)."""
    return shop_record_key(shop_id, name).encode()


def parse_definition_record_key(key: bytes | None) -> tuple[str, str] | None:
    """The shop and name a segment-definitions key holds (None: not of that form).

    >>> parse_definition_record_key(b"tea-1|experiment:thanks")
    ('tea-1', 'experiment:thanks')
    >>> parse_definition_record_key(b"tea-1") is None
    True
    """
    try:
        shop_id, separator, name = (key or b"").decode().partition(RECORD_SEPARATOR)
    except UnicodeDecodeError:
        return None
    return (shop_id, name) if shop_id and separator and name else None


def experiment_name(experiment_id: str) -> str:
    """The name an experiment has on the segment-definitions topic (``experiment:<id>``)."""
    return f"{EXPERIMENT_KEY_PREFIX}{experiment_id}"


# ------------------------------------------------------------------ routing


def shop_of(key: str) -> str:
    """The shop a table key belongs to (shop ids never contain ``/`` or ``|``)."""
    cut = len(key)
    for separator in (CUSTOMER_SEPARATOR, RECORD_SEPARATOR):
        found = key.find(separator)
        if found != -1:
            cut = min(cut, found)
    return key[:cut]


def partition_of(key: str, partitions: int) -> int:
    """The partition a table key lives in."""
    if key.startswith(PARTITION_KEY_PREFIX) and (found := PARTITION_KEY.fullmatch(key)):
        return int(found.group(1))
    return shop_partition(shop_of(key), partitions)
