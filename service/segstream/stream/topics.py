"""The topics segstream owns: create them, and check they are co-partitioned.

All input topics are keyed by ``shop_id`` and must have the same partition count as
the tables' changelogs (``topic_partitions``): a shop's events and its state then
live in the same partition number everywhere. A topic created with another count
(say, auto-created by a producer with the broker's default) would split a shop's
events from its state, so the worker refuses to start and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from segstream.domain.contracts import EVENT_TYPES, INPUT_ROLES, EventType
from segstream.settings import (
    DEFINITIONS_ROLE,
    OUTPUT_ROLES,
    REPARTITION_ROLE,
    WEBHOOK_DEAD_LETTERS_ROLE,
    WEBHOOKS_ROLE,
    Settings,
)
from segstream.stream.kafka import connection_options

CREATED_ROLES: tuple[str, ...] = (
    *INPUT_ROLES,
    *OUTPUT_ROLES,
    REPARTITION_ROLE,
    WEBHOOKS_ROLE,
    WEBHOOK_DEAD_LETTERS_ROLE,
)


def input_event_types(settings: Settings) -> dict[str, EventType]:
    """The input topics and the event type each carries: one per entry of the event
    registry (``events.EVENT_CLASSES``), in its order. The worker subscribes to these."""
    return {settings.topic(role): kind for role, kind in EVENT_TYPES.items()}


def input_topics(settings: Settings) -> list[str]:
    """The names of the topics the worker reads: the input events' (see
    :func:`input_event_types`), the segment definitions' and the repartition topic (records
    found outside their shop's partition, taken on to it).

    >>> topics = input_topics(Settings())
    >>> topics[0], topics[-2:]
    ('segstream.signups', ['segstream.segment-definitions', 'segstream.repartition'])
    >>> len(topics) == len(EVENT_TYPES) + 2
    True
    """
    roles = (DEFINITIONS_ROLE, REPARTITION_ROLE)
    return [*input_event_types(settings), *(settings.topic(role) for role in roles)]


TABLES = ("customers", "shops", "models", "metrics")
"""The worker's changelog-backed tables (see segstream.stream.wiring)."""


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


class TopologyError(Exception):
    """Existing topics do not match the configured partitioning."""


def topic_configs(settings: Settings, changelogs: bool = False) -> dict[str, dict[str, str]]:
    """The topics segstream creates, with the configuration each is created with: the
    membership, definitions, webhooks and changelog topics compacted, the dead letters and
    the webhook dead letters (which keep raw payloads, personal data among them) deleted
    after ``dead_letter_retention_days``.

    >>> topic_configs(Settings(dead_letter_retention_days=3))["segstream.dead-letters"]
    {'retention.ms': '259200000'}
    """
    compacted = {"cleanup.policy": "compact"}
    wanted: dict[str, dict[str, str]] = {settings.topic(role): {} for role in CREATED_ROLES}
    wanted[settings.topic("segment_membership")] = compacted
    wanted[settings.topic(DEFINITIONS_ROLE)] = compacted
    wanted[settings.topic(WEBHOOKS_ROLE)] = compacted
    days = settings.dead_letter_retention_days
    wanted[settings.topic("dead_letters")] = {"retention.ms": str(days * 86_400_000)}
    wanted[settings.topic(WEBHOOK_DEAD_LETTERS_ROLE)] = {"retention.ms": str(days * 86_400_000)}
    if changelogs:
        wanted |= {changelog_topic(settings, table): compacted for table in TABLES}
    return wanted


async def ensure_topics(settings: Settings, changelogs: bool = False) -> list[str]:
    """Create the input and output topics that do not exist yet, and with ``changelogs``
    the tables' compacted changelog topics too (so a starting worker never sees a
    changelog without partitions in its metadata).

    Idempotent (also when another process creates them at the same time);
    returns the names it created.
    """
    wanted = topic_configs(settings, changelogs)
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = {name: config for name, config in wanted.items() if name not in existing}
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    settings.topic_partitions,
                    settings.topic_replication,
                    topic_configs=config,
                )
                for name, config in missing.items()
            ]
        )
        return _created(response.topic_errors)
    finally:
        await admin.close()


def _created(topic_errors: Iterable[tuple[Any, ...]]) -> list[str]:
    """Topics a CreateTopics response reports as created; raise on real errors."""
    created = []
    for name, code, *_ in topic_errors:
        if code == 0:
            created.append(name)
        elif code != TopicAlreadyExistsError.errno:
            raise for_code(code)(f"could not create topic {name}")
    return created


async def verify_partitions(settings: Settings) -> None:
    """Raise :class:`TopologyError` when an input topic's partition count is not
    ``topic_partitions`` (co-partitioning with the table changelogs)."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        names = input_topics(settings)
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    wrong = {
        topic["topic"]: len(topic["partitions"])
        for topic in described
        if topic["error_code"] == 0 and len(topic["partitions"]) != settings.topic_partitions
    }
    if wrong:
        found = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
        raise TopologyError(
            f"input topics must have SEGSTREAM_TOPIC_PARTITIONS={settings.topic_partitions} "
            f"partitions: {found}. Set SEGSTREAM_TOPIC_PARTITIONS to match, or recreate them."
        )
