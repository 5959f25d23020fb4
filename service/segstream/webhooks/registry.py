"""A registered webhook endpoint: what a shop asks for (URL, which models and segments),
checked; and its record on the compacted webhooks topic (key ``<shop>|<webhook_id>``, a
tombstone deletes it).

The record holds the signing secret: the API shows it once, when the endpoint is created,
and never again; the delivery process reads it from the topic (restrict who may read it).
A record that breaks this shape is skipped by its readers, never a crash.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from segstream.segments import available_models
from segstream.webhooks.signing import SECRET_PREFIX, key_of

SCHEMA_VERSION = 1
KIND = "webhook"
URL_MAX_CHARS = 2048
FILTER_MAX_ITEMS = 64
NAME_MAX_CHARS = 128
WEBHOOK_ID = re.compile(r"wh_[0-9a-f]{16}")
"""Webhook ids the server assigns (``wh_`` and 16 hex digits)."""
DEFINED_MODEL = re.compile(r"defined:[a-z0-9][a-z0-9_-]{0,63}")
BODY_FIELDS = frozenset({"url", "models", "segments", "description"})
"""What a create or replace body may hold."""


class WebhookError(ValueError):
    """A registration body that cannot be an endpoint (HTTP 422), naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.path = field


@dataclass(frozen=True, slots=True)
class Webhook:
    """One endpoint of one shop. Empty ``models``/``segments``: every one."""

    shop_id: str
    webhook_id: str
    url: str
    secret: str
    version: int
    models: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    description: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """Its identity across versions: (shop, webhook id)."""
        return self.shop_id, self.webhook_id

    def matches(self, change: Mapping[str, Any]) -> bool:
        """Whether ``change`` (a record of the change topic) is for this endpoint: its shop,
        one of its models, and one of its segments entered, left or formed."""
        if change.get("shop_id") != self.shop_id:
            return False
        if self.models and change.get("model") not in self.models:
            return False
        if not self.segments:
            return True
        touched = (change.get("previous"), change.get("current"), change.get("segment"))
        return any(segment in self.segments for segment in touched if segment is not None)

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but the secret."""
        return {
            "webhook_id": self.webhook_id,
            "shop_id": self.shop_id,
            "url": self.url,
            "models": list(self.models),
            "segments": list(self.segments),
            "description": self.description,
            "version": self.version,
        }

    def to_record(self) -> dict[str, Any]:
        """The topic record (secret included)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            **self.public(),
            "secret": self.secret,
        }


def record_key(shop_id: str, webhook_id: str) -> bytes:
    """The record key on the webhooks topic."""
    return f"{shop_id}|{webhook_id}".encode()


def new_id() -> str:
    """A fresh webhook id."""
    return f"wh_{uuid.uuid4().hex[:16]}"


def from_record(value: Mapping[str, Any]) -> Webhook:
    """The endpoint a topic record holds (WebhookError when it is not one)."""
    if value.get("kind") != KIND or value.get("schema_version") != SCHEMA_VERSION:
        raise WebhookError("kind", "not a webhook record of schema version 1")
    version, secret = value.get("version"), value.get("secret")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise WebhookError("version", "must be an integer from 1")
    if not isinstance(secret, str) or not _is_secret(secret):
        raise WebhookError("secret", "must be a whsec_ secret")
    webhook_id, shop_id = value.get("webhook_id"), value.get("shop_id")
    if not isinstance(webhook_id, str) or not WEBHOOK_ID.fullmatch(webhook_id):
        raise WebhookError("webhook_id", "not a webhook id")
    if not isinstance(shop_id, str) or not shop_id:
        raise WebhookError("shop_id", "must be a shop id")
    wanted = checked_body(value, allow_private=True, allowed=BODY_FIELDS | RECORD_FIELDS)
    return Webhook(shop_id, webhook_id, secret=secret, version=version, **wanted)


RECORD_FIELDS = frozenset({"schema_version", "kind", "webhook_id", "shop_id", "version", "secret"})


def _is_secret(secret: str) -> bool:
    try:
        return secret.startswith(SECRET_PREFIX) and len(key_of(secret)) >= 16
    except ValueError:
        return False


def checked_body(
    body: Mapping[str, Any], allow_private: bool, allowed: frozenset[str] = BODY_FIELDS
) -> dict[str, Any]:
    """``url``, ``models``, ``segments`` and ``description`` of a create or replace body,
    checked (WebhookError naming the first bad field)."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise WebhookError(unknown[0][:NAME_MAX_CHARS], "not a field of a webhook")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise WebhookError("description", "must be a string of at most 500 characters")
    return {
        "url": checked_url(body.get("url"), allow_private),
        "models": _models(body.get("models", [])),
        "segments": _names(body.get("segments", []), "segments"),
        "description": description,
    }


def checked_url(url: Any, allow_private: bool) -> str:
    """An absolute http(s) URL with a host, no credentials, no fragment; a loopback or
    private address only with ``allow_private``."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX_CHARS:
        raise WebhookError("url", f"must be an http(s) URL of at most {URL_MAX_CHARS} characters")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise WebhookError("url", "is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise WebhookError("url", "must be an absolute http:// or https:// URL with a host")
    if parts.username is not None or parts.fragment or any(c.isspace() for c in url):
        raise WebhookError("url", "must carry no credentials, fragment or white space")
    if not allow_private and _private(host):
        raise WebhookError("url", "must not name localhost or a private address")
    return url


def _private(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def _models(models: Any) -> tuple[str, ...]:
    """Known segment models (built-in, or ``defined:<segment_id>``)."""
    names = _names(models, "models")
    known = available_models()
    for name in names:
        if name not in known and not DEFINED_MODEL.fullmatch(name):
            listed = ", ".join(known)
            raise WebhookError("models", f"unknown model {name!r} (one of {listed}, defined:<id>)")
    return names


def _names(values: Any, field: str) -> tuple[str, ...]:
    """A list of distinct non-empty strings, at most FILTER_MAX_ITEMS."""
    if not isinstance(values, list) or len(values) > FILTER_MAX_ITEMS:
        raise WebhookError(field, f"must be a list of at most {FILTER_MAX_ITEMS} names")
    for value in values:
        if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX_CHARS:
            raise WebhookError(field, f"each must be a string of 1 to {NAME_MAX_CHARS} characters")
    return tuple(dict.fromkeys(values))


def revised(webhook: Webhook, body: Mapping[str, Any], allow_private: bool) -> Webhook:
    """``webhook`` replaced by a PUT body: the next version, same id and secret."""
    return replace(webhook, version=webhook.version + 1, **checked_body(body, allow_private))
