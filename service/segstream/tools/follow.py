"""``segstream follow``: the reference downstream consumer (copy it).

What an e-mail or offer tool does with segstream's output:

1. **Bootstrap**: note where the change topic ends now, then read the compacted
   membership topic from the beginning with ``read_committed`` (last record per key; a
   tombstone removes the key): who is in which segment now.
2. **Follow** the change topic from the offsets noted in step 1, ``read_committed``,
   applying every change in order (the last one per customer and model wins), skipping
   any change id seen before, and acting on none the membership already held (the very
   change it names, or one not newer than the member's ``since``).
3. **Respect consent**: act (here: print ``send``) only for customers whose change says
   ``marketing_opt_in: true``; the others are kept current but not written to (``hold``).

``--seconds`` bounds how long it follows; at the end it prints a short summary (changes
applied per model and segment entered, a cluster with its readable name; repeats
skipped; actions; members held). Worth a message here: a move into lifecycle
``at_risk`` or churn risk ``high``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from segstream.domain.events import parse_time
from segstream.settings import ConfigError, Settings, load_settings
from segstream.stream.kafka import connection_options
from segstream.tools.command import parser_for

SEEN_IDS = 100_000
"""Change ids remembered for de-duplication (oldest forgotten first)."""
WORTH_A_MESSAGE = frozenset({("lifecycle", "at_risk"), ("churn_risk", "high")})


@dataclass(frozen=True, slots=True)
class Action:
    """What the tool does about one change: ``send`` (consented) or ``hold``."""

    verb: str
    change: dict[str, Any]

    def line(self) -> str:
        c = self.change
        return f"{self.verb:<4} {c['shop_id']} · {c['customer_id']} · {c['model']} → {c['current']}"


class Follower:
    """The current membership, kept from the membership topic and then the changes."""

    def __init__(self, worth: frozenset[tuple[str, str]] = WORTH_A_MESSAGE) -> None:
        self.members: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.worth = worth
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.applied: Counter[tuple[str, str | None]] = Counter()
        """Changes applied, by model and segment entered (None: left the model)."""
        self.repeats = 0
        """Changes skipped: a repeated id, or one the membership already held."""
        self.verbs: Counter[str] = Counter()
        self.names: dict[tuple[str, str], str] = {}
        """The readable name of each segment that is an id (clusters), as last seen."""

    def bootstrap(self, key: bytes, value: bytes | None) -> None:
        """One record of the membership topic, in offset order."""
        shop_id, customer_id, model = key.decode().split("|", 2)
        if value is None:
            self.members.pop((shop_id, customer_id, model), None)
        else:
            member = self.members[(shop_id, customer_id, model)] = json.loads(value)
            self._name(model, member.get("segment"), member.get("name"))

    def on_change(self, change: dict[str, Any]) -> Action | None:
        """Apply one record of the change topic; the action it asks for, if any."""
        if change.get("kind") != "segment_changed":
            return None
        if self._repeated(change["event_id"]):
            self.repeats += 1
            return None
        key = (change["shop_id"], change["customer_id"], change["model"])
        known = self.members.get(key)
        seen = known is not None and (
            change["event_id"] == known["change_id"]
            or parse_time(change["changed_at"]) <= parse_time(known["since"])
        )
        if seen:
            self.repeats += 1
        else:
            self.applied[change["model"], change["current"]] += 1
        self._name(change["model"], change["current"], change.get("current_name"))
        if change["current"] is None:
            self.members.pop(key, None)
            return None
        self.members[key] = {
            "segment": change["current"],
            "since": change["changed_at"],
            "change_id": change["event_id"],
            "marketing_opt_in": change.get("marketing_opt_in"),
        }
        if seen or (change["model"], change["current"]) not in self.worth:
            return None  # seen: the membership read at the start already held it
        verb = "send" if change.get("marketing_opt_in") is True else "hold"
        self.verbs[verb] += 1
        return Action(verb, change)

    def _name(self, model: str, segment: str | None, name: Any) -> None:
        if segment is not None and isinstance(name, str) and name:
            self.names[model, segment] = name

    def summary(self) -> list[str]:
        """What was applied, in a few lines: the changes per model and segment entered
        (a cluster with its readable name), the repeats skipped, the actions taken, and
        the members held now per model."""
        total = sum(self.applied.values())
        lines = [
            f"applied {total:,} changes, skipped {self.repeats:,} repeats;"
            f" {self.verbs['send']:,} send, {self.verbs['hold']:,} hold"
        ]
        for model in sorted({model for model, _ in self.applied}):
            entered = sorted(
                ((s, n) for (m, s), n in self.applied.items() if m == model),
                key=lambda item: (-item[1], item[0] or ""),
            )
            parts = [f"{self._shown(model, segment)} {n:,}" for segment, n in entered]
            lines.append(f"  {model}: " + ", ".join(parts))
        held = Counter(model for _, _, model in self.members)
        members = ", ".join(f"{model} {n:,}" for model, n in sorted(held.items()))
        lines.append(f"members now: {members or 'none'}")
        return lines

    def _shown(self, model: str, segment: str | None) -> str:
        if segment is None:
            return "→ left"
        name = self.names.get((model, segment))
        return f"→ {segment}" if name is None else f"→ {segment} ({name})"

    def _repeated(self, event_id: str) -> bool:
        if event_id in self._seen:
            return True
        self._seen[event_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return False


async def ends(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """The ``read_committed`` end offset of every partition of ``topic`` now (segstream
    creates its topics with ``SEGSTREAM_TOPIC_PARTITIONS`` partitions)."""
    consumer = _consumer(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def bootstrap(settings: Settings, follower: Follower) -> int:
    """Read the membership topic from its beginning to its current end; records read."""
    topic = settings.topic("segment_membership")
    until = {tp: end for tp, end in (await ends(settings, topic)).items() if end > 0}
    consumer = _consumer(settings)
    await consumer.start()
    read = 0
    try:
        consumer.assign(list(until))
        await consumer.seek_to_beginning(*until)
        while await _behind(consumer, until):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    follower.bootstrap(record.key, record.value)
                    read += 1
    finally:
        await consumer.stop()
    return read


async def follow(
    settings: Settings,
    follower: Follower,
    start: dict[TopicPartition, int],
    seconds: float,
    until: dict[TopicPartition, int] | None = None,
) -> list[Action]:
    """Follow the change topic from ``start`` for ``seconds`` (or until every partition
    reached ``until``); the actions taken."""
    consumer = _consumer(settings)
    await consumer.start()
    actions: list[Action] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until is not None and not await _behind(consumer, until):
                break
            for records in (await consumer.getmany(timeout_ms=500)).values():
                actions += _act(follower, (json.loads(r.value) for r in records if r.value))
    finally:
        await consumer.stop()
    return actions


async def _behind(consumer: AIOKafkaConsumer, until: dict[TopicPartition, int]) -> bool:
    for tp, end in until.items():
        if await consumer.position(tp) < end:
            return True
    return False


def _act(follower: Follower, changes: Iterable[dict[str, Any]]) -> list[Action]:
    found = []
    for change in changes:
        action = follower.on_change(change)
        if action is not None:
            print(action.line(), flush=True)
            found.append(action)
    return found


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **connection_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )


async def run(settings: Settings, seconds: float) -> Follower:
    """Bootstrap, then follow for ``seconds``."""
    follower = Follower()
    start = await ends(settings, settings.topic("segment_changes"))
    read = await bootstrap(settings, follower)
    print(f"bootstrapped {len(follower.members):,} memberships from {read:,} records", flush=True)
    await follow(settings, follower, start, seconds)
    for line in follower.summary():
        print(line, flush=True)
    return follower


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = parser_for("follow", __doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to follow")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    asyncio.run(run(settings, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
