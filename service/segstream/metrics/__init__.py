"""Churn, retention and MRR metrics over event-time windows, per shop, segment and cohort.

Pure logic (no Faust): :mod:`.mrr` (monthly normalisation), :mod:`.movements` (MRR
movements of a customer), :mod:`.bookings` (what a customer contributes),
:mod:`.definitions` (every formula, once), :mod:`.windows` (window bounds and
:class:`WindowMetrics`), :mod:`.cohorts` (the cohort table rows), :mod:`.ledger` (the
windowed buckets) and :mod:`.snapshot` (the metrics-topic message).
"""

from segstream.metrics.cohorts import CohortCell, CohortRow
from segstream.metrics.ledger import MetricsLedger, Recorded, UnknownShopError
from segstream.metrics.snapshot import snapshot_payload
from segstream.metrics.windows import GRAINS, BadWindowError, WindowMetrics

__all__ = [
    "GRAINS",
    "BadWindowError",
    "CohortCell",
    "CohortRow",
    "MetricsLedger",
    "Recorded",
    "UnknownShopError",
    "WindowMetrics",
    "snapshot_payload",
]
