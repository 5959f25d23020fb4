"""Registration bodies, topic records, matching, and the directory the readers keep."""

from __future__ import annotations

import json
from typing import Any

import pytest

from segstream.observability import telemetry
from segstream.webhooks.directory import WebhookDirectory
from segstream.webhooks.registry import (
    Webhook,
    WebhookError,
    checked_body,
    record_key,
    revised,
)
from segstream.webhooks.signing import new_secret

SHOP = "coffee-roaster-1"


def webhook(**changes: Any) -> Webhook:
    fields: dict[str, Any] = {
        "shop_id": SHOP,
        "webhook_id": "wh_0123456789abcdef",
        "url": "https://hooks.example.com/a",
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "version": 1,
    }
    return Webhook(**(fields | changes))


def change(**changes: Any) -> dict[str, Any]:
    base = {"event_id": "e", "shop_id": SHOP, "customer_id": "c-1", "model": "lifecycle"}
    return base | {"previous": "active", "current": "at_risk"} | changes


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x.example/a"}, "url"),
        ({"url": "//x.example/a"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://a@x.example/"}, "url"),
        ({"url": "https://x.example/#frag"}, "url"),
        ({"url": "https://x.example:99999/"}, "url"),
        ({"url": "http://localhost:8080/"}, "url"),
        ({"url": "http://[::1]/"}, "url"),
        ({"url": "http://192.168.1.4/"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": 5}, "url"),
        ({"url": "https://x.example/" + "a" * 2100}, "url"),
        ({"url": "https://x.example/", "models": ["nope"]}, "models"),
        ({"url": "https://x.example/", "models": "rfm"}, "models"),
        ({"url": "https://x.example/", "segments": [""]}, "segments"),
        ({"url": "https://x.example/", "segments": ["a"] * 65}, "segments"),
        ({"url": "https://x.example/", "description": 3}, "description"),
        ({"url": "https://x.example/", "extra": 1}, "extra"),
    ],
)
def test_a_bad_body_names_its_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(WebhookError) as raised:
        checked_body(body, allow_private=False)
    assert raised.value.path == field


def test_a_good_body_keeps_known_models_and_distinct_segments() -> None:
    body = {
        "url": "https://hooks.example.com/a?x=1",
        "models": ["rfm", "defined:vegan-city", "rfm"],
        "segments": ["Champions", "At Risk", "Champions"],
    }
    wanted = checked_body(body, allow_private=False)
    assert wanted["models"] == ("rfm", "defined:vegan-city")
    assert wanted["segments"] == ("Champions", "At Risk")
    assert checked_body({"url": "http://127.0.0.1:9/h"}, allow_private=True)["url"]


def test_an_endpoint_matches_its_shop_models_and_segments_entered_left_or_formed() -> None:
    assert webhook().matches(change())
    assert not webhook().matches(change(shop_id="tea-house-1"))
    assert webhook(models=("lifecycle",)).matches(change())
    assert not webhook(models=("rfm",)).matches(change())
    assert webhook(segments=("at_risk",)).matches(change())  # entered
    assert webhook(segments=("active",)).matches(change())  # left
    assert not webhook(segments=("loyal",)).matches(change())
    formed = {"event_id": "f", "shop_id": SHOP, "model": "cluster", "segment": "c5"}
    assert webhook(segments=("c5",)).matches(formed)


def test_a_replace_is_the_next_version_with_the_same_secret() -> None:
    first = webhook(models=("rfm",))
    second = revised(first, {"url": "https://hooks.example.com/b"}, allow_private=False)
    assert (second.version, second.secret, second.models) == (2, first.secret, ())


def record(hook: Webhook) -> bytes:
    return json.dumps(hook.to_record()).encode()


def test_the_directory_applies_newer_versions_ignores_stale_ones_and_deletes() -> None:
    directory = WebhookDirectory()
    hook = webhook(secret=new_secret())
    key = record_key(SHOP, hook.webhook_id)
    directory.apply(key, record(hook))
    directory.apply(key, record(revised(hook, {"url": "https://x.example/2"}, False)))
    directory.apply(key, record(hook))  # a concurrent write that lost: version 1 again
    assert directory.get(SHOP, hook.webhook_id).url == "https://x.example/2"  # type: ignore[union-attr]
    assert [w.webhook_id for w in directory.matching(change())] == [hook.webhook_id]
    directory.apply(key, None)
    assert directory.of_shop(SHOP) == [] and directory.matching(change()) == []
    directory.apply(key, record(hook))  # version 1 never comes back after version 2
    assert directory.of_shop(SHOP) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"coffee-roaster-1|wh_0123456789abcdef", b"not json"),
        (b"coffee-roaster-1|wh_0123456789abcdef", b"[1]"),
        (b"coffee-roaster-1|wh_0123456789abcdef", b'{"kind": "webhook"}'),
        (b"no-separator", b"{}"),
        (None, b"{}"),
        (b"\xff|x", b"{}"),
        (b"tea-house-1|wh_0123456789abcdef", None),  # the value names another shop below
    ],
)
def test_a_malformed_record_is_skipped_and_counted_never_raised(
    key: bytes | None, value: bytes | None
) -> None:
    directory = WebhookDirectory()
    before = telemetry.WEBHOOK_RECORDS_SKIPPED._value.get()
    if value is None:  # a good record under a key of another endpoint
        value = record(webhook())
    assert directory.apply(key, value) is None
    assert directory.of_shop(SHOP) == [] and directory.endpoints() == 0
    assert telemetry.WEBHOOK_RECORDS_SKIPPED._value.get() == before + 1


def test_a_record_with_a_bad_secret_is_skipped() -> None:
    bad = {**webhook().to_record(), "secret": "whsec_!!"}
    directory = WebhookDirectory()
    assert (
        directory.apply(record_key(SHOP, "wh_0123456789abcdef"), json.dumps(bad).encode()) is None
    )
    assert directory.endpoints() == 0
