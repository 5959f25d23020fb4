"""The one place segstream reads its configuration from.

Every setting is an environment variable with the ``SEGSTREAM_`` prefix
(``SEGSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:9092``); nothing else in the package reads
the environment. The object is frozen: a worker's configuration does not change
while it runs.

>>> Settings(kafka_bootstrap="127.0.0.1:19092").topic("orders")
'segstream.orders'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TopicRole = Literal[
    "signups",
    "orders",
    "cancellations",
    "segment_changes",
    "dead_letters",
    "metrics",
]


class Settings(BaseSettings):
    """Typed, validated, immutable worker settings (see README, "Settings")."""

    model_config = SettingsConfigDict(env_prefix="SEGSTREAM_", frozen=True, extra="forbid")

    app_id: str = Field("segstream", description="Faust app id: consumer group and table prefix.")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    topic_prefix: str = Field("segstream.", description="Prefix of every topic name.")
    topic_partitions: int = Field(8, ge=1, le=1024, description="Partitions of created topics.")
    topic_replication: int = Field(1, ge=1, le=16)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    store: Literal["memory", "rocksdb"] = Field(
        "rocksdb", description="Local table store; the changelog topic is the source of truth."
    )
    data_dir: Path = Field(Path("var/worker"), description="Per-worker data directory.")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    log_format: Literal["json", "console"] = "json"
    broker_session_timeout_s: float = Field(30.0, gt=0)
    broker_request_timeout_s: float = Field(90.0, gt=0)
    table_standby_replicas: int = Field(0, ge=0, le=8)
    dedup_window: int = Field(1000, ge=1, description="Event ids remembered per customer.")
    rescore_interval_hours: float = Field(
        24.0, gt=0, description="Stream time between full re-evaluations of a shop."
    )
    model_checkpoint_every: int = Field(
        100, ge=1, description="Events of a shop between checkpoints of its learned models."
    )
    rfm_min_customers: int = Field(
        10, ge=1, description="Buying customers a shop needs before RFM quintiles mean anything."
    )
    lifecycle_new_days: int = Field(30, ge=1)
    lifecycle_at_risk_days: int = Field(45, ge=1)
    lifecycle_churned_days: int = Field(90, ge=1)
    lifecycle_loyal_min_repeat_days: int = Field(4, ge=1)
    lifecycle_won_back_days: int = Field(30, ge=1)
    lifecycle_cadence_multiple: float = Field(
        2.5, gt=1, description="A gap this many times the customer's own cadence is at risk."
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port, got {server!r}")
        return value

    def topic(self, role: TopicRole) -> str:
        """Full name of the topic that plays ``role``."""
        return f"{self.topic_prefix}{role.replace('_', '-')}"


class ConfigError(Exception):
    """Raised with a readable message when the environment holds bad settings."""


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings()
    except ValidationError as error:
        lines = [
            f"  SEGSTREAM_{'_'.join(str(p) for p in issue['loc']).upper()}: {issue['msg']}"
            for issue in error.errors()
        ]
        raise ConfigError("invalid segstream settings:\n" + "\n".join(lines)) from None
