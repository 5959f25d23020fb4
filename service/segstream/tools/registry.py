"""``segstream registry --url URL``: register segstream's input schemas in a
schema registry (Confluent's REST API: Confluent Schema Registry, Karapace, Apicurio's
compatible API, Redpanda) and print the ``SEGSTREAM_SCHEMA_REGISTRY_IDS`` to give workers.

Platforms whose producers frame records for a registry (magic byte 0, a 4-byte schema id,
then the JSON: what Confluent's ``JSONSerializer`` writes) need the schemas registered.
The shared envelope goes under subject ``segstream-envelope``; each input type's schema
under ``<topic>-value`` (the serializers' default subject name), referring to the envelope
as ``envelope.json``, the name its ``$ref``s use. Registering the same schema again
returns its id, so the command can run on every deployment. Needs
``confluent-kafka[schemaregistry]`` (not a worker dependency).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from segstream.domain.contracts import EVENT_TYPES, schema_path
from segstream.settings import ConfigError, Settings, load_settings
from segstream.tools.command import parser_for

ENVELOPE_SUBJECT = "segstream-envelope"
"""The subject of the envelope schema every input schema refers to."""


def register(client: Any, settings: Settings) -> dict[str, list[int]]:
    """Register the envelope and every input type's schema with ``client`` (a
    ``confluent_kafka.schema_registry.SchemaRegistryClient``); each type's id."""
    from confluent_kafka.schema_registry import Schema, SchemaReference

    envelope = Schema(schema_path("envelope").read_text(encoding="utf-8"), "JSON")
    client.register_schema(ENVELOPE_SUBJECT, envelope)
    version = client.lookup_schema(ENVELOPE_SUBJECT, envelope).version
    reference = SchemaReference("envelope.json", ENVELOPE_SUBJECT, version)
    ids = {}
    for role, kind in EVENT_TYPES.items():
        text = schema_path(kind.type_name).read_text(encoding="utf-8")
        subject = f"{settings.topic(role)}-value"
        ids[kind.type_name] = [client.register_schema(subject, Schema(text, "JSON", [reference]))]
    return ids


def main(argv: list[str] | None = None, connect: Callable[[str], Any] | None = None) -> int:
    """Command-line entry point (``connect``: how to reach the registry, for tests)."""
    parser = parser_for("registry", __doc__)
    parser.add_argument("--url", required=True, help="the registry's URL")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        client = (connect or _client)(args.url)
        ids = register(client, settings)
    except ImportError:
        print("registry: needs confluent-kafka[schemaregistry] (pip install it)", file=sys.stderr)
        return 2
    except Exception as error:  # the registry refused or cannot be reached: say so
        print(f"registry: {args.url}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"SEGSTREAM_SCHEMA_REGISTRY_IDS='{json.dumps(ids, separators=(',', ':'))}'")
    return 0


def _client(url: str) -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": url})


if __name__ == "__main__":
    sys.exit(main())
