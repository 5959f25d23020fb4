"""A real Prometheus (Debian's binary) scrapes a real worker and answers PromQL about it.

Prometheus scrapes the worker every second with the repository's alert rules loaded; the
worker then handles a few events from the real broker, in two rounds so that rates have two
samples. Its HTTP API must return the expected ``segstream_events_total`` series and
evaluate every rule without error; every query of the Grafana dashboard, run as Grafana
would, must name only metrics the worker exposes and return data (the dashboard's schema
check is ``tests/unit/test_grafana_schema.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.workers import WorkerProcess, free_port, isolated_settings
from segstream.settings import Settings
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import Record, publish
from tests import factories
from tests.promql import metric_names

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERT_RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "segstream-dashboard.json"
SHOP = "prom-shop"
SIGNUPS = 3
T = TypeVar("T")


def signup(n: int) -> dict[str, Any]:
    at = f"2025-03-0{n + 1}T09:00:00Z"
    return factories.signup(f"c{n}", at, f"prom-{n}", shop=SHOP, to_plan=factories.plan(12.5))


def scrape_config(target: str) -> str:
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ALERT_RULES}\n"
        "scrape_configs:\n  - job_name: segstream\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )


@dataclass
class PrometheusServer:
    """One Prometheus process on a loopback port with its storage in a temporary directory."""

    config: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not found: install Debian's prometheus package", pytrace=False)
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(self.config)
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer."""
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read())
        assert body["status"] == "success", (params, body)
        return body["data"]


def eventually(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """The first non-None result of ``probe``, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = probe()
        except (urllib.error.URLError, ConnectionError):
            found = None
        if found is not None:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    """The worker's app, on topics of its own."""
    found = isolated_settings(kafka_bootstrap, "prom")
    asyncio.run(ensure_topics(found))
    return found


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A ready worker; the ``prometheus`` fixture sends it its records."""
    process = WorkerProcess.for_settings(
        settings,
        tmp_path_factory.mktemp("worker") / "w1",
        extra_env={
            # The per-shop series the dashboard's shop variable and per-shop panels read.
            "SEGSTREAM_METRICS_PER_SHOP_LABELS": "true",
            # Table, segment, churn and model gauges within the test's time, not after 30 s.
            "SEGSTREAM_GAUGES_INTERVAL_S": "1",
        },
    )
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(
    worker: WorkerProcess, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """Prometheus scraping the worker, which then handles three signups and one unreadable
    record: sent once scraping runs, so rates and latencies have samples before and after."""
    server = PrometheusServer(
        scrape_config(f"127.0.0.1:{worker.web_port}"),
        tmp_path_factory.mktemp("prometheus"),
        free_port(),
    )
    server.start()
    try:
        eventually(lambda: server.api("query", query="up == 1")["result"] or None, 20, "a scrape")
        send_records(worker, server, settings)
        yield server
    finally:
        server.stop()


def send_records(worker: WorkerProcess, server: PrometheusServer, settings: Settings) -> None:
    """Publish the signups, then the last one with the unreadable record, each round handled
    and scraped before the next: a counter's first sample is not a rate, its second is."""
    first: list[Record] = [("signups", signup(n)) for n in range(SIGNUPS - 1)]
    second: list[Record] = [("signups", signup(SIGNUPS - 1)), ("signups", b"{not json")]
    send_round(worker, server, settings, first, len(first))
    send_round(worker, server, settings, second, len(first) + len(second))


def send_round(
    worker: WorkerProcess,
    server: PrometheusServer,
    settings: Settings,
    records: list[Record],
    total: int,
) -> None:
    """Publish ``records``; wait until the worker has handled ``total`` and Prometheus saw it."""
    asyncio.run(publish(records, settings))
    eventually(
        lambda: True if (worker.events_handled() or 0) >= total else None,
        30, f"the worker to handle {total} records\n{worker.log_tail()}",
    )  # fmt: skip
    eventually(
        lambda: scraped_events(server) >= total or None, 20, f"a scrape showing {total} events"
    )


def scraped_events(server: PrometheusServer) -> float:
    """Events of every type and outcome in Prometheus's latest scrape of the worker."""
    result = server.api("query", query="sum(segstream_events_total)")["result"]
    return float(result[0]["value"][1]) if result else 0.0


def events_series(server: PrometheusServer) -> dict[tuple[str, str], float] | None:
    """``segstream_events_total`` by (type, outcome), once the expected counts are in."""
    result = server.api("query", query="segstream_events_total")["result"]
    found = {(s["metric"]["type"], s["metric"]["outcome"]): float(s["value"][1]) for s in result}
    return found if found.get(("signup", "processed")) == SIGNUPS else None


def test_promql_returns_the_workers_event_counts(
    prometheus: PrometheusServer, worker: WorkerProcess
) -> None:
    counts = eventually(lambda: events_series(prometheus), 20, "the scraped event counts")
    assert counts == {("signup", "processed"): SIGNUPS, ("signup", "dead_lettered"): 1}
    series = prometheus.api("query", query='segstream_events_total{outcome="processed"}')
    assert series["result"][0]["metric"] == {
        "__name__": "segstream_events_total",
        "job": "segstream",
        "instance": f"127.0.0.1:{worker.web_port}",
        "type": "signup",
        "outcome": "processed",
    }
    for query in ('up{job="segstream"}', "segstream_worker_ready"):
        result = prometheus.api("query", query=query)["result"]
        assert [float(s["value"][1]) for s in result] == [1.0], query


def evaluated_rules(server: PrometheusServer) -> list[dict[str, Any]] | None:
    """The loaded rules, once each has been evaluated at least once."""
    groups = server.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    done = rules and all(not rule["lastEvaluation"].startswith("0001") for rule in rules)
    return rules if done else None


def test_alert_rules_load_and_evaluate_cleanly(prometheus: PrometheusServer) -> None:
    rules = eventually(lambda: evaluated_rules(prometheus), 15, "the rules to be evaluated")
    assert {rule["name"] for rule in rules} >= {"SegstreamWorkerDown", "SegstreamDeadLettersHigh"}
    assert [
        (r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"
    ] == []
    assert all(rule["state"] == "inactive" for rule in rules)


SCRAPE_S = 1
RANGE_S = 120
GRAFANA_VARIABLES = {
    # Grafana's own rule: max($__interval + scrape interval, 4 * scrape interval), with the
    # 1 s $__interval a 30 s range gets at the default data points, and a 1 s scrape.
    "$__rate_interval": f"{max(1 + SCRAPE_S, 4 * SCRAPE_S)}s",
    "$__interval": "1s",
    # "All" of a multi-value variable: the variable's allValue, as Grafana sends it.
    "$instance": ".*",
    "$shop": ".*",
}
QUIET_WORKER_EMPTY = {
    "Workers up and ready/C": "a partition stalled: none on a healthy worker",
    "Local state store behind (full disk)/B": "refused store writes: none on a healthy disk",
}
"""Panel queries (``title/refId``) that may return no series on a healthy, quiet worker; every
metric they name must still be one the worker exposes."""
OTHER_JOBS = ('job="segstream-webhooks"',)
"""Panels of processes this test does not run (the webhook delivery process, job
``segstream-webhooks``): their queries must parse, run and name exposed families (the
worker's registry holds them too), but no series is expected. Its own integration test
reads that process's metrics."""


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, its Grafana variables filled in as Grafana would."""

    key: str
    expr: str


def expand(expr: str) -> str:
    """``expr`` with the dashboard's Grafana variables replaced; no ``$`` may remain."""
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not expand: {expr}"
    return expr


def dashboard_queries() -> list[PanelQuery]:
    """Every panel query of the dashboard, with its Grafana variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    return [
        PanelQuery(f"{panel['title']}/{target['refId']}", expand(target["expr"]))
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def variable_queries() -> dict[str, tuple[str, str]]:
    """The dashboard's ``label_values(selector, label)`` variables: name -> (selector, label)."""
    board = json.loads(DASHBOARD.read_text())
    found: dict[str, tuple[str, str]] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            found[variable["name"]] = match.group(1), match.group(2)
    return found


def exposed_families(server: PrometheusServer) -> set[str]:
    """Metric family names Prometheus read in the worker's exposition (with or without samples)."""
    return {entry["metric"] for entry in server.api("targets/metadata")} | {"up"}


def exposed(name: str, families: set[str]) -> bool:
    """Whether a sample name belongs to an exposed family (suffixes per the exposition format)."""
    suffixes = ("", "_total", "_bucket", "_count", "_sum", "_created")
    return any(
        name.removesuffix(suffix) in families for suffix in suffixes if name.endswith(suffix)
    )


def range_result(server: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    """A range query over the last RANGE_S seconds at a 1 s step, as a Grafana panel runs it
    (the range reaches back past the records, which the worker handled before the tests ran)."""
    end = time.time()
    data = server.api(
        "query_range", query=expr, start=f"{end - RANGE_S:.3f}", end=f"{end:.3f}", step="1"
    )
    assert data["resultType"] == "matrix", (expr, data["resultType"])
    result: list[dict[str, Any]] = data["result"]
    return result


def finite(result: list[dict[str, Any]]) -> list[float]:
    """The values of a range result that are numbers (not NaN or infinite)."""
    values = (float(value) for series in result for _, value in series["values"])
    return [value for value in values if math.isfinite(value)]


def without_data(server: PrometheusServer, queries: list[PanelQuery]) -> list[PanelQuery]:
    """The queries still returning no series after the gauges had time to refresh."""
    deadline = time.monotonic() + 20
    empty = queries
    while empty and time.monotonic() < deadline:
        empty = [q for q in empty if not range_result(server, q.expr)]
        if empty:
            time.sleep(0.5)
    return empty


def test_every_dashboard_query_names_exposed_metrics(prometheus: PrometheusServer) -> None:
    eventually(lambda: events_series(prometheus), 20, "the scraped event counts")
    families = exposed_families(prometheus)
    unknown = {
        q.key: sorted(n for n in metric_names(q.expr) if not exposed(n, families))
        for q in dashboard_queries()
    }
    assert {key: names for key, names in unknown.items() if names} == {}


def test_every_dashboard_query_runs_and_shows_data(prometheus: PrometheusServer) -> None:
    eventually(lambda: events_series(prometheus), 20, "the scraped event counts")
    queries = dashboard_queries()
    assert set(QUIET_WORKER_EMPTY) <= {q.key for q in queries}
    for query in queries:
        range_result(prometheus, query.expr)  # every query, quiet ones too, parses and runs
    shown = [
        q
        for q in queries
        if q.key not in QUIET_WORKER_EMPTY and not any(job in q.expr for job in OTHER_JOBS)
    ]
    assert len(shown) >= len(queries) - 12, "most panels must show the worker's data"
    empty = without_data(prometheus, shown)
    assert not empty, "panel queries with no data:\n" + "\n".join(
        f"{q.key}: {q.expr}" for q in empty
    )


def test_traffic_panels_show_the_records(prometheus: PrometheusServer) -> None:
    eventually(lambda: events_series(prometheus), 20, "the scraped event counts")
    by_key = {q.key: q.expr for q in dashboard_queries()}
    throughput = range_result(prometheus, by_key["Throughput by type and outcome/A"])
    processed = [s for s in throughput if s["metric"] == {"type": "signup", "outcome": "processed"}]
    assert max(finite(processed), default=0.0) > 0, throughput
    for key in (
        "Processing latency/C",
        "Where a record's time goes/A",
        "Segment changes by model/A",
    ):
        assert max(finite(range_result(prometheus, by_key[key])), default=0.0) > 0, key


def test_every_dashboard_variable_lists_values(
    prometheus: PrometheusServer, worker: WorkerProcess
) -> None:
    variables = variable_queries()
    assert set(variables) == {"instance", "shop"}
    values = {
        name: prometheus.api(f"label/{label}/values", **{"match[]": selector})
        for name, (selector, label) in variables.items()
    }
    assert values == {"instance": [f"127.0.0.1:{worker.web_port}"], "shop": [SHOP]}
