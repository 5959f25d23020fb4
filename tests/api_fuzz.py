"""The API property run: requests generated from ``deploy/openapi.json`` against a real
worker, with every check.

``python -m tests.api_fuzz --examples 300`` (``make api-fuzz``) starts its own broker,
one worker fed a simulated history (:func:`prepared`: it also defines a segment and
starts an experiment under the document's example ids, so the routes that read them find
them), and runs schemathesis over every operation in every phase (the document's
examples, boundary coverage, random fuzzing, stateful sequences along the links it
infers) with every check: no 5xx, each answer valid against the documented schema,
status code, content type and headers, every documented-valid request accepted, every
invalid one refused with a 4xx, a 405 with ``Allow`` for methods the document does not
list, no access without a token. What JSON Schema cannot say is made true of the
generated valid requests by ``tests/api_fuzz_hooks.py``. The integration suite runs the
same with few examples (``tests/integration/test_api_contract.py``).

Imports schemathesis, which only this run needs: a dev dependency (pyproject.toml).
It ends with one line, ``api-fuzz: 24,000 requests, 22 operations, seed 7, failures 0``,
and exits 1 on any failure (schemathesis printed each, with a curl line to reproduce it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from harness.broker import fresh_broker
from harness.workers import PLATFORM_TOKEN, WorkerProcess, isolated_settings
from segstream.settings import Settings
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate

ROOT = Path(__file__).resolve().parents[1]
REPORT_DIR = ROOT / "var" / "api-fuzz"
"""Where ``make api-fuzz`` leaves schemathesis' event log (``events.ndjson``)."""
SPEC = ROOT / "deploy" / "openapi.json"
BROKER_PORT = 29392
"""The broker ``make api-fuzz`` starts (its controller takes the next port)."""
REPLAY_ENV = {
    "SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS": "400",
    "SEGSTREAM_METRICS_RETENTION_DAYS": "800",
}
"""A replay delivers months of event time at once: every event counts in the metrics."""
DEFINITION = {
    "segment_id": "big-spenders-365d",
    "name": "Spent 150 or more in the last year",
    "rule": {"sum": "purchase_days.amount", "within_days": 365, "op": "gte", "value": 150},
}
EXPERIMENT = {
    "experiment_id": "winback-10",
    "name": "10 % off for at-risk subscribers",
    "model": "lifecycle",
    "segment": "at_risk",
    "arms": [{"name": "holdout", "share": 0.2}, {"name": "treatment", "share": 0.8}],
    "starts_at": "2025-06-01T00:00:00Z",
}
PHASES = "examples,coverage,fuzzing"
"""Every phase but the stateful one: it fills a request's path ids from earlier answers after the
hooks ran, so a body's ids differ from the path's and the 400 the document states for
that reads as a failure (schemathesis 4.32.5; see tests/api_fuzz_hooks.py)."""
SHOP = "coffee-roaster-1"
"""The document's example shop, which the simulation has."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run did: requests sent, operations tested, failures found, the exit code and
    output of schemathesis."""

    requests: int
    operations: int
    failures: int
    exit_code: int
    output: str

    def line(self, seed: int) -> str:
        return (
            f"api-fuzz: {self.requests:,} requests, {self.operations} operations, "
            f"seed {seed}, failures {self.failures}"
        )


def _wait_handled(worker: WorkerProcess, expected: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (handled := worker.events_handled()) is None or handled < expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker handled too few events\n{worker.log_tail()}")
        time.sleep(0.5)


@contextmanager
def prepared(settings: Settings, data_dir: Path) -> Iterator[WorkerProcess]:
    """One worker with five months of the simulated shops, a defined segment and an
    experiment of the coffee roaster; stopped at the end."""
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess.for_settings(settings, data_dir, REPLAY_ENV)
    worker.start()
    try:
        worker.wait_ready(timeout_s=120)
        config = SimulationConfig(
            seed=5, shops_per_kind=1, customers_per_shop=30, start=date(2025, 6, 1), days=150
        )
        simulation = generate(config)
        asyncio.run(publish(simulation.outbox(), settings))
        _wait_handled(worker, len(simulation.events))
        for path, body in (("definitions", DEFINITION), ("experiments", EXPERIMENT)):
            status, answer = worker.request_json("POST", f"/shops/{SHOP}/{path}", body)
            assert status == 201, (path, status, answer)
        yield worker
    finally:
        worker.stop()


def fuzz(
    base_url: str, examples: int, seed: int, report_dir: Path, phases: str = PHASES
) -> Outcome:
    """Run schemathesis against ``base_url`` (``phases``, every check, ``examples`` cases
    per operation in the generating phases, one request at a time; the coverage phase
    makes its boundary cases whatever ``examples`` says)."""
    ndjson = report_dir / "events.ndjson"
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", str(SPEC)),
        *("--url", base_url, "--checks", "all", "--seed", str(seed)),
        *("--max-examples", str(examples), "--workers", "1", "--request-timeout", "30"),
        *("--header", f"Authorization: Bearer {PLATFORM_TOKEN}", "--no-color"),
        *("--generation-database", "none", "--suppress-health-check", "all"),
        *("--phases", phases),
        *("--report", "ndjson", "--report-ndjson-path", str(ndjson)),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api_fuzz_hooks", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    requests, operations, failures = _counts(ndjson)
    return Outcome(requests, operations, failures, done.returncode, done.stdout + done.stderr)


def _counts(ndjson: Path) -> tuple[int, int, int]:
    """Requests sent, operations tested and distinct failures, from the event log."""
    requests = failures = 0
    operations: set[str] = set()
    if not ndjson.exists():
        return 0, 0, 0
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished.get("recorder", {})
        requests += sum(1 for i in recorder.get("interactions", {}).values() if i.get("response"))
        if recorder.get("label"):
            operations.add(str(recorder["label"]))
        for checks in recorder.get("checks", {}).values():
            failures += sum(1 for check in checks if check.get("status") == "failure")
    return requests, len(operations), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="cases per operation")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one")
    parser.add_argument("--port", type=int, default=BROKER_PORT, help="the broker's port")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    with (
        tempfile.TemporaryDirectory(prefix="api-fuzz-") as scratch,
        fresh_broker(args.port, stem="api-fuzz-broker") as broker,
    ):
        settings = isolated_settings(broker.bootstrap, "api-fuzz")
        with prepared(settings, Path(scratch) / "worker") as worker:
            outcome = fuzz(worker.url(""), args.examples, seed, Path(scratch))
    print(outcome.output[-20_000:])
    print(outcome.line(seed))
    return 0 if outcome.exit_code == 0 and outcome.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
