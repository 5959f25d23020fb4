"""Metric setters: labels, aggregation over shops, and stale series disappearing."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from segstream.observability import telemetry
from segstream.observability.telemetry import WindowRates


def value(name: str, **labels: str) -> float | None:
    return telemetry.REGISTRY.get_sample_value(name, labels)


def series(name: str) -> list[dict[str, str]]:
    """Label sets of every sample of one family, as the registry exports it."""
    return [
        sample.labels
        for family in telemetry.REGISTRY.collect()
        for sample in family.samples
        if sample.name == name
    ]


def test_existing_metrics_keep_their_names_and_labels() -> None:
    before = value("segstream_events_total", type="order", outcome="processed") or 0.0
    telemetry.EVENTS.labels(type="order", outcome="processed").inc()
    telemetry.DEAD_LETTERS.labels(reason="schema").inc()
    telemetry.SEGMENT_CHANGES.labels(model="rfm", cause="event").inc()
    telemetry.PROCESSING_SECONDS.observe(0.002)
    assert value("segstream_events_total", type="order", outcome="processed") == before + 1
    assert value("segstream_dead_letters_total", reason="schema")
    assert value("segstream_segment_changes_total", model="rfm", cause="event")
    assert value("segstream_processing_seconds_bucket", le="0.0025")


def test_segment_sizes_are_summed_over_shops_without_shop_labels() -> None:
    telemetry.set_segment_sizes(
        {"a": {("rfm", "Champions"): 3, ("lifecycle", "new"): 1}, "b": {("rfm", "Champions"): 4}},
        per_shop=False,
    )
    assert value("segstream_segment_customers", model="rfm", segment="Champions") == 7
    assert value("segstream_segment_customers", model="lifecycle", segment="new") == 1
    assert all("shop" not in labels for labels in series("segstream_segment_customers"))


def test_segment_sizes_per_shop_carry_the_shop_label_instead() -> None:
    telemetry.set_segment_sizes(
        {"a": {("rfm", "Champions"): 3}, "b": {("rfm", "Champions"): 4}}, per_shop=True
    )
    assert value("segstream_segment_customers", model="rfm", segment="Champions", shop="b") == 4
    assert value("segstream_segment_customers", model="rfm", segment="Champions") is None


def test_removed_segments_and_moved_shops_do_not_linger() -> None:
    telemetry.set_segment_sizes(
        {"a": {("rfm", "Lost"): 2}, "b": {("rfm", "New"): 1}}, per_shop=True
    )
    telemetry.set_segment_sizes({"b": {("rfm", "Promising"): 1}}, per_shop=True)
    assert series("segstream_segment_customers") == [
        {"model": "rfm", "segment": "Promising", "shop": "b"}
    ]


def test_count_segments_feeds_set_segment_sizes() -> None:
    customers = [{"rfm": "Lost"}, {"rfm": "Lost", "lifecycle": "churned"}]
    telemetry.set_segment_sizes({"a": telemetry.count_segments(customers)}, per_shop=False)
    assert value("segstream_segment_customers", model="rfm", segment="Lost") == 2
    assert value("segstream_segment_customers", model="lifecycle", segment="churned") == 1


def test_window_rates_pool_by_subscribers_at_start() -> None:
    # Shop a: 10 at start, 1 cancelled, 9 of them left at the end; b: 30 at start, 6
    # cancelled, retention 0.8; c: nobody at the start, so no rate to pool.
    telemetry.set_window_rates(
        [
            WindowRates("a", "30d", 10, 0.1, 0.9),
            WindowRates("b", "30d", 30, 0.2, 0.8),
            WindowRates("c", "30d", 0, None, None),
            WindowRates("a", "week", 10, 0.0, 1.0),
        ],
        per_shop=False,
    )
    assert math.isclose(value("segstream_churn_rate", window="30d") or -1, 7 / 40)
    assert math.isclose(value("segstream_retention_rate", window="30d") or -1, 33 / 40)
    assert value("segstream_window_start_subscribers", window="30d") == 40
    assert value("segstream_churn_rate", window="week") == 0.0


def test_window_rates_per_shop_and_undefined_rates() -> None:
    telemetry.set_window_rates(
        [WindowRates("a", "30d", 10, 0.1, None), WindowRates("c", "30d", 0, None, None)],
        per_shop=True,
    )
    assert value("segstream_churn_rate", window="30d", shop="a") == 0.1
    assert series("segstream_retention_rate") == []
    assert series("segstream_churn_rate") == [{"window": "30d", "shop": "a"}]


def test_consumer_lag_table_sizes_and_model_gauges() -> None:
    telemetry.set_consumer_lag({("segstream.orders", 3): 12})
    telemetry.set_table_entries({"customers": 250, "shops": 4})
    telemetry.set_model_quality({("churn", "roc_auc"): 0.81, ("churn", "log_loss"): math.nan})
    telemetry.set_model_sizes({"clusters": 2048})
    assert value("segstream_consumer_lag_records", topic="segstream.orders", partition="3") == 12
    assert value("segstream_table_entries", table="customers") == 250
    assert value("segstream_model_quality", model="churn", metric="roc_auc") == 0.81
    assert value("segstream_model_quality", model="churn", metric="log_loss") is None
    assert value("segstream_model_size_bytes", model="clusters") == 2048


def test_readiness_rebalances_and_late_events() -> None:
    rebalances = value("segstream_rebalances_total") or 0.0
    late = value("segstream_late_events_total") or 0.0
    telemetry.set_ready(True)
    assert value("segstream_worker_ready") == 1
    telemetry.set_ready(False)
    assert value("segstream_worker_ready") == 0
    telemetry.REBALANCES.inc()
    telemetry.LATE_EVENTS.inc()
    assert value("segstream_rebalances_total") == rebalances + 1
    assert value("segstream_late_events_total") == late + 1


def test_exposition_parses_and_follows_conventions() -> None:
    telemetry.set_segment_sizes({"a": {("rfm", "New"): 1}}, per_shop=False)
    families = {
        family.name: family
        for family in text_string_to_metric_families(generate_latest(telemetry.REGISTRY).decode())
    }
    assert families["segstream_segment_customers"].type == "gauge"
    assert families["segstream_late_events"].type == "counter"
    standard = {family.name for family in telemetry.PROCESS.collect()}
    assert "process_resident_memory_bytes" in standard
    for family in families.values():
        assert family.name.startswith("segstream_") or family.name in standard
        assert family.documentation
        for sample in family.samples:
            assert not {"customer", "customer_id"} & set(sample.labels)
