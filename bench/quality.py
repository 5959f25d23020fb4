"""How good segstream's judgments are: who buys again, how many orders, which group.

``python -m bench.quality [--quick]`` (``make bench-quality``) replays order histories in
time order through the worker's own pipeline, tables and codecs in-process
(:class:`harness.stores.InProcessPipeline`, no broker), up to a cut; reads every customer's
answer from the query API's functions (:mod:`segstream.api.queries`) as of the cut; and
compares those answers with what the customers did after it (the holdout), side by side
with what a data scientist would compute instead.

Histories (each a shop's log replayed from its start):

- ``CDNOW 1997-09-30``: the CDNOW sample (``bench.anchors``: 2,357 customers, 6,919
  purchases) with the paper's split, calibration 1997-01-01 … 1997-09-30 and holdout
  1997-10-01 … 1998-06-30 (273 days). One shop; every purchase is an ``order`` event of the
  transaction CSV ``python -m segstream.tools.replay`` reads (no signups: CDNOW's customers
  are retail buyers, not subscribers; dates 28 years later, see ``bench.anchors.SHIFT``).
- ``CDNOW 1997-06-30``: the same customers cut three months earlier; holdout
  1997-07-01 … 1998-06-30 (365 days).
- ``simulator``: every shop kind of ``segstream.tools.simulation`` with the default persona
  mix (signups, orders, renewals, cancellations), the last 273 days the holdout.
- ``CDNOW master 1997-09-30`` (``--master``): the full log, 23,570 customers, paper split.

Variants of every history: ``--shop-customers N`` deals its customers (in id order) into
shops of N (how small shops fare, each on its own); ``--interleave SEED`` interleaves the
input topics at random within each week (the order a worker's fetches may give).

Definitions (all as of the cut: midnight UTC starting the calibration's last day, lifetimes'
``observation_period_end``; the pipeline's clock is moved there with
``Pipeline.advance_clock``, as the worker's wall-clock timer moves a live shop's):

- customers: those with a purchase in the calibration period; ``orders``: distinct purchase
  days (what BG/NBD counts; CDNOW has 223 same-day repeat purchases);
- ``buys again``: at least one order (renewals included) in the holdout; AUC is the chance
  that a random customer who did ranks above one who did not (0.5 a coin), every signal
  oriented so that higher means "buys again";
- log loss and Brier: for signals that are a probability of buying again in the holdout;
  ``base rate`` predicts the holdout's observed share for everyone (the best constant, an
  oracle: a probability that loses to it is worse than knowing nothing about the customer);
- ``AUC, same customers``: BG/NBD's AUC on just the customers a signal covers (a signal
  that covers few customers is only comparable there);
- stability: customers who carry a cluster at day d and at d + 30, and had no event of their
  own in between (for CDNOW: no order), who carry the same one at d + 30, pooled over every
  such pair of snapshots d = cut - 30 k (k >= 1) of the replay; ``last`` the pair ending at
  the cut; ARI: clusters at the cut against the simulator's planted personas (per shop);
  ``most at once``: the most cluster ids a shop's customers carried at a snapshot.

Results: tables on stdout, progress on stderr, one JSON line per run appended to
``bench/results/quality.jsonl``. Figures are deterministic for a given code revision and
``SEGSTREAM_*`` settings (which the worker reads from the environment, as here).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import scores
from bench.anchors import MissingDependencyError
from bench.common import code_version, table
from bench.quality_figures import (
    BG_PROBABILITY,
    CHURN,
    Result,
    churn_quality,
    clusters,
    measure,
    reliability,
)
from bench.quality_replay import (
    History,
    cdnow_histories,
    cdnow_master_history,
    in_shops_of,
    interleaved,
    simulator_history,
)
from harness.workers import settings_env
from segstream.settings import ConfigError, Settings, load_settings
from segstream.tools.simulate import one_line

RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- tables


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:+.1%}"


def signal_table(result: Result) -> str:
    """The signals of one history: coverage, AUC, losses, forecast of orders."""
    headers = ["signal", "customers", "AUC", "± 95 %", "AUC BG/NBD same customers"]
    headers += ["log loss", "Brier", "losses of", "orders predicted", "orders actual", "error"]
    body = []
    for row in result.rows:
        if row.covered == 0:
            body.append([row.signal, "0", "n/a", *[""] * 8])
            continue
        predicted = "" if row.predicted is None else f"{row.predicted:,.0f} ({row.horizon} d)"
        actual = "" if row.actual is None else f"{row.actual:,}"
        cells = [f"{row.covered:,}", _number(row.auc), _number(row.auc_margin)]
        cells += [_number(row.auc_same_customers), _number(row.log_loss), _number(row.brier)]
        cells.append("" if row.log_loss is None else _label(row.label_days))
        body.append([row.signal, *cells, predicted, actual, _percent(row.error)])
    return table(headers, body)


def _label(days: int | None) -> str:
    """What a probability's log loss and Brier are against."""
    return "holdout" if days is None else f"next {days} d"


def horizon_table(result: Result) -> str:
    """Expected orders against the orders that came, at every horizon."""
    body = []
    for row in result.forecasts:
        if row.covered == 0:
            body.append([row.signal, "0", "n/a", "", ""])
            continue
        cells = [f"{row.covered:,}", f"{row.predicted or 0:,.0f}", f"{row.actual or 0:,}"]
        body.append([row.signal, *cells, _percent(row.error)])
    return table(["expected orders", "customers", "predicted", "actual", "error"], body)


def reliability_table(result: Result) -> str:
    found = reliability(result)
    ours, theirs = found[CHURN], found[BG_PROBABILITY]
    body = []
    for decile in range(max(len(ours), len(theirs))):
        cells = [f"{decile + 1}"]
        for bins in (ours, theirs):
            if decile < len(bins):
                b = bins[decile]
                flag = " !" if abs(b.gap) > 0.05 else ""
                cells += [
                    f"{b.count:,}",
                    _number(b.predicted),
                    _number(b.observed),
                    f"{b.gap:+.3f}{flag}",
                ]
            else:
                cells += ["", "", "", ""]
        body.append(cells)
    headers = ["decile", "n", "segstream p", "observed", "gap"]
    headers += ["n", "BG/NBD p", "observed", "gap"]
    return table(headers, body)


def churn_quality_table(result: Result) -> str:
    body = []
    for shop in churn_quality(result):
        q = shop["models"]
        auc = q.get("roc_auc")
        within = shop["within_auc"]
        gap = None if auc is None or math.isnan(within) else auc - within
        body.append(
            [
                shop["shop_id"],
                f"{q.get('labelled', 0):,.0f}",
                _number(auc),
                _number(q.get("log_loss")),
                _number(q.get("brier")),
                _number(within),
                "" if gap is None else f"{gap:+.3f}",
                _number(shop["holdout_auc"]),
            ]
        )
    headers = ["shop", "labelled", "/models AUC", "log loss", "Brier"]
    headers += ["holdout AUC, same label", "gap", "holdout AUC, buys again"]
    return table(headers, body)


def _span(values: Sequence[float | None], digits: int = 0) -> str:
    """One value, or the range over shops."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"


def cluster_table(results: Sequence[Result]) -> str:
    body = []
    for result in results:
        found = clusters(result)
        shops = found["shops"]
        body.append(
            [
                result.history.name,
                f"{found['clustered']:,}",
                _span([s["carried"] for s in shops]),
                _span([s["most_carried"] for s in shops]),
                _span([s["models_clusters"] for s in shops]),
                _span([s["carried_ever"] for s in shops]),
                _span([s["formed"] for s in shops]),
                _span([s["largest_share"] for s in shops], 2),
                f"{_number(found['stability'], 2)} ({found['stability_pairs']} pairs)",
                _number(found["stability_last"], 2),
                _span([s["models_stability"] for s in shops], 2),
                f"{found['disagreeing']:,}",
                _number(found["ari"], 2),
            ]
        )
    headers = ["history", "clustered", "ids carried", "most at once", "/models clusters"]
    headers += ["ids ever carried"]
    headers += ["formed", "largest share", "stability", "last 30 d", "/models stability"]
    headers += ["segment ≠ scores", "ARI personas"]
    return table(headers, body)


def names_table(results: Sequence[Result]) -> str:
    """The clusters of each one-shop history at the cut, with the names an owner sees."""
    parts = []
    for result in results:
        named = clusters(result)["named"]
        if named:
            body = [[row["segment"], row["name"] or "", f"{row['customers']:,}"] for row in named]
            title = f"{result.history.name}:"
            parts.append(f"{title}\n\n" + table(["cluster", "name", "customers"], body))
    return "\n\n".join(parts)


def history_report(result: Result) -> str:
    history, replay = result.history, result.replay
    rates = ", ".join(f"{m} {v:.2f}" for m, v in replay.changes_per_customer_month().items())
    lines = [
        f"## {history.name}: {history.description}",
        "",
        f"{len(result.observed):,} customers, {result.base_rate:.1%} bought again in the holdout; "
        f"frequency, recency and T exact for {result.facts_exact():,}; "
        f"{len(replay.events):,} events replayed in {replay.seconds:.1f} s",
        "",
        signal_table(result),
        "",
        horizon_table(result),
        "",
        "Reliability of P(buys within the churn horizon) by decile, against an order within "
        "it (equal-count bins; ! = more than 0.05 off):",
        "",
        reliability_table(result),
        "",
        "churn_risk's own progressive validation (GET /shops/{shop}/models; positive = churned) "
        "beside the holdout (same label: no order within the horizon):",
        "",
        churn_quality_table(result),
        "",
        f"Segment changes per customer per 30 days: {rates}",
    ]
    return "\n".join(lines)


def report(results: Sequence[Result]) -> str:
    parts = [history_report(result) for result in results]
    parts.append("## Clusters at the cut\n\n" + cluster_table(results))
    named = names_table(results)
    if named:
        parts.append("Names at the cut (GET /shops/{shop}/segments):\n\n" + named)
    return "\n\n".join(parts)


# ---------------------------------------------------------------- the record


def _clean(value: Any) -> Any:
    """JSON-ready: NaN as null, tuples as lists, dataclasses as dicts."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, scores.Bin):
        return {
            "count": value.count,
            "predicted": _clean(value.predicted),
            "observed": value.observed,
        }
    return value


def record(
    results: Sequence[Result], settings: Settings, quick: bool, seconds: float
) -> dict[str, Any]:
    """The run as one JSON object (see ``bench/results/quality.jsonl``)."""
    histories = {}
    for result in results:
        histories[result.history.name] = {
            "description": result.history.description,
            "customers": len(result.observed),
            "base_rate": result.base_rate,
            "facts_exact": result.facts_exact(),
            "bg_nbd": result.fits,
            "events": len(result.replay.events),
            "signals": [row.__dict__ | {"error": row.error} for row in result.rows],
            "forecasts": [row.__dict__ | {"error": row.error} for row in result.forecasts],
            "reliability": reliability(result),
            "churn_quality": churn_quality(result),
            "clusters": clusters(result),
            "changes_per_customer_30d": result.replay.changes_per_customer_month(),
        }
    found: dict[str, Any] = _clean(
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "revision": code_version(),
            "quick": quick,
            "settings": settings_env(settings),
            "seconds": round(seconds, 1),
            "histories": histories,
        }
    )
    return found


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class Plan:
    """What to run: the CDNOW splits and the simulator's size."""

    quick: bool = False
    simulator_customers: int = 200
    simulator_days: int = 730
    simulator_holdout_days: int = 273
    seed: int = 1
    master: bool = False
    """Also the full CDNOW log with the paper's split (23,570 customers; ~3 min more)."""
    shop_customers: int | None = None
    """Deal every history's customers into shops of this many (small shops)."""
    interleave: int | None = None
    """Interleave the input topics at random within each week, with this seed."""


QUICK = Plan(quick=True, simulator_customers=40, simulator_days=365, simulator_holdout_days=91)


def histories(plan: Plan) -> list[History]:
    found = [
        *cdnow_histories(plan.quick),
        *([cdnow_master_history()] if plan.master else []),
        simulator_history(
            plan.simulator_customers, plan.simulator_days, plan.simulator_holdout_days, plan.seed
        ),
    ]
    if plan.shop_customers is not None:
        found = [in_shops_of(history, plan.shop_customers) for history in found]
    if plan.interleave is not None:
        found = [interleaved(history, plan.interleave) for history in found]
    return found


def run(plan: Plan, settings: Settings) -> list[Result]:
    """Measure every history of ``plan``."""
    return [measure(history, settings) for history in histories(plan)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality", description=(__doc__ or "").split("\n\n")[0]
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="every 3rd CDNOW customer, paper split; small simulator",
    )
    add("--simulator-customers", type=int, default=Plan.simulator_customers, help="per shop")
    add("--simulator-days", type=int, default=Plan.simulator_days)
    add("--simulator-holdout-days", type=int, default=Plan.simulator_holdout_days)
    add("--seed", type=int, default=Plan.seed, help="of the simulator")
    add("--master", action="store_true", help="also the full CDNOW log (~3 min more)")
    add("--shop-customers", type=int, help="deal each history into shops of this many")
    add("--interleave", type=int, metavar="SEED", help="topics interleaved within weeks")
    add("--no-record", action="store_true", help="do not append to results/quality.jsonl")
    return parser


def plan_of(args: argparse.Namespace) -> Plan:
    """The plan the command line asks for (``--quick`` replaces the simulator's size)."""
    variants = {
        "master": args.master,
        "shop_customers": args.shop_customers,
        "interleave": args.interleave,
    }
    if args.quick:
        return replace(QUICK, **variants)
    sizes = (args.simulator_customers, args.simulator_days, args.simulator_holdout_days)
    return Plan(False, *sizes, seed=args.seed, **variants)


def headline(plan: Plan, settings: Settings, seconds: float) -> str:
    """The conditions of the run, above its tables."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    changed = settings_env(settings) or "defaults"
    kind = "quick, " if plan.quick else ""
    kind += "" if plan.shop_customers is None else f"shops of {plan.shop_customers}, "
    kind += "" if plan.interleave is None else f"interleaved (seed {plan.interleave}), "
    return f"quality {when}: code {code_version()}, {kind}{seconds:,.0f} s, settings {changed}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the plan, print the tables, append the record."""
    args = _parser().parse_args(argv)
    plan = plan_of(args)
    started = time.monotonic()
    try:
        settings = load_settings()
        results = run(plan, settings)
    except (ConfigError, MissingDependencyError) as error:
        print(f"bench.quality: {one_line(str(error))}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    print(headline(plan, settings, seconds), end="\n\n")
    print(report(results))
    if not args.no_record:
        RESULTS.mkdir(exist_ok=True)
        with (RESULTS / "quality.jsonl").open("a") as out:
            out.write(json.dumps(record(results, settings, plan.quick, seconds)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
