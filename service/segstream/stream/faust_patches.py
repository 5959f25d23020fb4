"""Changes to faust-streaming's behaviour that segstream's transactional checkpoint needs.

segstream commits every batch itself, in one Kafka transaction per partition
(:mod:`segstream.stream.checkpoint`), instead of Faust's exactly-once mode, which commits on a
timer mid-event (upstream faust-streaming #323, #517). Faust keeps the consumer group,
recovery, standbys, the web server and timers; the patches make those fit transactions:

1. no offset commits of Faust's own (they would run ahead of the transactions);
2. ``read_committed`` for input topics and changelogs alike;
3. recovery ends at the last visible record, not at a commit marker (upstream #47, #74, #597);
4. no records dropped as "already read" after a seek (upstream #216, #221; robinhood/faust
   #115): :class:`~segstream.stream.runner.BatchRunner` decides per record;
5. the bootstrap is retried while a broker restarts (dpkp/kafka-python#1736);
6. a topic declaration (the leader topic at start) is retried when its connection closes.

Another faust-streaming or aiokafka version refuses to start until this module is reviewed
for it (:func:`check_versions`). The reasons and the failures each patch answers:
``docs/design/faust-patches.md``.
"""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import codec as aiokafka_codec
from aiokafka.client import AIOKafkaClient
from faust.tables import recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from segstream.stream.kafka import wait_for_broker

TESTED_VERSIONS = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
TAIL_WINDOW = 64
"""Records read back from a changelog partition's end to find its last visible record."""


CODECS: dict[str, Callable[[], bool]] = {
    "snappy": aiokafka_codec.has_snappy,
    "lz4": aiokafka_codec.has_lz4,
    "zstd": aiokafka_codec.has_zstd,
}
"""The record batch codecs aiokafka needs a library for (gzip is Python's)."""


class UnsupportedVersionError(RuntimeError):
    """An installed library is not the version these patches were written for."""


_state: dict[str, Any] = {"options": None, "wait_s": 0.0}
_bootstrap = AIOKafkaClient.bootstrap
_create_topic = faust_aiokafka.Transport._create_topic


def check_versions() -> None:
    """Raise :class:`UnsupportedVersionError` unless the tested versions are installed."""
    for package, tested in TESTED_VERSIONS.items():
        found = importlib.metadata.version(package)
        if found != tested:
            raise UnsupportedVersionError(
                f"{package} {found} is installed; service/segstream/stream/faust_patches.py was "
                f"written and tested for {tested}: review the patches, then update "
                "TESTED_VERSIONS"
            )
    missing = [name for name, has in CODECS.items() if not has()]
    if missing:  # aiokafka raises in its fetcher, and Faust's consumer ends the worker
        raise UnsupportedVersionError(
            f"aiokafka cannot decompress {', '.join(missing)}: one batch a producer compressed "
            "so would stop the worker; install aiokafka[lz4,snappy,zstd] (cramjam)"
        )


async def _no_commit(self: Any, *args: Any, **kwargs: Any) -> bool:
    """Faust's offset commits are off: segstream's checkpoint commits offsets. What Faust
    keeps to compute them (acked offsets, gaps) is dropped instead, or it would grow by
    an entry per record for the life of the process."""
    for acked in self._acked.values():
        acked.clear()
    for index in self._acked_index.values():
        index.clear()
    self._gap.clear()
    return False


async def _never_force(self: Any, *args: Any, **kwargs: Any) -> bool:
    return False


_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _read_committed_consumer(self: Any, transport: Any) -> Any:
    consumer = _create_worker_consumer(self, transport)
    consumer._isolation_level = "read_committed"
    return consumer


class NoReadOffsets(dict[Any, Any]):
    """Faust's per-partition "highest offset delivered": always unknown, so its fetch loop
    drops nothing and records no gaps."""

    def __getitem__(self, key: Any) -> None:
        return None

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


_consumer_init = faust_consumer.Consumer.__init__


def _init_without_read_offsets(self: Any, *args: Any, **kwargs: Any) -> None:
    _consumer_init(self, *args, **kwargs)
    self._read_offset = NoReadOffsets()


_build_highwaters = faust_recovery.Recovery._build_highwaters


async def _visible_highwaters(
    self: Any, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
) -> None:
    """Faust's highwaters (last stable offset - 1), lowered to the last visible record."""
    await _build_highwaters(self, consumer, tps, destination, title)
    ends = {tp: destination[tp] + 1 for tp in tps if destination[tp] >= 0}
    if ends:
        for tp, offset in (await last_visible_offsets(ends)).items():
            destination[tp] = offset  # (Counter.update would add)


async def last_visible_offsets(ends: Mapping[TP, int]) -> dict[TP, int]:
    """Offset of the last record a read_committed consumer sees below each ``end``
    (-1 when there is none): what recovery has to reach."""
    consumer = AIOKafkaConsumer(
        **_state["options"], isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await _scan_tails(consumer, ends)
    finally:
        await consumer.stop()


async def _scan_tails(consumer: AIOKafkaConsumer, ends: Mapping[TP, int]) -> dict[TP, int]:
    found: dict[TP, int] = {}
    pending = {TopicPartition(tp.topic, tp.partition): end for tp, end in ends.items()}
    window = TAIL_WINDOW
    while pending:
        consumer.assign(list(pending))
        beginnings = await consumer.beginning_offsets(list(pending))
        for tp, end in pending.items():
            consumer.seek(tp, max(beginnings[tp], end - window))
        last = await _read_to(consumer, pending)
        for tp in list(pending):
            if tp in last or max(beginnings[tp], pending[tp] - window) == beginnings[tp]:
                found[TP(tp.topic, tp.partition)] = last.get(tp, -1)
                del pending[tp]
        window *= 8
    return found


async def _read_to(
    consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Read every partition up to its end; the offset of the last record seen in each."""
    last: dict[TopicPartition, int] = {}
    while await _behind(consumer, ends):
        batches = await consumer.getmany(*ends, timeout_ms=200)
        for tp, records in batches.items():
            below = [r.offset for r in records if r.offset < ends[tp]]
            if below:
                last[tp] = max(below[-1], last.get(tp, -1))
    return last


async def _behind(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def _patient_bootstrap(self: Any, *args: Any, **kwargs: Any) -> Any:
    """Patch 5: aiokafka's bootstrap, tried again while no broker answers, for ``wait_s``."""
    call = lambda: _bootstrap(self, *args, **kwargs)  # noqa: E731
    return await wait_for_broker(call, _state["wait_s"], "bootstrap")


async def _patient_create_topic(self: Any, *args: Any, **kwargs: Any) -> Any:
    """Patch 6: Faust's topic declaration, tried again for ``wait_s`` when the connection it
    asks the controller on closes under it or its request times out (a reset at start: the
    leader assignor's declaration crashed the worker); not once its owner is stopping."""
    owner = args[0] if args else None
    call = lambda: _create_topic(self, *args, **kwargs)  # noqa: E731
    stopping = lambda: bool(getattr(owner, "should_stop", False))  # noqa: E731
    return await wait_for_broker(call, _state["wait_s"], "create_topic", stopping)


def apply(connection_options: Mapping[str, Any], wait_s: float = 0.0) -> None:
    """Install the patches (idempotent); ``connection_options`` reach the brokers, and
    a client waits up to ``wait_s`` for a broker that does not answer."""
    check_versions()
    _state["options"] = dict(connection_options)
    _state["wait_s"] = wait_s
    AIOKafkaClient.bootstrap = _patient_bootstrap
    faust_aiokafka.Transport._create_topic = _patient_create_topic  # type: ignore[method-assign]
    faust_consumer.Consumer.commit = _no_commit  # type: ignore[method-assign]
    faust_consumer.Consumer.force_commit = _never_force  # type: ignore[method-assign]
    faust_consumer.Consumer.__init__ = _init_without_read_offsets  # type: ignore[method-assign]
    thread = faust_aiokafka.AIOKafkaConsumerThread
    thread._create_worker_consumer = _read_committed_consumer  # type: ignore[method-assign]
    faust_recovery.Recovery._build_highwaters = _visible_highwaters  # type: ignore[method-assign]
