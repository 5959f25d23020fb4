"""Signatures as the Standard Webhooks specification defines them, checked against its
reference implementation (the ``standardwebhooks`` package)."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook as Reference
from standardwebhooks import WebhookVerificationError

from segstream.webhooks import signing


def test_a_new_secret_is_whsec_and_24_random_bytes() -> None:
    secrets = {signing.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24


def test_the_reference_implementation_verifies_our_headers() -> None:
    secret = signing.new_secret()
    body = b'{"event_id": "e-1", "kind": "segment_changed", "note": "caf\\u00e9 \xc3\xa9"}'
    headers = signing.headers(secret, "e-1", int(time.time()), body)
    assert Reference(secret).verify(body, headers)["event_id"] == "e-1"
    assert headers["webhook-id"] == "e-1" and headers["content-type"] == "application/json"


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_the_reference_implementation_refuses_anything_changed(tamper: str) -> None:
    secret, body, stamp = signing.new_secret(), b'{"event_id": "e-1"}', int(time.time())
    headers = signing.headers(secret, "e-1", stamp, body)
    if tamper == "body":
        body = b'{"event_id": "e-2"}'
    elif tamper == "id":
        headers["webhook-id"] = "e-2"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(stamp - 1)
    else:
        secret = signing.new_secret()
    with pytest.raises(WebhookVerificationError):
        Reference(secret).verify(body, headers)


def test_a_secret_without_its_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing.sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, b"{}")
