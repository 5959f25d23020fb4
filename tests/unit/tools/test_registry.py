"""Schema-registry framing: the input schemas registered as a registry holds them, and the
records Confluent's own JSONSerializer writes against them read back, with their ids
checked when the worker lists them.

The registry is confluent-kafka's ``MockSchemaRegistryClient`` (the library's in-memory
registry); the serializer is the library's real one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
    MockSchemaRegistryClient,
)
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from segstream.domain.contracts import EVENT_TYPES, EXAMPLE_DIR, Rejection, parse_event, schema_path
from segstream.domain.events import Order, Signup
from segstream.settings import Settings
from segstream.tools import registry

SETTINGS = Settings()


def example(type_name: str) -> dict[str, Any]:
    path = sorted((EXAMPLE_DIR / type_name / "valid").glob("*.json"))[0]
    event: dict[str, Any] = json.loads(path.read_text())
    event["occurred_at"] = "2026-03-01T09:30:00Z"
    return event


def framed(client: Any, role: str, event: dict[str, Any]) -> bytes:
    """``event`` as a platform's Confluent JSONSerializer writes it to ``role``'s topic."""
    kind = EVENT_TYPES[role].type_name
    reference = SchemaReference("envelope.json", registry.ENVELOPE_SUBJECT, 1)
    schema = Schema(schema_path(kind).read_text(), "JSON", [reference])
    serializer = JSONSerializer(schema, client, conf={"auto.register.schemas": False})
    topic = SETTINGS.topic(role)
    return bytes(serializer(event, SerializationContext(topic, MessageField.VALUE)))


@pytest.fixture
def client() -> Any:
    return MockSchemaRegistryClient({"url": "mock://segstream"})


def test_every_input_schema_is_registered_under_its_topic_with_the_envelope(client: Any) -> None:
    ids = registry.register(client, SETTINGS)
    assert set(ids) == {kind.type_name for kind in EVENT_TYPES.values()}
    assert len({i for found in ids.values() for i in found}) == len(ids)
    assert registry.register(client, SETTINGS) == ids, "registering again returns the same ids"


def test_a_record_framed_by_confluents_serializer_is_read_and_its_id_checked(client: Any) -> None:
    ids = registry.register(client, SETTINGS)
    raw = framed(client, Order.topic_role, example("order"))
    assert raw[0] == 0 and int.from_bytes(raw[1:5], "big") == ids["order"][0]
    assert parse_event(raw, Order) == example("order")
    assert parse_event(raw, Order, schema_ids=ids) == example("order")
    elsewhere = {**ids, "order": ids["signup"]}  # the worker lists other ids for orders
    rejected = parse_event(raw, Order, schema_ids=elsewhere)
    assert isinstance(rejected, Rejection) and rejected.reason == "unknown_schema_id"
    assert f"schema id {ids['order'][0]}" in rejected.detail
    signup = parse_event(framed(client, Signup.topic_role, example("signup")), Order)
    assert isinstance(signup, Rejection) and signup.reason == "wrong_topic"


def test_the_command_prints_the_ids_to_give_the_workers(
    client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert registry.main(["--url", "mock://segstream"], connect=lambda url: client) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("SEGSTREAM_SCHEMA_REGISTRY_IDS='")
    ids = json.loads(line.split("=", 1)[1].strip("'"))
    assert Settings(schema_registry_ids=ids).schema_registry_ids == ids


def test_an_unreachable_registry_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(url: str) -> Any:
        raise ConnectionError("connection refused")

    assert registry.main(["--url", "http://127.0.0.1:1"], connect=refuse) == 1
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00", "undecodable"),
        (b"\x00\x00\x00\x07", "undecodable"),
        (b"\x00\x00\x00\x00\x07", "invalid_json"),
        (b"\x00\x00\x00\x00\x07not json", "invalid_json"),
    ],
)
def test_a_broken_frame_is_dead_lettered_with_a_clear_reason(raw: bytes, reason: str) -> None:
    rejected = parse_event(raw, Order)
    assert isinstance(rejected, Rejection) and rejected.reason == reason
