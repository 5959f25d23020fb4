"""Connection options every Kafka client of segstream uses (worker, tools, probes)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
)
from aiokafka.helpers import create_ssl_context

from segstream.observability.logs import get_logger
from segstream.settings import Settings

T = TypeVar("T")

RETRY_S = 1.0
"""Pause between two tries of a call that found no broker."""


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS towards the brokers: their certificates checked against the configured CA (or
    the system's), host names checked."""
    cafile = settings.kafka_ssl_cafile
    context: ssl.SSLContext = create_ssl_context(cafile=None if cafile is None else str(cafile))
    return context


log = get_logger(__name__)


class CredentialsRefusedError(Exception):
    """The broker refused the configured TLS or SASL credentials: retrying cannot help."""


async def check_credentials(settings: Settings) -> None:
    """Connect to the first bootstrap server with the configured security, and raise
    :class:`CredentialsRefusedError` with what to fix when the TLS handshake or the SASL
    authentication fails (aiokafka's clients only say "unable to bootstrap"); any other
    failure (the broker is down) is left to the caller's retries."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    options = connection_options(settings)
    del options["bootstrap_servers"]
    try:
        connection = await create_conn(host, int(port), **options)
    except SaslAuthenticationFailed:
        raise CredentialsRefusedError(
            f"Kafka at {host}:{port} refused the authentication of user "
            f"{settings.kafka_username!r} ({settings.kafka_sasl_mechanism}): check "
            "SEGSTREAM_KAFKA_USERNAME and SEGSTREAM_KAFKA_PASSWORD"
        ) from None
    except ssl.SSLError as error:
        raise CredentialsRefusedError(
            f"TLS to Kafka at {host}:{port} failed ({error.reason or error}): check "
            "SEGSTREAM_KAFKA_SSL_CAFILE (the CA that signed the brokers' certificates)"
        ) from None
    except (OSError, KafkaError):
        return
    connection.close()


def connection_options(settings: Settings) -> dict[str, Any]:
    """aiokafka client arguments for the configured bootstrap servers and security."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": int(settings.broker_request_timeout_s * 1000),
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` comes down to a broker not reached: a connection refused or closed,
    a node not ready, a request timed out. aiokafka 0.14 wraps a connection closed during
    its transaction coordinator lookup in a bare ``KafkaError`` (``Sender._find_coordinator``
    retries only CoordinatorNotAvailable, NodeNotReady and RequestTimedOut), so the cause
    chain is read."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, KafkaConnectionError | NodeNotReadyError | RequestTimedOutError):
            return True
        seen = seen.__cause__
    return False


async def wait_for_broker(
    call: Callable[[], Awaitable[T]],
    wait_s: float,
    what: str,
    stopping: Callable[[], bool] = lambda: False,
) -> T:
    """``call()``, tried again every :data:`RETRY_S` for up to ``wait_s`` while it fails
    because no broker is reached (a broker restarting, a connection reset), unless
    ``stopping()``; any other error, or the last one, is raised. The first wait is logged
    once (``what`` names the call)."""
    loop = asyncio.get_running_loop()
    deadline, logged = loop.time() + wait_s, False
    while True:
        try:
            return await call()
        except KafkaError as error:
            if not unreachable(error) or stopping() or loop.time() + RETRY_S > deadline:
                raise
            if not logged:
                log.warning("waiting_for_broker", call=what, error=repr(error), up_to_s=wait_s)
                logged = True
            await asyncio.sleep(RETRY_S)
