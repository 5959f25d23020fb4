"""A subscription history imported with ``python -m segstream.tools.replay`` as a user runs
it, into a real worker: MRR and subscribers equal the pandas oracle over the same history,
the replay's report counts what the worker did (a second replay: every event a duplicate),
a history with refused rows sends nothing, and rows the worker refuses after all (its
earliest event time is later than the replay's) are reported as its dead letters.

The history starts in 1998, so both the worker and the replay run with an earlier
``SEGSTREAM_EARLIEST_EVENT_TIME``; pauses and resumes leave their plan columns empty (the
replay fills them in from the customer's earlier rows); the oracle is fed the events the
generator meant, not what the replay made of the CSV.
"""

from __future__ import annotations

import asyncio
import csv
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.kafka_io import end_offsets
from harness.workers import REPO_ROOT, WorkerProcess, isolated_settings
from segstream.domain.contracts import INPUT_ROLES
from segstream.domain.events import format_time
from segstream.settings import Settings
from tests.metrics_oracle import MetricsOracle

SHOP = "tea-backfill"
FIRST, DAYS = date(1998, 3, 1), 3 * 365
PLANS = [
    ("small-month", 14.9, "month"),
    ("big-month", 24.9, "month"),
    ("beans-quarter", 39.9, "quarter"),
    ("beans-year", 149.0, "year"),
    ("tea-week", 6.5, "week"),
]
HEADER = ["type", "customer_id", "date", "plan_id", "price", "interval", "amount"]
HEADER += ["effective_date", "reason"]
WORKER_ENV = {
    "SEGSTREAM_EARLIEST_EVENT_TIME": "1998-01-01T00:00:00Z",
    # the history's whole span as lateness (the topics are read independently) and kept
    "SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS": "1200",
    "SEGSTREAM_METRICS_RETENTION_DAYS": "1500",
}


@dataclass
class Customer:
    """One generated customer: the CSV rows and the events they mean."""

    name: str
    rng: random.Random
    rows: list[list[str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    plan: tuple[str, float, str] | None = None
    paused: tuple[str, float, str] | None = None
    subscribed: bool = False

    def emit(self, at: datetime, kind: str, row: dict[str, str], **event: Any) -> None:
        stamp = format_time(at)
        cells = {"type": kind, "customer_id": self.name, "date": stamp, **row}
        self.rows.append([cells.get(column, "") for column in HEADER])
        self.events.append(
            {"shop_id": SHOP, "customer_id": self.name, "occurred_at": stamp, **event}
        )

    def step(self, at: datetime) -> timedelta:
        """One row at ``at``; the gap to the next one."""
        draw = self.rng.random()
        if not self.subscribed:
            self.plan, self.subscribed = self.rng.choice(PLANS), True
            self.emit(at, "signup", _plan_cells(self.plan), type="signup", plan=_plan(self.plan))
        elif self.paused is not None:
            self.plan, self.paused = self.paused, None
            self.emit(at, "resume", {}, type="plan_changed", plan=_plan(self.plan))
        elif draw < 0.5:
            assert self.plan is not None
            self.emit(
                at,
                "renewal",
                {"amount": f"{self.plan[1]:.2f}"},
                type="order",
                amount=self.plan[1],
                is_renewal=True,
            )
        elif draw < 0.62:
            self.plan = self.rng.choice([p for p in PLANS if p != self.plan])
            self.emit(
                at,
                "plan_change",
                _plan_cells(self.plan),
                type="plan_changed",
                plan=_plan(self.plan),
            )
        elif draw < 0.7:
            assert self.plan is not None
            self.paused = self.plan
            paused = _plan((self.plan[0], 0.0, self.plan[2]))
            self.emit(at, "pause", {}, type="plan_changed", plan=paused)
        elif draw < 0.8:
            ends = at + timedelta(days=self.rng.randrange(0, 31))
            reason = self.rng.choice(["price", "moved", "Too expensive", ""])
            cells = {"effective_date": format_time(ends), "reason": reason}
            self.emit(
                at, "cancellation", cells, type="cancellation", effective_at=format_time(ends)
            )
            self.subscribed = False
            return timedelta(days=self.rng.randrange(40, 300))
        else:
            amount = round(self.rng.uniform(5, 60), 2)
            self.emit(
                at,
                "order",
                {"amount": f"{amount:.2f}"},
                type="order",
                amount=amount,
                is_renewal=False,
            )
        return timedelta(days=self.rng.randrange(7, 45))


def _plan(plan: tuple[str, float, str]) -> dict[str, Any]:
    return {"plan_id": plan[0], "price": plan[1], "currency": "EUR", "interval": plan[2]}


def _plan_cells(plan: tuple[str, float, str]) -> dict[str, str]:
    return {"plan_id": plan[0], "price": f"{plan[1]:.2f}", "interval": plan[2]}


def subscription_history(seed: int, customers: int) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """A shop's event-log export over three years from 1998 (rows in file order: by
    customer, as an export sorted by customer would be), and the events it means."""
    rng = random.Random(seed)
    end = datetime.combine(FIRST + timedelta(days=DAYS), datetime.min.time(), UTC)
    rows, events = [], []
    for number in range(customers):
        customer = Customer(f"c-{number:04d}", rng)
        start = FIRST + timedelta(days=rng.randrange(DAYS // 2))
        at = datetime.combine(start, datetime.min.time(), UTC) + timedelta(minutes=number)
        while at < end:
            at += customer.step(at)
        rows += customer.rows
        events += customer.events
    return rows, events


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def replay(
    worker: WorkerProcess, path: Path, shop: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The replay command as a user runs it, with the worker's settings."""
    command = [sys.executable, "-m", "segstream.tools.replay", str(path), "--shop-id", shop]
    return subprocess.run(
        [*command, "--wait", "60", "--progress-s", "1", *extra],
        cwd=REPO_ROOT,
        env={**worker.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def report_counts(stdout: str) -> dict[str, dict[str, int]]:
    """``  order: 120 processed, 2 duplicate`` lines of the report, as numbers."""
    counts: dict[str, dict[str, int]] = {}
    _, _, report = stdout.partition("replay: the worker ")
    for line in report.splitlines()[1:]:
        kind, colon, rest = line.strip().partition(": ")
        if (
            not colon
            or not line.startswith("  ")
            or line.startswith("   ")
            or kind.startswith(("dead", "("))
        ):
            continue
        for part in rest.split(", "):
            number, _, status = part.partition(" ")
            counts.setdefault(kind, {})[status] = int(number.replace(",", ""))
    return counts


def input_offsets(settings: Settings) -> dict[str, int]:
    """Offsets written to each input topic (all partitions)."""
    topics = [settings.topic(role) for role in INPUT_ROLES]
    return asyncio.run(end_offsets(settings.kafka_bootstrap, topics))


@pytest.fixture(scope="module")
def history() -> tuple[list[list[str]], list[dict[str, Any]]]:
    return subscription_history(seed=26, customers=60)


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "replay")


@pytest.fixture(scope="module")
def worker_env() -> dict[str, str]:
    """The worker's settings beyond ``settings``: :data:`WORKER_ENV`."""
    return WORKER_ENV


@pytest.fixture(scope="module")
def imported(
    worker: WorkerProcess,
    history: tuple[list[list[str]], list[dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = write_csv(tmp_path_factory.mktemp("csv") / "export.csv", history[0])
    env = {"SEGSTREAM_EARLIEST_EVENT_TIME": WORKER_ENV["SEGSTREAM_EARLIEST_EVENT_TIME"]}
    return path, replay(worker, path, SHOP, env=env)


def test_the_report_counts_what_the_worker_processed(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
    history: tuple[list[list[str]], list[dict[str, Any]]],
) -> None:
    _, done = imported
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = Counter(event["type"] for event in history[1])
    assert (
        "the worker (app id " in done.stdout
        and f"handled the {len(history[1]):,} events" in done.stdout
    )
    assert report_counts(done.stdout) == {kind: {"processed": n} for kind, n in kinds.items()}
    assert "dead letters" not in done.stdout and "other producers" not in done.stdout
    assert "  note: import this history once: a customer has up to " in done.stdout
    progress = [line for line in done.stderr.splitlines() if line.startswith("replay: sent ")]
    assert progress and progress[-1].startswith(f"replay: sent {len(history[1]):,}/")
    assert "/s, about 0 s left" in progress[-1]


def test_mrr_and_subscribers_equal_the_oracle(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
    worker: WorkerProcess,
    history: tuple[list[list[str]], list[dict[str, Any]]],
) -> None:
    assert imported[1].returncode == 0
    oracle = MetricsOracle(
        [{"schema_version": 1, "event_id": str(i), **e} for i, e in enumerate(history[1])]
    )
    compared = []
    for month in ("1998-09-01", "1999-06-01", "2000-01-01", "2000-12-01", "2001-02-01"):
        status, got = worker.get_json(f"/shops/{SHOP}/metrics?grain=month&start={month}")
        assert status == 200, got
        expected = oracle.window(
            SHOP, date.fromisoformat(got["start"]), date.fromisoformat(got["end"])
        )
        assert (got["subscribers"]["start"], got["subscribers"]["end"]) == (
            expected["subscribers_start"],
            expected["subscribers_end"],
        ), month
        assert got["subscribers"]["churned"] == expected["churned_subscribers"], month
        assert (
            got["signups"] == expected["signups"] and got["orders"]["count"] == expected["orders"]
        )
        for name, value in (
            ("start", "mrr_start"),
            ("end", "mrr_end"),
            ("new", "new_mrr"),
            ("churn", "churn_mrr"),
        ):
            assert got["mrr"][name] == pytest.approx(expected[value], abs=1e-4), (month, name)
        compared.append(expected["subscribers_end"])
    assert min(compared) > 5, compared  # a shop with subscribers all along, not an empty one


def test_a_second_replay_within_the_dedup_window_is_all_duplicates(
    worker: WorkerProcess,
) -> None:
    """The example event log (a year, at most 9 events per customer) sent twice: the
    second time every event is a duplicate (ids come from the rows). A longer history is
    imported once: the first replay's summary said so."""
    path = REPO_ROOT / "schemas" / "examples" / "replay" / "events.csv"
    first = replay(worker, path, "tea-example")
    again = replay(worker, path, "tea-example")
    assert (first.returncode, again.returncode) == (0, 0), first.stdout + again.stdout
    sent = report_counts(first.stdout)
    assert sent == {kind: {"processed": count["processed"]} for kind, count in sent.items()}
    assert sum(count["processed"] for count in sent.values()) == 19
    assert report_counts(again.stdout) == {
        kind: {"duplicate": count["processed"]} for kind, count in sent.items()
    }
    assert "import this history once" not in first.stdout


def test_a_history_with_refused_rows_sends_nothing(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    rows = [
        ["signup", "c-1", "2000-01-05T00:00:00Z", "p", "9.00", "month", "", "", ""],
        ["signup", "c-2\x07", "2000-01-06T00:00:00Z", "p", "9.00", "month", "", "", ""],
        [
            "renewal",
            "c-1",
            format_time(datetime.now(UTC) + timedelta(days=365)),
            "",
            "",
            "",
            "9",
            "",
            "",
        ],
        ["renewal", "c-1", "1997-06-01T00:00:00Z", "", "", "", "9", "", ""],
    ]
    path = write_csv(tmp_path / "bad.csv", rows)
    before = input_offsets(settings)
    refused = replay(worker, path, "refused-shop")
    assert refused.returncode == 2 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert lines[0] == "replay: refused: 3 of 4 rows; nothing sent"
    assert [line.split(": ")[0:2] for line in lines[1:4]] == [
        [f"  {path}:3", "schema_invalid"],
        [f"  {path}:4", "implausible_time"],
        [f"  {path}:5", "implausible_time"],
    ]
    assert input_offsets(settings) == before


def test_rows_the_worker_refuses_after_all_are_reported_as_its_dead_letters(
    imported: tuple[Path, subprocess.CompletedProcess[str]], worker: WorkerProcess, tmp_path: Path
) -> None:
    """The replay runs with an earlier bound than the worker (1990 against 1998): it says
    the worker needs the same setting, sends, and reports the worker's dead letters."""
    rows = [
        ["signup", "c-1", "1995-01-05T00:00:00Z", "p", "9.00", "month", "", "", ""],
        ["renewal", "c-1", "1998-02-05T00:00:00Z", "", "", "", "9", "", ""],
    ]
    path = write_csv(tmp_path / "older.csv", rows)
    env = {"SEGSTREAM_EARLIEST_EVENT_TIME": "1990-01-01T00:00:00Z"}
    mismatch = replay(worker, path, "older-shop", env=env)
    assert mismatch.returncode == 1, mismatch.stdout + mismatch.stderr
    assert "the worker needs the same setting" in mismatch.stdout
    assert report_counts(mismatch.stdout) == {
        "signup": {"dead-lettered": 1},
        "order": {"processed": 1},
    }
    lines = mismatch.stdout.splitlines()
    assert "  dead letters of this replay: 1 (implausible_time 1)" in lines
    assert (
        f"    {path}:2: implausible_time: $.occurred_at: '1995-01-05T00:00:00Z' is before "
        "1998-01-01T00:00:00Z"
    ) in lines
