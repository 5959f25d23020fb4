"""The Faust application, configured from :class:`~segstream.settings.Settings`."""

from __future__ import annotations

from typing import Any

import faust

from segstream.observability.logs import logging_config
from segstream.settings import Settings
from segstream.stream import faust_patches
from segstream.stream.kafka import connection_options, ssl_context

COMMIT_CHECK_OFF_S = 100 * 365 * 24 * 3600.0
"""Faust's commit livelock check, off in effect (a century)."""


def create_app(settings: Settings) -> faust.App:
    """A Faust app whose every knob comes from ``settings`` (no Faust defaults by surprise:
    web on loopback, quick failure detection, no standby unless asked)."""
    faust_patches.apply(connection_options(settings), settings.kafka_wait_s)
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir / settings.app_id),
        web_host=settings.advertised_host,  # Faust's canonical URL, what peers are told
        web_bind=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        processing_guarantee="at_least_once",  # segstream commits itself (stream/checkpoint)
        # Faust's livelock check times Faust's own commits, which segstream never makes: it
        # warned "Has not committed TP at all since worker start" again and again once a
        # worker had run 5 minutes (long backfills). A stalled partition is segstream's
        # watchdog's (stream/watchdog.py) and its alert's to name.
        broker_commit_livelock_soft_timeout=COMMIT_CHECK_OFF_S,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        broker_request_timeout=settings.broker_request_timeout_s,
        table_standby_replicas=settings.table_standby_replicas,
        consumer_auto_offset_reset="earliest",
        logging_config=logging_config(settings),
        web_enabled=True,
    )


def _credentials(settings: Settings) -> Any:
    """Faust's credentials for the configured security protocol (None: plaintext)."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if not protocol.startswith("SASL"):
        return None if context is None else faust.SSLCredentials(context)
    password = settings.kafka_password.get_secret_value() if settings.kafka_password else None
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )
