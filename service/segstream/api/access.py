"""Who may ask what: bearer tokens scoped to one shop or to the platform, and a request
rate per token.

Tokens are random strings the platform hands out (``segstream token``); the
settings hold only their SHA-256 (``SEGSTREAM_API_TOKENS``, and a file read again when it
changes, ``SEGSTREAM_API_TOKENS_FILE``: tokens added or revoked without a restart), so a
leaked configuration gives no token. A shop route answers a token of that shop or of the
platform; any other token is 403 with no data, whether the shop exists or not. A missing
or unknown token is 401. Each worker lets each token make ``api_rate_per_s`` requests per
second on average, ``api_burst`` at once (a token bucket); beyond that 429 with
``Retry-After``. Operations routes (``/metrics``, ``/healthz``, ``/ready``,
``/openapi.json``) and the console's page and files (``/console``: the browser reads the
API with the viewer's token) carry no customer data and stay open.

>>> access = Access({token_hash("t-1"): "shop:tea-1"}, rate_per_s=1.0, burst=10)
>>> access.check("Bearer t-1", "tea-1") is None
True
>>> access.check("Bearer t-1", "coffee-2").status
403
>>> access.check(None, "tea-1").status
401
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from segstream.observability.logs import get_logger
from segstream.settings import Settings, read_grants

log = get_logger(__name__)

PLATFORM = "platform"
"""The scope of a token that may read every shop."""
NO_SHOP = ""
"""What :meth:`Access.only_shop` answers for a token that may read no shop (no shop id
is empty)."""
SCOPE = re.compile(r"^(platform|shop:[^\s/|]{1,128})$")
"""A token's scope: ``platform`` or ``shop:<shop_id>``."""
TOKEN_HASH = re.compile(r"^[0-9a-f]{64}$")


def token_hash(token: str) -> str:
    """What the settings keep of a token: its SHA-256, hex (tokens are random, long and
    never reused, so an unsalted hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return f"sst_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a request is refused: status, error code, a message, and for 429 when to retry."""

    status: int
    error: str
    detail: str
    retry_after_s: int | None = None

    def headers(self) -> dict[str, str]:
        """``WWW-Authenticate`` for 401, ``Retry-After`` for 429."""
        if self.status == 401:
            return {"WWW-Authenticate": 'Bearer realm="segstream"'}
        if self.retry_after_s is not None:
            return {"Retry-After": str(self.retry_after_s)}
        return {}


class TokenFile:
    """A file of tokens (``SEGSTREAM_API_TOKENS_FILE``) read again when it changes: its
    modification time or size is looked at no more than once per ``every_s``. A change
    that cannot be read (half written, broken JSON) is logged and the tokens read before
    stay, so a bad edit never locks every client out."""

    def __init__(self, path: Path, clock: Callable[[], float], every_s: float = 1.0) -> None:
        self.path = path
        self.clock = clock
        self.every_s = every_s
        self._grants: dict[str, str] = read_grants(path)
        self._seen = self._stamp()
        self._looked = clock()

    def grants(self) -> dict[str, str]:
        """The tokens the file grants now."""
        now = self.clock()
        if now - self._looked >= self.every_s:
            self._looked = now
            stamp = self._stamp()
            if stamp != self._seen:
                self._seen = stamp
                self._reload()
        return self._grants

    def _stamp(self) -> tuple[int, int] | None:
        try:
            found = self.path.stat()
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def _reload(self) -> None:
        try:
            self._grants = read_grants(self.path)
        except ValueError as error:
            log.warning("api_tokens_file_unreadable", path=str(self.path), problem=str(error))
            return
        log.info("api_tokens_file_read", path=str(self.path), tokens=len(self._grants))


class Access:
    """The tokens a worker accepts (by hash) with their scopes, and their rate buckets."""

    def __init__(
        self,
        grants: Mapping[str, str],
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        open_api: bool = False,
        token_file: Path | None = None,
    ) -> None:
        self.grants = dict(grants)
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.open_api = open_api
        self.token_file = None if token_file is None else TokenFile(token_file, clock)
        self._buckets: dict[str, tuple[float, float]] = {}
        """Per token hash: (tokens left, when counted); one entry per token used."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        """The tokens, rate and openness this deployment configures."""
        return cls(
            settings.api_tokens,
            settings.api_rate_per_s,
            settings.api_burst,
            open_api=settings.api_open,
            token_file=settings.api_tokens_file,
        )

    def scope(self, digest: str) -> str | None:
        """The scope of the token with hash ``digest``: from the settings, else the file."""
        scope = self.grants.get(digest)
        if scope is None and self.token_file is not None:
            scope = self.token_file.grants().get(digest)
        return scope

    def check(self, authorization: str | None, shop_id: str | None) -> Denial | None:
        """None when the request may be answered; else why not. ``shop_id`` is None for
        routes of no shop (any valid token may ask them)."""
        if self.open_api:
            return None
        token = _bearer(authorization)
        if token is None:
            return Denial(401, "unauthorized", "send the header Authorization: Bearer <token>")
        digest = token_hash(token)
        scope = self.scope(digest)
        if scope is None:
            return Denial(401, "unauthorized", "unknown or revoked token")
        wait = self._take(digest)
        if wait > 0:
            detail = f"more than {self.rate_per_s:g} requests per second with this token"
            return Denial(429, "too_many_requests", detail, max(1, math.ceil(wait)))
        if shop_id is not None and scope not in (PLATFORM, f"shop:{shop_id}"):
            return Denial(403, "forbidden", "this token may not read this shop")
        return None

    def only_shop(self, authorization: str | None) -> str | None:
        """The one shop a valid token may read (None: every shop, a platform token or an
        open API; :data:`NO_SHOP` for a token that is not, or no longer, valid); call
        after :meth:`check` let the request through."""
        if self.open_api:
            return None
        token = _bearer(authorization)
        scope = None if token is None else self.scope(token_hash(token))
        if scope is None:
            return NO_SHOP  # revoked since check(): fail closed
        return None if scope == PLATFORM else scope.removeprefix("shop:")

    def _take(self, digest: str) -> float:
        """Take one request from the token's bucket: 0, or seconds until one is free."""
        now = self.clock()
        tokens, then = self._buckets.get(digest, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[digest] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s
        self._buckets[digest] = (tokens - 1.0, now)
        return 0.0


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    kind, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if kind.lower() == "bearer" and token else None
