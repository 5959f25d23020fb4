"""Prometheus metrics the worker exports on ``/metrics``.

Names and labels follow Prometheus conventions (``_total`` counters, base units,
bounded label values: event type, outcome, reason, model, segment, table, window —
never a customer). A ``shop`` label appears only when the worker runs with per-shop
labels enabled (``metrics_per_shop_labels``); the setters take that flag as ``per_shop``.

Gauges that describe a state the worker recomputes (lag, table and segment sizes, rates,
model quality and size) are :class:`Snapshot` families: each setter replaces the whole
family, so a series that is gone (a removed segment, a shop that moved to another worker)
disappears instead of lingering with its last value.
"""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

REGISTRY = CollectorRegistry(auto_describe=True)
# the client's standard process_* families (resident memory, CPU, open files): Linux only
PROCESS = ProcessCollector(registry=REGISTRY)

EVENTS = Counter(
    "segstream_events_total",
    "Input records handled, by the event type their topic carries and outcome (processed, "
    "duplicate, dead_lettered).",
    ["type", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "segstream_dead_letters_total",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
SEGMENT_CHANGES = Counter(
    "segstream_segment_changes_total",
    "Segment-change events emitted, by model and cause (event or timer).",
    ["model", "cause"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "segstream_processing_seconds",
    "Wall time to handle one input record, emits included.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
RECORD_STAGE_SECONDS = Histogram(
    "segstream_record_stage_seconds",
    "Where an input record's time goes, by stage: fetched (its producer's timestamp to the "
    "worker's batch buffer), queued (in the buffer until its batch starts), batch (its "
    "batch's start until every partition of the batch committed).",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "segstream_commit_seconds",
    "Wall time of one partition's transaction: its outputs, table writes and input offsets "
    "committed together.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
DEFINITION_FAILURES = Counter(
    "segstream_definition_failures_total",
    "Evaluations of a shop-defined segment's rule that failed (a defect; the customer is "
    "taken as outside the segment and the stream goes on), by step: evaluate or look_ahead.",
    ["step"],
    registry=REGISTRY,
)
for _step in ("evaluate", "look_ahead"):  # from 0, so an alert on increase sees the first
    DEFINITION_FAILURES.labels(step=_step)
LATE_EVENTS = Counter(
    "segstream_late_events_total",
    "Valid events older than the allowed lateness: folded into customer state, not into "
    "closed metric windows.",
    registry=REGISTRY,
)
REBALANCES = Counter(
    "segstream_rebalances_total",
    "Partition assignments this worker received (each consumer-group rebalance).",
    registry=REGISTRY,
)
RECORDS_REFETCHED = Counter(
    "segstream_records_refetched_total",
    "Input records set aside because they arrived while tables were being recovered "
    "(read again from the committed offsets once recovery has ended).",
    registry=REGISTRY,
)
INPUT_REFETCHES = Counter(
    "segstream_input_refetches_total",
    "Times an owned input partition was sought back to its committed offsets because one "
    "of its topics stayed behind with its committed offset standing still (records a "
    "consumer dropped at the tail, where no later record reveals the gap).",
    registry=REGISTRY,
)
CATCH_UP_BEHIND = Gauge(
    "segstream_catch_up_behind_records",
    "Records behind on the input partitions this worker owns (the sum of its share of "
    "segstream_consumer_lag_records), as of the last lag measurement.",
    registry=REGISTRY,
)
CATCH_UP_RATE = Gauge(
    "segstream_catch_up_rate_records_per_second",
    "Input records this worker's partitions folded per second over the last minute (the "
    "pace of their committed offsets).",
    registry=REGISTRY,
)
CATCH_UP_REMAINING = Gauge(
    "segstream_catch_up_remaining_seconds",
    "Seconds until this worker is caught up at the pace its backlog shrank over the last "
    "minute: 0 when caught up, +Inf while the backlog does not shrink.",
    registry=REGISTRY,
)
OUTPUT_SCHEMA_FAILURES = Counter(
    "segstream_output_schema_failures_total",
    "Outputs segstream made that break their own schema in schemas/ (a bug, never the "
    "input's fault), by output kind: not sent; the log line output_schema_failure names "
    "the shop. Other shops' outputs still go out.",
    ["output"],
    registry=REGISTRY,
)
OUTPUTS = (
    "segment_changed",
    "segment_membership",
    "segment_formed",
    "dead_letter",
    "metrics_snapshot",
)
"""Output kinds (``segstream.domain.contracts.OutputSchema``): their failure series start at 0,
so an alert on ``increase`` sees the first failure."""
for _output in OUTPUTS:
    OUTPUT_SCHEMA_FAILURES.labels(output=_output)
WEBHOOK_DELIVERIES = Counter(
    "segstream_webhook_deliveries_total",
    "Changes the delivery process (segstream webhooks) finished with, per endpoint they "
    "matched, by outcome: delivered (a 2xx) or dead_lettered (see "
    "segstream_webhook_dead_letters_total).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_DEAD_LETTERS = Counter(
    "segstream_webhook_dead_letters_total",
    "Changes sent to the webhook dead-letter topic, by reason: retries_exhausted (the "
    "retry budget spent) or queue_full (the endpoint's in-memory queue was at its bound).",
    ["reason"],
    registry=REGISTRY,
)
WEBHOOK_ATTEMPTS = Counter(
    "segstream_webhook_attempts_total",
    "POSTs to webhook endpoints, by result: 2xx, 4xx, 5xx (any other status too), timeout "
    "or error (no answer: refused, reset, DNS).",
    ["result"],
    registry=REGISTRY,
)
WEBHOOK_RESULTS = ("2xx", "4xx", "5xx", "timeout", "error")
for _outcome in ("delivered", "dead_lettered"):  # from 0, so an alert on increase sees the first
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)
for _reason in ("retries_exhausted", "queue_full"):
    WEBHOOK_DEAD_LETTERS.labels(reason=_reason)
for _result in WEBHOOK_RESULTS:
    WEBHOOK_ATTEMPTS.labels(result=_result)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "segstream_webhook_delivery_seconds",
    "From a change's record timestamp on the change topic to its endpoint's 2xx, retries "
    "and queueing included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
WEBHOOK_QUEUED = Gauge(
    "segstream_webhook_queued_changes",
    "Changes waiting or in flight in the delivery process, over all its endpoints.",
    registry=REGISTRY,
)
WEBHOOK_QUEUE_FULLEST = Gauge(
    "segstream_webhook_queue_fullest_ratio",
    "The fullest endpoint queue of the delivery process, as a share of its bound "
    "(SEGSTREAM_WEBHOOK_QUEUE_MAX): 1 means changes go to the dead-letter topic "
    "(queue_full). No endpoint label: endpoints are many; the log names them.",
    registry=REGISTRY,
)
WEBHOOK_ENDPOINTS = Gauge(
    "segstream_webhook_endpoints",
    "Live webhook endpoints the delivery process knows (from the webhooks topic).",
    registry=REGISTRY,
)
WEBHOOK_RECORDS_SKIPPED = Counter(
    "segstream_webhook_records_skipped_total",
    "Records the webhook readers could not use and skipped (a malformed endpoint record "
    "on the webhooks topic, or a change record that is not JSON): logged, never a crash.",
    registry=REGISTRY,
)
WORKER_READY = Gauge(
    "segstream_worker_ready",
    "1 when the worker is not rebalancing and its tables are recovered from their "
    "changelogs (its /ready view); 0 otherwise.",
    registry=REGISTRY,
)

Labels = tuple[tuple[str, str], ...]
"""One series' label pairs, in a fixed order."""


class Snapshot:
    """A gauge family whose series are replaced all at once by :meth:`replace`."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self._series: dict[Labels, float] = {}
        registry.register(self)

    def replace(self, series: Mapping[Labels, float]) -> None:
        """Make ``series`` the family's only series (non-finite values are left out)."""
        self._series = {labels: value for labels, value in series.items() if math.isfinite(value)}

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation)
        for labels, value in self._series.items():
            family.add_sample(self.name, dict(labels), value)
        return [family]


CONSUMER_LAG = Snapshot(
    "segstream_consumer_lag_records",
    "Records in an input partition not yet committed by the app's consumer group "
    "(end offset minus committed offset), by topic and partition. Every worker reports the "
    "whole group: aggregate with max by (topic, partition).",
    REGISTRY,
)
TABLE_ENTRIES = Snapshot(
    "segstream_table_entries",
    "Keys in this worker's active partitions of a table, by table.",
    REGISTRY,
)
SEGMENT_CUSTOMERS = Snapshot(
    "segstream_segment_customers",
    "Customers currently assigned to a segment, by model and segment, summed over this "
    "worker's shops (per shop, with a shop label, when per-shop labels are enabled).",
    REGISTRY,
)
CHURN_RATE = Snapshot(
    "segstream_churn_rate",
    "Share of the subscribers active at the start of the window who cancelled in it, by "
    "window; pooled over this worker's shops (per shop when per-shop labels are enabled).",
    REGISTRY,
)
RETENTION_RATE = Snapshot(
    "segstream_retention_rate",
    "(Subscribers at window end - new signups in the window) / subscribers at window start, "
    "by window; pooled over this worker's shops (per shop when per-shop labels are enabled).",
    REGISTRY,
)
WINDOW_START_SUBSCRIBERS = Snapshot(
    "segstream_window_start_subscribers",
    "Subscribers active at the start of the window, by window: the weight to pool churn and "
    "retention rates across workers or shops (sum(rate * this) / sum(this)).",
    REGISTRY,
)
MODEL_QUALITY = Snapshot(
    "segstream_model_quality",
    "Quality of a learned model, by model and metric (roc_auc, log_loss, brier, silhouette, ...).",
    REGISTRY,
)
PARTITION_STALLED_SINCE = Snapshot(
    "segstream_partition_stalled_since_seconds",
    "Per input partition this worker stopped processing (a failure no single record "
    "explains, or commits that keep failing): the Unix time it stalled. /ready names the "
    "reason; the partition retries by itself. No series: nothing stalled.",
    REGISTRY,
)
STATE_STORE_WRITE_FAILURES = Counter(
    "segstream_state_store_write_failures_total",
    "Committed batches a table's local store refused to write, by table and reason "
    "(state_store_full: no space left on the device; state_store_write_failed: anything "
    "else). The partition stops until the batch is written; it retries by itself.",
    ["table", "reason"],
    registry=REGISTRY,
)
STATE_STORE_BEHIND = Gauge(
    "segstream_state_store_behind_partitions",
    "Partitions whose local store misses a committed batch (it refused the write: a full "
    "disk): they process nothing until it is written (reads see the batch meanwhile).",
    registry=REGISTRY,
)
PARTITIONS_PARKED = Gauge(
    "segstream_partitions_parked",
    "Partitions whose producer was fenced or whose transaction failed with an unknown "
    "outcome: they commit nothing and wait for the group's next assignment, which the "
    "worker asked for (normally seconds away).",
    registry=REGISTRY,
)
HEAP_RETURNED_BYTES = Counter(
    "segstream_heap_returned_bytes_total",
    "Resident memory that went during heap trims (RSS before minus after, approximate): "
    "free memory glibc kept after a burst of large batches (SEGSTREAM_HEAP_TRIM_INTERVAL_S).",
    registry=REGISTRY,
)
HEAP_TRIM_SECONDS = Histogram(
    "segstream_heap_trim_seconds",
    "How long one heap trim walked the heap (in a thread; the event loop's allocations may "
    "wait on the arena it holds).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
MODEL_SIZE_BYTES = Snapshot(
    "segstream_model_size_bytes",
    "Serialized size of a learned model's checkpoints, summed over this worker's shops.",
    REGISTRY,
)


@dataclass(frozen=True, slots=True)
class WindowRates:
    """One shop's churn and retention over one window (rates are None when undefined)."""

    shop_id: str
    window: str
    subscribers_at_start: int
    churn_rate: float | None
    retention_rate: float | None


def count_output_schema_failure(output: str) -> None:
    """Count one output of kind ``output`` that failed its own schema."""
    OUTPUT_SCHEMA_FAILURES.labels(output=output).inc()


def set_ready(ready: bool) -> None:
    """Record the worker's readiness (see ``segstream.api.routes.readiness``)."""
    WORKER_READY.set(1 if ready else 0)


def set_stalled(since: Mapping[int, float]) -> None:
    """Replace the stalled-partition series with ``{partition: Unix time it stalled}``."""
    PARTITION_STALLED_SINCE.replace({(("partition", str(p)),): t for p, t in since.items()})


def set_consumer_lag(lag: Mapping[tuple[str, int], int]) -> None:
    """Replace the lag series with ``{(topic, partition): records behind}``."""
    CONSUMER_LAG.replace(
        {
            (("topic", topic), ("partition", str(partition))): n
            for (topic, partition), n in lag.items()
        }
    )


def set_catch_up(rate: float | None, behind: int, remaining_s: float | None) -> None:
    """This worker's progress on its input (``rate`` None: not measured yet, exported as
    NaN; ``remaining_s`` None: not shrinking)."""
    CATCH_UP_BEHIND.set(behind)
    CATCH_UP_RATE.set(math.nan if rate is None else rate)
    CATCH_UP_REMAINING.set(math.inf if remaining_s is None else remaining_s)


def set_table_entries(entries: Mapping[str, int]) -> None:
    """Replace the table-size series with ``{table name: keys}``."""
    TABLE_ENTRIES.replace({(("table", table),): n for table, n in entries.items()})


def count_segments(assignments: Iterable[Mapping[str, str]]) -> dict[tuple[str, str], int]:
    """Customers per ``(model, segment)`` from each customer's ``{model: segment}``.

    >>> count_segments([{"rfm": "Champions"}, {"rfm": "Lost", "lifecycle": "new"}, {}])
    {('rfm', 'Champions'): 1, ('rfm', 'Lost'): 1, ('lifecycle', 'new'): 1}
    """
    return dict(Tally(pair for segments in assignments for pair in segments.items()))


def set_segment_sizes(
    sizes_by_shop: Mapping[str, Mapping[tuple[str, str], int]], per_shop: bool
) -> None:
    """Replace the segment-size series from every owned shop's ``{(model, segment): n}``.

    Without ``per_shop`` the sizes are summed over the shops (labels model, segment only).
    """
    series: Tally[Labels] = Tally()
    for shop_id, sizes in sizes_by_shop.items():
        for (model, segment), count in sizes.items():
            series[_with_shop((("model", model), ("segment", segment)), shop_id, per_shop)] += count
    SEGMENT_CUSTOMERS.replace(series)


@dataclass(frozen=True, slots=True)
class PooledRates:
    """Churn and retention per label set, with the starting subscribers they are weighted by."""

    subscribers_at_start: dict[Labels, float]
    churn: dict[Labels, float]
    retention: dict[Labels, float]


def pool_window_rates(rates: Iterable[WindowRates], per_shop: bool) -> PooledRates:
    """Rates per window (and shop, with ``per_shop``), pooled over the shops they group.

    Pooling weights each shop's rate by its subscribers at window start, which equals
    (sum of cancellations) / (sum of starting subscribers); shops without subscribers
    at the start have no rate and are left out.

    >>> pooled = pool_window_rates([WindowRates("a", "30d", 10, 0.1, 0.9),
    ...                             WindowRates("b", "30d", 90, 0.2, 1.0)], per_shop=False)
    >>> {labels: round(rate, 6) for labels, rate in pooled.churn.items()}
    {(('window', '30d'),): 0.19}
    """
    weights: Tally[Labels] = Tally()
    churned: defaultdict[Labels, float] = defaultdict(float)
    retained: defaultdict[Labels, float] = defaultdict(float)
    for rate in rates:
        if rate.subscribers_at_start <= 0:
            continue
        labels = _with_shop((("window", rate.window),), rate.shop_id, per_shop)
        weights[labels] += rate.subscribers_at_start
        if rate.churn_rate is not None:
            churned[labels] += rate.churn_rate * rate.subscribers_at_start
        if rate.retention_rate is not None:
            retained[labels] += rate.retention_rate * rate.subscribers_at_start
    return PooledRates(
        dict(weights),
        {labels: total / weights[labels] for labels, total in churned.items()},
        {labels: total / weights[labels] for labels, total in retained.items()},
    )


def set_window_rates(rates: Iterable[WindowRates], per_shop: bool) -> None:
    """Replace the churn, retention and window-start series from every owned shop's rates."""
    pooled = pool_window_rates(rates, per_shop)
    WINDOW_START_SUBSCRIBERS.replace(pooled.subscribers_at_start)
    CHURN_RATE.replace(pooled.churn)
    RETENTION_RATE.replace(pooled.retention)


def set_model_quality(quality: Mapping[tuple[str, str], float]) -> None:
    """Replace the model-quality series with ``{(model, metric): value}``."""
    MODEL_QUALITY.replace(
        {(("model", model), ("metric", metric)): v for (model, metric), v in quality.items()}
    )


def set_model_sizes(sizes: Mapping[str, int]) -> None:
    """Replace the model-size series with ``{model: bytes}``."""
    MODEL_SIZE_BYTES.replace({(("model", model),): n for model, n in sizes.items()})


def _with_shop(labels: Labels, shop_id: str, per_shop: bool) -> Labels:
    return (*labels, ("shop", shop_id)) if per_shop else labels
