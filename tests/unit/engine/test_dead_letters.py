"""segstream.domain.changes.DeadLetter: small originals are kept whole, big ones bounded."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest

from segstream.domain.changes import DEAD_LETTER_KEEP_BYTES, DeadLetter, Source
from segstream.domain.contracts import DETAIL_MAX_CHARS, schema_path, validate_output

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
SOURCE = Source("segstream.orders", 3, 18231)
KEEP = DEAD_LETTER_KEEP_BYTES


def _payload(value: bytes | None, key: bytes | None = b"roastery-42") -> dict[str, object]:
    payload = DeadLetter("too_large", "value is big", SOURCE, key, value).to_json(NOW)
    validate_output("dead_letter", payload)
    return payload


def test_keep_limit_is_64_kib() -> None:
    assert KEEP == 64 * 1024


@pytest.mark.parametrize("size", [0, 1, 240, KEEP - 1, KEEP])
def test_values_up_to_the_limit_are_kept_whole(size: int) -> None:
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    payload = _payload(value)
    assert base64.b64decode(str(payload["original_value_b64"])) == value
    assert payload["original_value_bytes"] == size
    assert payload["original_value_sha256"] == hashlib.sha256(value).hexdigest()
    assert payload["original_value_truncated"] is False
    assert payload["original_key_truncated"] is False
    assert "original_key_bytes" not in payload and "original_key_sha256" not in payload


@pytest.mark.parametrize("size", [KEEP + 1, 70_000, 900_000, 1_048_576])
def test_bigger_values_keep_their_first_64_kib_with_size_and_digest(size: int) -> None:
    value = b'{"type": "order", "pad": "' + b"x" * size
    value = value[:size]
    payload = _payload(value)
    assert base64.b64decode(str(payload["original_value_b64"])) == value[:KEEP]
    assert payload["original_value_bytes"] == size
    assert payload["original_value_sha256"] == hashlib.sha256(value).hexdigest()
    assert payload["original_value_truncated"] is True
    assert len(json.dumps(payload)) < 120_000  # far below the producer's 1 MB request limit


def test_a_null_value_is_empty_and_a_missing_key_is_null() -> None:
    payload = _payload(None, key=None)
    assert payload["original_value_b64"] == ""
    assert payload["original_value_bytes"] == 0
    assert payload["original_value_sha256"] == hashlib.sha256(b"").hexdigest()
    assert payload["original_value_truncated"] is False
    assert payload["original_key_b64"] is None
    assert payload["original_key_truncated"] is False


def test_a_key_over_the_limit_is_truncated_with_its_size_and_digest() -> None:
    key = b"k" * (KEEP + 10)
    payload = _payload(b"{}", key=key)
    assert base64.b64decode(str(payload["original_key_b64"])) == key[:KEEP]
    assert payload["original_key_truncated"] is True
    assert payload["original_key_bytes"] == KEEP + 10
    assert payload["original_key_sha256"] == hashlib.sha256(key).hexdigest()
    assert payload["original_value_truncated"] is False


def test_worst_case_dead_letter_stays_bounded() -> None:
    letter = DeadLetter(
        "processing_error",
        "\u202e" * 5000,  # capped to DETAIL_MAX_CHARS, each char escaped as 6 bytes
        Source("t" * 249, 2**31 - 1, 2**63 - 1),
        b"\xff" * 900_000,
        b"\x00" * 950_000,
    )
    payload = letter.to_json(NOW)
    validate_output("dead_letter", payload)
    assert payload["detail"] == "\u202e" * DETAIL_MAX_CHARS
    assert len(json.dumps(payload).encode()) < 200_000


def test_every_schema_property_is_produced() -> None:
    payload = _payload(b"x" * (KEEP + 1), key=b"y" * (KEEP + 1))
    schema = json.loads(schema_path("dead_letter").read_text(encoding="utf-8"))
    assert set(payload) == set(schema["properties"])
    assert set(schema["required"]) <= set(_payload(b"{}"))
