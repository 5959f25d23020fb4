"""Connection options every Kafka client of segstream uses (worker, tools, probes)."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from service.settings import Settings


def connection_options(settings: Settings) -> dict[str, Any]:
    """aiokafka client arguments for the configured bootstrap servers and security."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": int(settings.broker_request_timeout_s * 1000),
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options
