"""The data side of ``bench.quality``: histories with a cut, what customers did before
and after it, the replay of the calibration period through the worker's pipeline, and
every customer's answer of the query API at the cut (definitions: ``bench.quality``)."""

from __future__ import annotations

import io
import math
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.anchors import CDNOW_SHOP, MASTER, SHIFT, cdnow_csv
from bench.common import Progress
from harness.stores import InProcessPipeline
from segstream.api import queries
from segstream.domain.events import BY_TYPE_NAME, parse_time
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.tools.publish import encode
from segstream.tools.replay import read_orders
from segstream.tools.simulation import SimulationConfig, generate

Key = tuple[str, str]
"""(shop id, customer id)."""
BATCH = 500
"""Records per commit of the in-process pipeline (the worker commits batches too)."""
SNAPSHOT_DAYS = 30
EXPECTED_ORDERS_FIELD = re.compile(r"expected_orders_(\d+)d")
"""segstream's expected orders in the customer answer's ``lifetime``: one field per horizon,
``expected_orders_30d`` and so on (the ``predictions.*`` rule fields mirror these names)."""
SIM_START = date(2024, 1, 1)
QUICK_EVERY = 3
"""``--quick`` replays every third CDNOW customer (the sample is itself every tenth of the
full log: a smaller sample of the same shop)."""


# ---------------------------------------------------------------- histories


@dataclass(frozen=True)
class History:
    """A log of events (send order) with a cut: calibration up to ``cut``'s midnight,
    holdout after it up to the end of ``end``."""

    name: str
    events: Sequence[dict[str, Any]]
    cut: date
    end: date
    description: str
    personas: Mapping[Key, str] = field(default_factory=dict)

    @property
    def as_of(self) -> datetime:
        """The cut as an instant: midnight UTC starting the calibration's last day."""
        return datetime(self.cut.year, self.cut.month, self.cut.day, tzinfo=UTC)

    @property
    def holdout_days(self) -> int:
        return (self.end - self.cut).days

    def calibration(self) -> list[dict[str, Any]]:
        """The events up to the cut, in send order."""
        return [e for e in self.events if parse_time(e["occurred_at"]) <= self.as_of]


def cdnow_histories(quick: bool) -> list[History]:
    """The paper's split and the earlier cut, both to 1998-06-30; ``quick``: the paper's
    split of every third customer (by id) only."""
    events = read_orders(io.StringIO(cdnow_csv()), shop_id=CDNOW_SHOP)
    if quick:
        ids = sorted({e["customer_id"] for e in events})
        kept = set(ids[::QUICK_EVERY])
        events = [e for e in events if e["customer_id"] in kept]
    end = date(1998, 6, 30)
    cuts = [date(1997, 9, 30)] if quick else [date(1997, 9, 30), date(1997, 6, 30)]
    sample = f"every {QUICK_EVERY}rd customer of the CDNOW sample" if quick else "CDNOW sample"
    return [
        History(
            f"CDNOW {cut.isoformat()}",
            events,
            cut + SHIFT,
            end + SHIFT,
            f"{sample}, calibration 1997-01-01 … {cut.isoformat()}, holdout "
            f"{(cut + timedelta(days=1)).isoformat()} … {end.isoformat()} "
            f"({(end - cut).days} days){', the paper split' if cut.month == 9 else ''}",
        )
        for cut in cuts
    ]


def cdnow_master_history() -> History:
    """The full CDNOW log (23,570 customers, 69,659 purchases; the sample is every tenth
    customer of it) with the paper's split: the history issue 25 first measured."""
    events = read_orders(io.StringIO(cdnow_csv(MASTER)), shop_id=CDNOW_SHOP)
    cut, end = date(1997, 9, 30), date(1998, 6, 30)
    return History(
        "CDNOW master 1997-09-30",
        events,
        cut + SHIFT,
        end + SHIFT,
        f"the full CDNOW log, calibration 1997-01-01 … {cut.isoformat()}, holdout "
        f"{(cut + timedelta(days=1)).isoformat()} … {end.isoformat()} ({(end - cut).days} "
        "days), the paper split",
    )


def in_shops_of(history: History, customers: int) -> History:
    """The history with its customers dealt, in id order, into shops of ``customers``
    (``<shop>-<n>``; the last may be smaller): small shops of the same behaviour."""
    ids = sorted({(e["shop_id"], e["customer_id"]) for e in history.events})
    shop_of = {key: f"{key[0]}-{n // customers}" for n, key in enumerate(ids)}
    events = [{**e, "shop_id": shop_of[e["shop_id"], e["customer_id"]]} for e in history.events]
    personas = {(shop_of[key], key[1]): p for key, p in history.personas.items()}
    return replace(
        history,
        events=events,
        personas=personas,
        description=f"{history.description}; in shops of {customers} customers",
    )


def interleaved(history: History, seed: int) -> History:
    """The history with its input topics interleaved at random within each week (a
    worker reads signups, orders and cancellations from three topics, in whatever order
    its fetches return): each topic's own order is kept."""
    rng = random.Random(seed)
    weeks: defaultdict[int, defaultdict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for event in history.events:
        week = parse_time(event["occurred_at"]).toordinal() // 7
        weeks[week][BY_TYPE_NAME[event["type"]].topic_role].append(event)
    events = []
    for week in sorted(weeks):
        queues = [list(reversed(queue)) for _, queue in sorted(weeks[week].items())]
        while queues:
            queue = rng.choice(queues)
            events.append(queue.pop())
            if not queue:
                queues.remove(queue)
    return replace(
        history,
        events=events,
        description=f"{history.description}; topics interleaved at random (seed {seed})",
    )


def simulator_history(customers: int, days: int, holdout_days: int, seed: int) -> History:
    """Every simulated shop kind over ``days`` days, the last ``holdout_days`` the holdout."""
    config = SimulationConfig(seed=seed, customers_per_shop=customers, start=SIM_START, days=days)
    simulated = generate(config)
    end = SIM_START + timedelta(days=days - 1)
    cut = end - timedelta(days=holdout_days)
    shops = len(config.shop_list())
    return History(
        "simulator",
        simulated.events,
        cut,
        end,
        f"simulator seed {seed}: {shops} shops (one of each kind) of {customers} customers, "
        f"{SIM_START.isoformat()} … {end.isoformat()}, holdout the last {holdout_days} days",
        {(t.shop_id, t.customer_id): t.persona for t in simulated.truth},
    )


# ---------------------------------------------------------------- what customers did


@dataclass(frozen=True, slots=True)
class Observed:
    """A customer's purchase history as of the cut (lifetimes' definitions, in days) and
    their purchase days after it."""

    frequency: int
    recency: float
    T: float
    quiet_days: float
    later: tuple[date, ...]

    @property
    def buys_again(self) -> bool:
        return bool(self.later)

    def buys_within(self, cut: date, days: int) -> bool:
        """At least one purchase day in the ``days`` days after the cut."""
        return self.orders(cut, days) > 0

    def orders(self, cut: date, days: int) -> int:
        """Purchase days in the ``days`` days after the cut."""
        return sum(1 for day in self.later if (day - cut).days <= days)


def observe(history: History) -> dict[Key, Observed]:
    """Every customer with a purchase up to the cut, computed from the log itself."""
    before: defaultdict[Key, set[date]] = defaultdict(set)
    after: defaultdict[Key, set[date]] = defaultdict(set)
    for event in history.events:
        if event["type"] != "order":
            continue
        at = parse_time(event["occurred_at"])
        key = (event["shop_id"], event["customer_id"])
        if at <= history.as_of:
            before[key].add(at.date())
        elif at.date() <= history.end:
            after[key].add(at.date())
    found = {}
    for key, days in sorted(before.items()):
        first, last = min(days), max(days)
        found[key] = Observed(
            frequency=len(days) - 1,
            recency=float((last - first).days),
            T=float((history.cut - first).days),
            quiet_days=float((history.cut - last).days),
            later=tuple(sorted(after.get(key, ()))),
        )
    return found


# ---------------------------------------------------------------- the replay


@dataclass
class Stability:
    """Cluster stability over pairs of snapshots 30 days apart (see the module docstring)."""

    kept: int = 0
    eligible: int = 0
    pairs: int = 0
    last_kept: int = 0
    last_eligible: int = 0

    def add(self, before: Mapping[Key, str], after: Mapping[Key, str], moved: set[Key]) -> None:
        """One pair: clusters at d, at d + 30, and who had an event in between."""
        quiet = [k for k in before if k in after and k not in moved]
        if not quiet:
            return  # nobody clustered yet (the model warms up)
        kept = sum(1 for k in quiet if before[k] == after[k])
        self.kept += kept
        self.eligible += len(quiet)
        self.pairs += 1
        self.last_kept, self.last_eligible = kept, len(quiet)

    @property
    def share(self) -> float:
        return self.kept / self.eligible if self.eligible else math.nan

    @property
    def last(self) -> float:
        return self.last_kept / self.last_eligible if self.last_eligible else math.nan


class Replay:
    """A history's calibration period through one in-process worker pipeline, with the
    clock moved to every snapshot day and to the cut; tallies what came out."""

    def __init__(self, history: History, settings: Settings) -> None:
        self.history = history
        self.settings = settings
        self.worker = InProcessPipeline(settings)
        self.events = history.calibration()
        self.shops = sorted({e["shop_id"] for e in self.events})
        self.changes: Counter[str] = Counter()
        self.carried: defaultdict[str, set[str]] = defaultdict(set)
        self.formed: Counter[str] = Counter()
        self.first_seen: dict[Key, datetime] = {}
        self.stability = Stability()
        self.most_carried: Counter[str] = Counter()
        """Per shop, the most cluster ids its customers carried at once (at a snapshot)."""
        self.seconds = 0.0
        self._moved: set[Key] = set()
        self._snapshot: dict[Key, str] | None = None

    @property
    def pipeline(self) -> Pipeline:
        """The worker's pipeline (what the query API's functions read)."""
        return self.worker.pipeline

    def snapshot_days(self) -> list[datetime]:
        """The cut and every 30 days before it, back to the first event; oldest first."""
        first = parse_time(self.events[0]["occurred_at"])
        found, at = [], self.history.as_of
        while at > first:
            found.append(at)
            at -= timedelta(days=SNAPSHOT_DAYS)
        return found[::-1]

    def run(self) -> Replay:
        """Handle every calibration event in send order, snapshotting on the way."""
        started = time.monotonic()
        progress = Progress(f"{self.history.name}: replay", len(self.events))
        due = self.snapshot_days()
        for n, event in enumerate(self.events, start=1):
            at = parse_time(event["occurred_at"])
            while due and at > due[0]:
                self._take_snapshot(due.pop(0))
            self._handle(event, at)
            if n % BATCH == 0:
                self.worker.commit()
                self._pass_step()
            progress.update(n)
        for moment in due:
            self._take_snapshot(moment)
        self.seconds = time.monotonic() - started
        return self

    def _handle(self, event: dict[str, Any], at: datetime) -> None:
        """One event as the worker reads it from its topic (encoded as a platform sends it)."""
        key = (event["shop_id"], event["customer_id"])
        self.first_seen.setdefault(key, at)
        self._moved.add(key)
        kind = BY_TYPE_NAME[event["type"]]
        self._tally(self.worker.handle(kind, kind.topic_role, encode(event), key[0]))

    def _pass_step(self) -> bool:
        """One step of every unfinished pass over a shop's customers (a re-evaluation, the
        moves out of retired clusters), committed, as the worker's timer runs them between
        batches; whether any ran."""
        shops = self.pipeline.reevaluating()
        for shop_id in shops:
            outcome = self.pipeline.reevaluate(shop_id, self.settings.reevaluation_customers)
            if outcome is not None:
                self._tally(outcome)
        if shops:
            self.worker.commit(*{shop_partition(s, self.settings.topic_partitions) for s in shops})
        return bool(shops)

    def _take_snapshot(self, moment: datetime) -> None:
        """Move every shop's clock to ``moment`` (its reviews happen), finish the passes
        under way, commit, and compare the clusters customers carry with those of the
        previous snapshot."""
        for shop_id in self.shops:
            outcome = self.pipeline.advance_clock(shop_id, moment, self._live_s(shop_id, moment))
            if outcome is not None:
                self._tally(outcome)
        partitions = [shop_partition(s, self.settings.topic_partitions) for s in self.shops]
        self.worker.commit(*partitions)
        while self._pass_step():
            pass
        clusters = {
            (shop_id, state.customer_id): state.segments["cluster"]
            for shop_id in self.shops
            for state in self.pipeline.shop_customers(shop_id)
            if "cluster" in state.segments
        }
        for shop_id in self.shops:
            carried = len(self.pipeline.book(shop_id).sizes.get("cluster", {}))
            self.most_carried[shop_id] = max(self.most_carried[shop_id], carried)
        if self._snapshot is not None:
            self.stability.add(self._snapshot, clusters, self._moved)
        self._snapshot, self._moved = clusters, set()

    def _live_s(self, shop_id: str, moment: datetime) -> float:
        """``advance_clock``'s live window for moving the shop's clock to ``moment``: the
        shop counts as live and half a window behind, so its clock moves even when nobody
        is due (a worker moves a live shop's clock so; with nobody due at the cut, a shop's
        answers were a day early)."""
        now = self.pipeline.stream_time(shop_id)
        behind = 0.0 if now is None else (moment - now).total_seconds()
        return max(2.0 * behind - 1.0, behind, 1.0)

    def _tally(self, outcome: Outcome) -> None:
        for change in outcome.changes:
            self.changes[change.model] += 1
            if change.model == "cluster" and change.current is not None:
                self.carried[change.shop_id].add(change.current)
        for formed in outcome.formed:
            if formed.model == "cluster":
                self.formed[formed.shop_id] += 1

    def changes_per_customer_month(self) -> dict[str, float]:
        """Segment changes per customer per 30 days of their time in the stream."""
        months = sum(
            (self.history.as_of - at).total_seconds() / (30 * 86_400)
            for at in self.first_seen.values()
        )
        return {model: count / months for model, count in sorted(self.changes.items())}


# ---------------------------------------------------------------- what segstream says


@dataclass(frozen=True, slots=True)
class Judgment:
    """One customer's answer of the query API (``GET /shops/{shop}/customers/{id}``)."""

    churn_probability: float | None
    churn_horizon: float | None
    """Days the churn probability is of (no order within them), from ``scores.churn_risk``."""
    lifecycle: str | None
    p_alive: float | None
    clv_365d: float | None
    rfm: tuple[int, int, int] | None
    cluster: str | None
    """The cluster segment the customer carries."""
    scored_cluster: str | None
    """The cluster ``scores.cluster`` names (the live model's answer)."""
    expected_orders: dict[int, float]
    facts: tuple[int, float, float]
    """frequency, recency, T of the answer's features."""


def judgment(answer: Mapping[str, Any]) -> Judgment:
    """The parts of a customer answer the benchmark scores."""
    found = answer["scores"]
    lifetime = answer["lifetime"] or {}
    rfm = found.get("rfm")
    features = answer["features"]
    return Judgment(
        churn_probability=(found.get("churn_risk") or {}).get("probability"),
        churn_horizon=(found.get("churn_risk") or {}).get("horizon_days"),
        lifecycle=answer["segments"].get("lifecycle"),
        p_alive=lifetime.get("p_alive"),
        clv_365d=lifetime.get("clv_365d"),
        rfm=None if rfm is None else (rfm["recency"], rfm["frequency"], rfm["monetary"]),
        cluster=answer["segments"].get("cluster"),
        scored_cluster=(found.get("cluster") or {}).get("cluster"),
        expected_orders=expected_orders(lifetime),
        facts=(features["frequency"], features["recency"], features["T"]),
    )


def expected_orders(lifetime: Mapping[str, Any]) -> dict[int, float]:
    """segstream's expected orders by horizon in days (see :data:`EXPECTED_ORDERS_FIELD`).

    >>> expected_orders({"expected_orders_90d": 0.4, "expected_orders_30d": None, "p_alive": 1})
    {90: 0.4}
    """
    found = {}
    for name, value in lifetime.items():
        match = EXPECTED_ORDERS_FIELD.fullmatch(name)
        if match and value is not None:
            found[int(match.group(1))] = float(value)
    return dict(sorted(found.items()))


def judge(replay: Replay, keys: Iterable[Key]) -> dict[Key, Judgment]:
    """Every customer's answer, read as the query API reads it, as of the cut."""
    return {
        key: judgment(queries.customer(replay.pipeline.reader, key[0], key[1]))
        for key in sorted(keys)
    }
