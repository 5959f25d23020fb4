"""A real Prometheus (Debian's binary) scrapes a real worker and answers PromQL about it.

The worker handles a few events from the real broker; Prometheus scrapes it every second
with the repository's alert rules loaded, and its HTTP API must return the expected
``segstream_events_total`` series, evaluate every rule without error and accept every query
of the Grafana dashboard.
"""

from __future__ import annotations

import asyncio
import json
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
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import Record, publish
from tests import factories

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
def worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker that has handled three signups and one unreadable record."""
    settings = isolated_settings(kafka_bootstrap, "prom")
    asyncio.run(ensure_topics(settings))
    process = WorkerProcess.for_settings(settings, tmp_path_factory.mktemp("worker") / "w1")
    process.start()
    try:
        process.wait_ready()
        records: list[Record] = [("signups", signup(n)) for n in range(SIGNUPS)]
        records.append(("signups", b"{not json"))
        asyncio.run(publish(records, settings))
        eventually(
            lambda: True if (process.events_handled() or 0) >= len(records) else None,
            30, f"the worker to handle {len(records)} records\n{process.log_tail()}",
        )  # fmt: skip
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(
    worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        scrape_config(f"127.0.0.1:{worker.web_port}"),
        tmp_path_factory.mktemp("prometheus"),
        free_port(),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


def dashboard_queries() -> list[str]:
    """Every panel query of the dashboard, with its Grafana variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    substitutions = {"$__rate_interval": "1m", "$instance": ".*", "$shop": ".*"}
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            query = target["expr"]
            for variable, value in substitutions.items():
                query = query.replace(variable, value)
            queries.append(query)
    return queries


def test_every_dashboard_query_runs(prometheus: PrometheusServer) -> None:
    queries = dashboard_queries()
    for query in queries:
        prometheus.api("query", query=query)
    throughput = queries[0]
    assert "segstream_events_total" in throughput
    result = eventually(
        lambda: prometheus.api("query", query=throughput)["result"] or None,
        20, "the throughput panel to show data",
    )  # fmt: skip
    assert ("signup", "processed") in {
        (s["metric"]["type"], s["metric"]["outcome"]) for s in result
    }
