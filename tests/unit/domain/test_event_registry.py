"""The event registry (segstream.domain.events.EVENT_CLASSES) is the one place an input event
type is declared: its schema, examples, topic and subscriptions all follow from it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from segstream.domain.contracts import (
    EVENT_TYPES,
    EXAMPLE_DIR,
    INPUT_ROLES,
    SCHEMA_DIR,
    TYPE_NAMES,
    parse_event,
    role_for,
    schema_path,
)
from segstream.domain.customer import CustomerState, apply
from segstream.domain.events import EVENT_CLASSES, Event, event_type, from_payload
from segstream.settings import (
    DEFINITIONS_ROLE,
    OUTPUT_ROLES,
    REPARTITION_ROLE,
    WEBHOOK_DEAD_LETTERS_ROLE,
    WEBHOOKS_ROLE,
    Settings,
)
from segstream.stream.topics import CREATED_ROLES, input_event_types, input_topics
from tests.hand_lists import ROOT, SHARE, hand_lists, listing

# The valid examples are dated up to 2026-12-24 (see test_contracts).
EXAMPLES_NOW = datetime(2027, 1, 1, tzinfo=UTC)


def _valid_examples() -> list[tuple[type[Event], Path]]:
    return [
        (cls, path)
        for cls in EVENT_CLASSES
        for path in sorted((EXAMPLE_DIR / cls.type_name / "valid").glob("*.json"))
    ]


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.type_name)
def test_each_type_has_its_schema_file_naming_it(cls: type[Event]) -> None:
    schema = json.loads(schema_path(cls.type_name).read_text(encoding="utf-8"))
    assert schema["properties"]["type"]["const"] == cls.type_name
    assert "type" in schema["required"]
    assert list((EXAMPLE_DIR / cls.type_name / "valid").glob("*.json")), "no valid example"


def test_every_schema_of_an_input_type_is_registered() -> None:
    typed = set()
    for path in SCHEMA_DIR.glob("*.json"):
        const = json.loads(path.read_text(encoding="utf-8")).get("properties", {}).get("type", {})
        if "const" in const:
            typed.add(const["const"])
    assert typed == set(TYPE_NAMES)


@pytest.mark.parametrize(("cls", "path"), _valid_examples(), ids=lambda x: getattr(x, "stem", ""))
def test_valid_examples_parse_into_their_record_class(cls: type[Event], path: Path) -> None:
    payload = parse_event(path.read_bytes(), cls, EXAMPLES_NOW)
    assert isinstance(payload, dict), payload
    assert role_for(payload) == cls.topic_role
    record = from_payload(payload)
    assert type(record) is cls
    assert event_type(record) == cls.type_name
    state = CustomerState(record.shop_id, record.customer_id)
    if cls.folds:
        assert apply(state, record)  # every type says how it changes customer state
    else:
        with pytest.raises(TypeError, match="no fact to fold"):
            apply(state, record)


def test_names_and_roles_are_unique_and_apart_from_the_output_roles() -> None:
    assert len(set(TYPE_NAMES)) == len(TYPE_NAMES) == len(EVENT_CLASSES)
    assert len(set(INPUT_ROLES)) == len(INPUT_ROLES) == len(EVENT_CLASSES)
    assert not set(INPUT_ROLES) & set(OUTPUT_ROLES)
    assert {cls.topic_role: cls for cls in EVENT_CLASSES} == EVENT_TYPES


def test_the_worker_subscribes_to_exactly_the_registrys_topics() -> None:
    settings = Settings()
    registry = {settings.topic(cls.topic_role): cls for cls in EVENT_CLASSES}
    assert input_event_types(settings) == registry
    # ... and to the segment definitions, which are not events, and the repartition topic
    internal = [settings.topic(DEFINITIONS_ROLE), settings.topic(REPARTITION_ROLE)]
    assert input_topics(settings) == [*registry, *internal]
    webhooks = [WEBHOOKS_ROLE, WEBHOOK_DEAD_LETTERS_ROLE]
    assert list(CREATED_ROLES) == [*INPUT_ROLES, *OUTPUT_ROLES, REPARTITION_ROLE, *webhooks]
    # The topics that existed before the registry keep their names.
    assert {"segstream.signups", "segstream.orders", "segstream.cancellations"} <= set(registry)


def test_settings_import_nothing_from_the_core() -> None:
    # segstream.domain imports segstream.settings; the reverse would be an import cycle.
    code = (
        "import sys, segstream.settings; "
        "print([m for m in sys.modules if m.startswith('service.') and m != 'segstream.settings'])"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_envelope_names_exactly_the_registrys_types() -> None:
    envelope = json.loads(schema_path("envelope").read_text(encoding="utf-8"))
    enum = envelope["$defs"]["event_type"]["enum"]
    assert enum == list(TYPE_NAMES), "schemas/v1/envelope.json $defs/event_type: edit its enum"


def test_the_topic_table_of_the_concepts_page_is_every_topic_and_each_input_schema() -> None:
    settings = Settings()
    rows = {
        cells[0].split("`")[1]: cells[2]
        for line in (ROOT / "docs" / "concepts.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `segstream.")
        for cells in [line.strip("|").split(" | ")]
    }
    created = [settings.topic(role) for role in (*CREATED_ROLES, DEFINITIONS_ROLE)]
    assert sorted(rows) == sorted(created), "docs/concepts.md: the topic table"
    for cls in EVENT_CLASSES:
        assert rows[settings.topic(cls.topic_role)].startswith(f"`{cls.type_name}.json`")


LISTS_THE_TYPES = {
    "service/segstream/domain/events.py": "the registry itself (and its doctest)",
    "schemas/v1/envelope.json": "the event_type enum, checked above",
    "schemas/README.md": "the schema table, checked by tests/unit/test_schema_docs.py",
    "docs/concepts.md": "the topic table, checked above",
}
"""The only files that may list the input event types; each is derived or checked."""


def test_nothing_else_lists_the_input_event_types_by_hand() -> None:
    settings = Settings()
    found = listing(
        [
            list(TYPE_NAMES),
            list(INPUT_ROLES),
            [settings.topic(role).removeprefix("segstream.") for role in INPUT_ROLES],
        ]
    )
    assert set(found) <= set(LISTS_THE_TYPES), {
        path: lines[:3] for path, lines in found.items() if path not in LISTS_THE_TYPES
    }


def test_a_hand_list_is_found() -> None:
    text = "inputs: " + ", ".join(TYPE_NAMES[: int(len(TYPE_NAMES) * SHARE) + 1])
    assert hand_lists(f"intro\n{text}\n", list(TYPE_NAMES)) == [1, 2]
    assert hand_lists("a signup, an order\n", list(TYPE_NAMES)) == []
