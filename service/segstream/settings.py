"""The one place segstream reads its configuration from.

Every setting is an environment variable with the ``SEGSTREAM_`` prefix
(``SEGSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:9092``); nothing else in the package reads
the environment. The object is frozen: a worker's configuration does not change
while it runs. A bad value is one line naming its variable (:func:`load_settings`); a
``SEGSTREAM_*`` variable that names no setting is reported too (:func:`unknown_variables`:
a misspelt one would otherwise leave its setting at the default, silently).

>>> Settings(kafka_bootstrap="127.0.0.1:19092").topic("orders")
'segstream.orders'
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

OutputRole = Literal["segment_changes", "segment_membership", "dead_letters", "metrics"]
"""Roles of the topics segstream writes. The input topics' roles are the event types'
(``segstream.domain.contracts.INPUT_ROLES``, from the event registry)."""
OUTPUT_ROLES: tuple[OutputRole, ...] = get_args(OutputRole)
DEFINITIONS_ROLE = "segment_definitions"
"""Role of the compacted topic of shop-defined segments (key ``<shop>|<segment>``): the
HTTP API writes it, the worker reads it beside the input events."""
WEBHOOKS_ROLE = "webhooks"
"""Role of the compacted topic of registered webhook endpoints (key ``<shop>|<webhook>``):
the HTTP API writes it, ``segstream webhooks`` reads it (it holds the signing secrets)."""
WEBHOOK_DEAD_LETTERS_ROLE = "webhook_dead_letters"
"""Role of the topic of changes ``segstream webhooks`` could not deliver (retry budget
spent, or the endpoint's queue full), with the endpoint and the last response."""
REPARTITION_ROLE = "repartition"
"""Role of the internal topic that takes a record found outside its shop's partition (its
producer's partitioner is not Kafka's murmur2 over the shop id) on to that partition: the
worker writes and reads it, nobody else."""


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})
"""Bind addresses that mean "every interface": never an address to give peers."""
PREFIX = "SEGSTREAM_"
RESERVED_PREFIXES = (f"{PREFIX}TEST_",)
"""Variables of the test harness (``SEGSTREAM_TEST_KAFKA_PORT``), no worker settings."""
KAFKA_NAME = r"^[A-Za-z0-9._-]*$"
"""Characters Kafka allows in topic names and segstream in names it derives them from."""
HOST = r"^[A-Za-z0-9._:%\[\]-]*$"
"""A host name, an IPv4 or IPv6 address (empty: every interface)."""
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", re.I)
"""A time setting's form: RFC 3339 with an offset (not a bare number, which pydantic
would read as seconds since 1970)."""
EARLIEST_YEAR = 1900
"""The event schemas' timestamps start at year 1900."""


class KafkaSettings(BaseSettings):
    """The brokers, how to reach them, and the topics' names."""

    app_id: str = Field(
        "segstream",
        min_length=1,
        max_length=200,
        pattern=KAFKA_NAME,
        description="Faust app id: consumer group and table prefix.",
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    kafka_wait_s: float = Field(
        60.0, ge=0, description="How long a starting worker waits for an unreachable broker."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA the brokers' certificates are checked against (SSL "
        "and SASL_SSL; unset: the system's CAs).",
    )
    kafka_username: str | None = Field(
        None, min_length=1, description="SASL user name (SASL only)."
    )
    kafka_password: SecretStr | None = Field(
        None, min_length=1, description="SASL password (SASL only; never printed)."
    )
    topic_prefix: str = Field(
        "segstream.", max_length=200, pattern=KAFKA_NAME, description="Prefix of every topic name."
    )
    topic_partitions: int = Field(8, ge=1, le=1024, description="Partitions of created topics.")
    topic_replication: int = Field(1, ge=1, le=16, description="Replicas of created topics.")

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _cafile_is_a_file(cls, value: Path | None) -> Path | None:
        """Not pydantic's FilePath: its check raises OSError on a name too long for the file
        system, a traceback instead of a line (as for NewPath: pydantic/pydantic#10207)."""
        if value is None:
            return None
        try:
            found = value.is_file()
        except OSError as error:
            raise ValueError(f"cannot be read ({error.strerror})") from None
        if not found:
            raise ValueError("no such file (the PEM file of the brokers' CA)")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for number, server in enumerate(value.split(","), 1):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...]; entry {number} is not")
        return value


class ProcessingSettings(BaseSettings):
    """Batches, producers, the local table store and retries: how records are
    processed and committed."""

    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "exactly_once",
        description="exactly_once: a batch's state, outputs and offsets commit in one Kafka "
        "transaction per partition; at_least_once: outputs, then state, then offsets.",
    )
    batch_max_events: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Input records per batch at most (one commit per partition and batch); "
        "larger drains a backlog faster, smaller keeps latency lower under load.",
    )
    batch_interval_s: float = Field(
        0.05,
        gt=0,
        le=10,
        description="Least time between the starts of two batches: under load fewer, larger "
        "transactions; an idle worker starts on a record at once.",
    )
    producer_linger_ms: int = Field(
        5, ge=0, le=1000, description="How long the producers wait to fill a request."
    )
    max_record_bytes: int = Field(
        1_000_000,
        ge=65_536,
        description="Largest record the producers send (the broker's message.max.bytes must "
        "not be smaller).",
    )
    rocksdb_write_buffer_bytes: int = Field(
        2 * 1024 * 1024,
        ge=64 * 1024,
        description="RocksDB memtable size per table and partition (two are kept at most).",
    )
    rocksdb_block_cache_bytes: int = Field(
        4 * 1024 * 1024, ge=0, description="RocksDB block cache per table and partition."
    )
    state_cache_entries: int = Field(
        10_000, ge=100, description="Decoded table values kept in memory per table."
    )
    review_schedule_entries: int = Field(
        50_000,
        ge=4,
        description="Customers' review times kept in memory per shop, the earliest; later "
        "ones are read again from the customers' states when their time comes.",
    )
    review_schedule_worker_entries: int = Field(
        400_000,
        ge=4,
        description="Customers' review times a worker keeps in memory in all: when its "
        "shops keep more, the largest are cut to what the others leave (each at most "
        "review_schedule_entries, and at least 256 while that allows).",
    )
    retry_backoff_s: float = Field(
        0.5, gt=0, le=60, description="Pause before a failed commit's batch is run again."
    )
    stall_retry_max_s: float = Field(
        300.0,
        ge=1,
        description="Longest wait before a stalled partition tries again (the first after 5 s, "
        "then doubling up to this).",
    )
    store: Literal["memory", "rocksdb"] = Field(
        "rocksdb", description="Local table store; the changelog topic is the source of truth."
    )
    data_dir: Path = Field(
        Path("var/worker"), description="Per-worker data directory (tables under <dir>/<app id>)."
    )

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_named(cls, value: Any) -> Any:
        if value == "":
            raise ValueError("empty: name a directory")
        return value


class ApiSettings(BaseSettings):
    """The HTTP API: where it listens, who may ask it, how often, and which schema
    registry ids input records may carry."""

    web_host: str = Field(
        "127.0.0.1", max_length=253, pattern=HOST, description="Address the HTTP API binds to."
    )
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the HTTP API.")
    web_advertised_host: str | None = Field(
        None,
        max_length=253,
        pattern=HOST,
        description="Host the other workers reach this one's HTTP API at (forwarded requests); "
        "unset: `SEGSTREAM_WEB_HOST`, which must then not be a wildcard such as `0.0.0.0` (in "
        "Kubernetes: the pod IP).",
    )
    api_tokens: Annotated[dict[str, str], NoDecode] = Field(
        {},
        description="The query API's tokens, as JSON: SHA-256 (hex) of each token -> its scope, "
        "`platform` or `shop:<shop_id>` (`segstream token` makes one). A worker with none "
        "refuses to start unless `SEGSTREAM_API_OPEN` is set.",
    )
    schema_registry_ids: Annotated[dict[str, list[int]], NoDecode] = Field(
        {},
        description="For records framed for a schema registry (magic byte 0, 4-byte schema "
        "id, then the JSON): the registry ids of each input type's schema, as JSON, e.g. "
        '`{"order": [3, 8]}` (`segstream registry --url URL` registers the schemas and prints '
        "it); a framed record of a listed type with another id is dead-lettered "
        "`unknown_schema_id`. Unset: any id; the JSON is validated against `schemas/` all the "
        "same.",
    )
    api_tokens_file: Path | None = Field(
        None,
        description="A JSON file of more tokens, in the form of `SEGSTREAM_API_TOKENS`, read "
        "again within a second of a change: tokens are added or revoked without restarting "
        "workers (a mounted Kubernetes Secret, say). A change that cannot be read is logged "
        "and the tokens read before stay; a file that cannot be read at start stops the "
        "worker with one line.",
    )
    api_open: bool = Field(
        False, description="Serve the query API without tokens (development only)."
    )
    api_rate_per_s: float = Field(
        20.0, gt=0, description="Requests per second each token may make, per worker."
    )
    api_burst: int = Field(40, ge=1, description="Requests a token may make at once, per worker.")

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _tokens_from_json(cls, value: Any) -> Any:
        """The environment gives a string: parsed here, so that a bad one is a validation
        error like any other (pydantic-settings' own parsing raised a 44-line traceback)."""
        return json_object(value, TOKENS_FORMAT)

    @field_validator("api_tokens")
    @classmethod
    def _tokens_hashed_and_scoped(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_grants(value)

    @field_validator("schema_registry_ids", mode="before")
    @classmethod
    def _schema_ids_from_json(cls, value: Any) -> Any:
        """Parsed here from the environment's string, so that a bad one is one line."""
        return json_object(value, SCHEMA_IDS_FORMAT)

    @field_validator("api_tokens_file")
    @classmethod
    def _tokens_file_readable(cls, value: Path | None) -> Path | None:
        """Read once at start, so that a worker never starts on a file it cannot use."""
        if value is not None:
            read_grants(value)
        return value


class RuntimeSettings(BaseSettings):
    """Logs, the consumer group's timeouts, standby tables, and which events are
    accepted (duplicates, implausible times)."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "warning", description="Quiet by default."
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="One JSON object per line, or readable lines."
    )
    broker_session_timeout_s: float = Field(
        30.0, gt=0, description="How soon a dead worker's partitions move to the others."
    )
    broker_request_timeout_s: float = Field(
        90.0, gt=0, description="Kafka request timeout (not below the session timeout)."
    )
    table_standby_replicas: int = Field(
        0, ge=0, le=8, description="Warm table copies on other workers (faster failover)."
    )
    dedup_window: int = Field(
        32, ge=1, le=1024, description="Event ids remembered per customer (the latest)."
    )
    dedup_horizon_days: int = Field(
        400,
        ge=1,
        description="Event ids older than this (in event time, behind the customer's newest "
        "event) are forgotten.",
    )
    earliest_event_time: AwareDatetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC),
        description="Events dated before this are dead-lettered `implausible_time` (a "
        "producer's unset clock says 1970). To import an older history, set it earlier (RFC "
        "3339, e.g. `1995-01-01T00:00:00Z`) for the workers and for `segstream.tools.replay` "
        "alike.",
    )

    @field_validator("earliest_event_time", mode="before")
    @classmethod
    def _time_written_out(cls, value: Any) -> Any:
        """A string must be an RFC 3339 time with its offset: ``0`` would be 1970."""
        if isinstance(value, str) and not RFC3339.fullmatch(value.strip()):
            raise ValueError("expected an RFC 3339 time with an offset, e.g. 1995-01-01T00:00:00Z")
        return value

    @field_validator("earliest_event_time")
    @classmethod
    def _time_plausible(cls, value: datetime) -> datetime:
        """Between the schemas' first year and now (later would refuse every event)."""
        if value.year < EARLIEST_YEAR or value.astimezone(UTC).year < EARLIEST_YEAR:
            raise ValueError(f"must not be before {EARLIEST_YEAR}-01-01T00:00:00Z")
        value = value.astimezone(UTC)
        if value > datetime.now(UTC):
            raise ValueError("must not lie in the future (every event would be refused)")
        return value


class PeriodicSettings(BaseSettings):
    """Metric windows and snapshots, and the periodic work: lag probes, clocks,
    gauges, re-evaluations."""

    metrics_allowed_lateness_days: int = Field(
        7,
        ge=0,
        description="Days an event may arrive behind its shop's stream time and still update "
        "its own metrics window; older ones are counted as too late.",
    )
    metrics_retention_days: int = Field(
        400, ge=60, description="Days of per-day metric buckets kept per shop."
    )
    metrics_snapshot_interval_s: float = Field(
        60.0, gt=0, description="Seconds between metric snapshots on the metrics topic."
    )
    dead_letter_retention_days: int = Field(
        14,
        ge=1,
        le=3650,
        description="Days the dead-letter topic keeps rejected records (they hold the raw "
        "payload, personal data included); set when segstream creates the topic (change an "
        "existing one with `kafka-configs.sh --alter --add-config retention.ms=...`).",
    )
    metrics_per_shop_labels: bool = Field(
        False,
        description="Add a shop label to segment-size and churn/retention gauges "
        "(series then grow with the number of shops).",
    )
    lag_interval_s: float = Field(5.0, gt=0, description="Seconds between consumer-lag probes.")
    catch_up_report_records: int = Field(
        1000,
        ge=1,
        description="A worker this many input records behind logs its progress (catching_up).",
    )
    catch_up_report_every_s: float = Field(
        30.0, gt=0, description="Seconds between catching_up log lines while behind."
    )
    input_stuck_after_s: float = Field(
        60.0,
        ge=5,
        description="An owned input topic partition behind whose committed offset stands "
        "still this long is sought back to its committed offsets (records dropped at its "
        "tail are read again; see the input_refetched log line).",
    )
    wall_clock_interval_s: float = Field(
        30.0,
        gt=0,
        description="Seconds between moves of live shops' clocks to the wall clock: the "
        "longest a time-driven segment move of a quiet live shop waits.",
    )
    wall_clock_live_s: float = Field(
        86_400.0,
        ge=0,
        description="A shop is live while its stream time is at most this far behind the "
        "wall clock; only live shops' clocks follow the wall clock (replays of history "
        "keep event time).",
    )
    gauges_interval_s: float = Field(
        30.0, gt=0, description="Seconds between refreshes of table, segment and model gauges."
    )
    heap_trim_interval_s: float = Field(
        60.0,
        ge=0,
        description="Seconds between returns of glibc's free-but-held heap to the system "
        "(malloc_trim, in a thread): without it RSS keeps the highest peak a burst of large "
        "batches reached. 0 turns it off; off glibc it does nothing.",
    )
    reevaluation_customers: int = Field(
        2_000,
        ge=1,
        le=100_000,
        description="Existing customers put in or out of a new, replaced or deleted "
        "shop-defined segment per commit (a shop of 100,000 customers takes 50 commits).",
    )
    reevaluation_interval_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Seconds between steps of an unfinished re-evaluation of a shop's "
        "customers after its segment definitions changed (a step of 2,000 customers takes "
        "0.1-0.6 s; batches run in between).",
    )

    @field_validator("heap_trim_interval_s")
    @classmethod
    def _trim_not_busy(cls, value: float) -> float:
        """0 (off) or at least a second: each trim walks the whole heap."""
        if 0 < value < 1:
            raise ValueError("must be 0 (off) or at least 1 second")
        return value


class ModelSettings(BaseSettings):
    """The segment models' tuning: clusters, churn risk, RFM, lifecycle."""

    cluster_max_clusters: int = Field(
        8,
        ge=2,
        le=64,
        description="Most live clusters a shop has at any time (the centres of its online "
        "k-means; bounds the model's size).",
    )
    cluster_min_dwell_days: float = Field(
        60.0,
        ge=0,
        description="No longer used: time alone never moves a customer's cluster (only "
        "their own events, or the retirement of their cluster); accepted so configurations "
        "that set it still load.",
    )
    cluster_switch_margin: float = Field(
        0.25,
        ge=0,
        description="At their own event a customer moves to a nearer cluster only once their "
        "own cluster's centre is this much farther (0.25: 25 %) than the nearest.",
    )
    cluster_warmup: int = Field(
        100,
        ge=1,
        description="Customer events a shop's first clusters are seeded from; a shop that "
        "gathers fewer than half as many per 30 days gets provisional clusters from what it "
        "has (at least twice the minimum group), seeded again when it reaches this.",
    )
    cluster_min_group_customers: int = Field(
        10,
        ge=1,
        description="Members a cluster needs before it is announced as formed (and a "
        "cluster started by customers far from every other needs to stay).",
    )
    churn_horizon_days: float = Field(
        90.0,
        gt=0,
        description="Churn risk is the probability of leaving within this many days: no "
        "order (renewals included), or a cancellation asked for.",
    )
    churn_lapse_multiple: float = Field(
        3.0,
        gt=1,
        description="Before a shop has a lifetime fit, churn risk guesses from silence: "
        "lapsed after this many times the customer's cadence.",
    )
    churn_band_medium: float = Field(0.2, gt=0, lt=1, description="Risk from which it is medium.")
    churn_band_high: float = Field(0.5, gt=0, lt=1, description="Risk from which it is high.")
    churn_min_dwell_days: float = Field(
        30.0, ge=0, description="Days in a risk band before time alone may move a customer."
    )
    churn_band_margin: float = Field(
        0.02,
        ge=0,
        lt=0.5,
        description="A customer leaves their risk band only once the risk is this far past "
        "the band's edge (no low -> medium -> low flapping).",
    )
    churn_max_pending: int = Field(
        50_000,
        ge=1,
        description="Snapshots waiting for their label per shop (kept with the customers); at "
        "the bound the share of customers sampled halves.",
    )
    churn_prior_weight_examples: int = Field(
        1000,
        ge=1,
        description="Settled windows after which a shop stops leaning on the prior (its "
        "own model counts windows / this much until then; overlapping snapshots count as "
        "the windows they are worth).",
    )
    rfm_min_dwell_days: float = Field(
        120.0, ge=0, description="Days in an RFM segment before time alone may move a customer."
    )
    rfm_score_margin: float = Field(
        0.05,
        ge=0,
        lt=0.2,
        description="An R or F score changes only once the customer's rank is this share of "
        "the shop past the quintile's edge.",
    )
    rfm_min_customers: int = Field(
        10, ge=1, description="Buying customers a shop needs before RFM quintiles mean anything."
    )
    lifecycle_new_days: int = Field(
        30,
        ge=1,
        description="Days a customer counts as new (one who has bought once stays new until "
        "they buy again or turn at risk).",
    )
    lifecycle_at_risk_days: int = Field(
        45, ge=1, description="Quiet days after which a one-off buyer without a cadence is at risk."
    )
    lifecycle_churned_days: int = Field(
        90,
        ge=1,
        description="Quiet days after which a one-off buyer without a cadence has churned; "
        "nobody churns sooner.",
    )
    lifecycle_loyal_min_repeat_days: int = Field(
        4, ge=1, description="Repeat purchase days that make a customer loyal."
    )
    lifecycle_won_back_days: int = Field(
        30, ge=1, description="Days a returning customer stays won back."
    )
    lifecycle_cadence_multiple: float = Field(
        2.5, gt=1, description="A gap this many times the customer's own cadence is at risk."
    )


class WebhookSettings(BaseSettings):
    """The delivery process (``segstream webhooks``): retries, rate, queues, timeouts."""

    webhook_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Seconds a webhook endpoint has to answer one POST."
    )
    webhook_max_attempts: int = Field(
        8,
        ge=1,
        le=100,
        description="Attempts per change and endpoint (the first included) before the change "
        "goes to the webhook dead-letter topic.",
    )
    webhook_backoff_base_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Retry n waits a random time up to base * 2^(n-1) (full jitter), capped "
        "by `SEGSTREAM_WEBHOOK_BACKOFF_MAX_S`.",
    )
    webhook_backoff_max_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait before one retry."
    )
    webhook_rate_per_s: float = Field(
        50.0, gt=0, description="POSTs per second to one endpoint, per delivery process."
    )
    webhook_burst: int = Field(
        50, ge=1, description="POSTs one endpoint may get at once, per delivery process."
    )
    webhook_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="POSTs in flight per endpoint: one lane per customer hash, so a "
        "customer's changes stay in order.",
    )
    webhook_queue_max: int = Field(
        1000,
        ge=1,
        description="Changes waiting per endpoint in memory; beyond it a change goes straight "
        "to the webhook dead-letter topic (`queue_full`), so a dead endpoint holds neither "
        "memory nor the others' offsets.",
    )
    webhook_commit_interval_s: float = Field(
        1.0, gt=0, le=60, description="Seconds between offset commits of the delivery process."
    )
    webhook_metrics_port: int = Field(
        9466, ge=1, le=65535, description="Port of the delivery process's `/metrics`."
    )
    webhook_metrics_host: str = Field(
        "127.0.0.1",
        max_length=253,
        pattern=HOST,
        description="Address the delivery process's `/metrics` binds to.",
    )
    webhook_allow_private: bool = Field(
        False,
        description="Accept endpoint URLs whose host is `localhost` or a loopback, private or "
        "link-local IP address (development; off, a shop cannot aim deliveries at internal "
        "services by address).",
    )


class Settings(
    WebhookSettings,
    ModelSettings,
    PeriodicSettings,
    RuntimeSettings,
    ApiSettings,
    ProcessingSettings,
    KafkaSettings,
):
    """Typed, validated, immutable worker settings (see docs/configuration.md)."""

    # One frozen object composed of the groups of fields above. pydantic orders the fields
    # of the last base first, so the bases are listed in reverse: the fields keep the order
    # of docs/configuration.md. The checks across groups stay here, in the order they ran.

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="forbid", allow_inf_nan=False
    )

    @model_validator(mode="after")
    def _timeouts_ordered(self) -> Settings:
        if self.broker_session_timeout_s > self.broker_request_timeout_s:
            raise ValueError(
                "SEGSTREAM_BROKER_SESSION_TIMEOUT_S must not exceed "
                "SEGSTREAM_BROKER_REQUEST_TIMEOUT_S"
            )
        return self

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and (
            self.kafka_username is None or self.kafka_password is None
        ):
            raise ValueError(
                f"SEGSTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "SEGSTREAM_KAFKA_USERNAME and SEGSTREAM_KAFKA_PASSWORD"
            )
        return self

    @model_validator(mode="after")
    def _advertised_address_is_reachable(self) -> Settings:
        if self.web_advertised_host is None and self.web_host in WILDCARD_HOSTS:
            raise ValueError(
                f"SEGSTREAM_WEB_HOST={self.web_host} binds every address, which peers cannot "
                "reach: set SEGSTREAM_WEB_ADVERTISED_HOST (e.g. the pod IP) too"
            )
        if self.web_advertised_host in WILDCARD_HOSTS:
            raise ValueError("SEGSTREAM_WEB_ADVERTISED_HOST must be an address peers can reach")
        return self

    @property
    def advertised_host(self) -> str:
        """The host in this worker's URL as its peers use it."""
        return self.web_advertised_host or self.web_host

    @model_validator(mode="after")
    def _bands_ordered(self) -> Settings:
        if self.churn_band_medium >= self.churn_band_high:
            raise ValueError("SEGSTREAM_CHURN_BAND_MEDIUM must be below SEGSTREAM_CHURN_BAND_HIGH")
        return self

    def topic(self, role: str) -> str:
        """Full name of the topic that plays ``role`` (an input role or an OutputRole)."""
        return f"{self.topic_prefix}{role.replace('_', '-')}"


def json_object(value: Any, expected: str) -> Any:
    """``value`` parsed if the environment gave it as a string (a JSON object, else a
    one-line ValueError saying what was ``expected``); any other value as it is."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise ValueError(f"not JSON ({error}); {expected}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"not a JSON object; {expected}")
    return parsed


def checked_grants(grants: Any) -> dict[str, str]:
    """``grants`` if it maps token hashes to scopes (ValueError naming what is wrong)."""
    if not isinstance(grants, dict):
        raise ValueError(f"not a JSON object; {TOKENS_FORMAT}")
    for digest, scope in grants.items():
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(
                "keys must be SHA-256 hashes of the tokens (64 hex digits), never tokens"
            )
        if not isinstance(scope, str) or not re.fullmatch(r"platform|shop:[^\s/|]{1,128}", scope):
            raise ValueError(
                f"scope must be 'platform' or 'shop:<shop_id>', got {str(scope)[:80]!r}"
            )
    return grants


def read_grants(path: Path) -> dict[str, str]:
    """The tokens a tokens file grants (ValueError naming what is wrong, in one line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot be read ({getattr(error, 'strerror', None) or error})") from None
    return checked_grants(json_object(text, TOKENS_FORMAT))


SCHEMA_IDS_FORMAT = 'expected {"<input event type>": [<schema id>, ...], ...}'
TOKENS_FORMAT = 'expected {"<sha-256 hex of a token>": "platform" or "shop:<id>", ...}'


class ConfigError(Exception):
    """Raised with a readable message when the environment holds bad settings: a header,
    then one line per variable with problems (``  SEGSTREAM_WEB_PORT: ...``)."""

    def __init__(self, problems: Mapping[str, list[str]]) -> None:
        self.problems = dict(problems)
        lines = [f"  {name}: {'; '.join(found)}" for name, found in self.problems.items()]
        super().__init__("invalid segstream settings:\n" + "\n".join(lines))

    def plus(self, problems: Mapping[str, list[str]]) -> ConfigError:
        """This error with more problems (other variables) added."""
        return ConfigError({**self.problems, **problems})


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear
    message: one line per variable, never the value (it may be a secret)."""
    try:
        return Settings()
    except ValidationError as error:
        problems: dict[str, list[str]] = {}
        for issue in error.errors():
            found = problems.setdefault(_variable(issue["loc"]), [])
            message = _message(issue)
            if message not in found:
                found.append(message)
        raise ConfigError(problems) from None


PATTERNS = {
    KAFKA_NAME: "only letters, digits, '.', '_' and '-' (it names Kafka topics and groups)",
    HOST: "not a host name or IP address",
}
"""What a value that does not match one of the settings' patterns breaks, readably."""


def _message(issue: ErrorDetails) -> str:
    """One issue as one readable line (never the value: it may be a secret)."""
    context = issue.get("ctx") or {}
    if issue["type"] == "string_pattern_mismatch" and context.get("pattern") in PATTERNS:
        return PATTERNS[context["pattern"]]
    if issue["type"] in ("string_too_short", "too_short") and context.get("min_length") == 1:
        return "empty (unset the variable for the default)"
    return " ".join(str(issue["msg"]).removeprefix("Value error, ").split())


def _variable(location: tuple[int | str, ...]) -> str:
    """The environment variable a validation error points at (or the settings as a whole):
    its field, not a place inside its value (a token's key must not be printed)."""
    if not location:
        return "settings"
    return f"{PREFIX}{str(location[0]).upper()}"


def unknown_variables(environ: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """``SEGSTREAM_*`` variables (of ``environ``, by default the process environment)
    that name no setting, each with the setting it may be a misspelling of: the worker
    warns about them, ``check-config`` refuses them. ``SEGSTREAM_TEST_*`` belong to the
    test harness."""
    names = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
    found: dict[str, list[str]] = {}
    for variable in sorted(os.environ if environ is None else environ):
        upper = variable.upper()  # pydantic-settings reads names in any case
        if not upper.startswith(PREFIX) or upper in names or upper.startswith(RESERVED_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, names, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        found[variable] = [f"not a segstream setting{hint}"]
    return found
