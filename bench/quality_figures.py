"""The scoring side of ``bench.quality``: the signals (lifetimes' BG/NBD offline, naive
recency, segstream's answers), their AUC, losses and forecasts, and the cluster figures
(definitions: ``bench.quality``)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench import scores
from bench.anchors import BgNbdAnchor
from bench.common import say
from bench.quality_replay import (
    History,
    Judgment,
    Key,
    Observed,
    Replay,
    judge,
    observe,
)
from segstream.api import queries
from segstream.learning.quality import adjusted_rand_index
from segstream.settings import Settings

HORIZONS = (30, 90, 365)
"""Days ahead of the expected-orders figures issue 25 asks for."""
STAGE_ORDER = {"churned": 0, "at_risk": 1, "new": 2, "active": 2, "won_back": 2, "loyal": 3}
"""Lifecycle stages as a ranking of "buys again": churned < at risk < active < loyal."""
BG_EXPECTED = "lifetimes BG/NBD expected orders (offline)"
BG_PROBABILITY = "lifetimes BG/NBD P(buys again) (offline)"
BG_WITHIN = "lifetimes BG/NBD P(buys within the churn horizon) (offline)"
RECENCY = "naive recency (-days since last order)"
RFM = "segstream RFM cell (100 R + 10 F + M)"
CHURN = "segstream 1 - churn_risk probability"
EXPECTED = "segstream expected orders"
CLV = "segstream lifetime.clv_365d"
LIFECYCLE = "segstream lifecycle stage"
P_ALIVE = "segstream lifetime.p_alive"
BASE_RATE = "base rate (constant)"
BASE_RATE_WITHIN = "base rate (constant), within the churn horizon"


# ---------------------------------------------------------------- signals and their scores


@dataclass(frozen=True)
class Signal:
    """Per covered customer a value ranking "buys again" (higher: more likely)."""

    name: str
    values: Mapping[Key, float]
    probability: bool = False
    """The values are P(buys again in the holdout): log loss and Brier apply."""
    horizon: int | None = None
    """The values are expected orders in the next ``horizon`` days: their sum is a forecast."""
    label_days: int | None = None
    """The probability is of an order within this many days of the cut (the churn
    probability's own horizon), and log loss and Brier are against that (None: the
    holdout); the AUC is always against buying again in the holdout."""


@dataclass(frozen=True)
class Row:
    """One signal's figures on one history."""

    signal: str
    covered: int
    auc: float
    auc_margin: float
    """Half-width of the AUC's 95 % interval (``scores.auc_margin``)."""
    auc_same_customers: float | None
    log_loss: float | None
    brier: float | None
    horizon: int | None
    predicted: float | None
    actual: int | None
    label_days: int | None = None
    """Days after the cut an order counts for the log loss and Brier (None: the holdout)."""

    @property
    def error(self) -> float | None:
        if self.predicted is None or not self.actual:
            return None
        return self.predicted / self.actual - 1.0


@dataclass(frozen=True)
class Anchor:
    """lifetimes' BG/NBD figures of one customer: expected orders by horizon, P(buys again)."""

    expected: dict[int, float]
    p_buys: float
    p_within: dict[int, float]
    """P(buys within N days), by N."""

    @property
    def finite(self) -> bool:
        """Whether lifetimes answered with numbers (see ``BgNbdAnchor.fit``)."""
        values = (*self.expected.values(), *self.p_within.values(), self.p_buys)
        return all(math.isfinite(v) for v in values)


def horizon_days(history: History) -> list[int]:
    """The horizons of :data:`HORIZONS` within the holdout, and the holdout's length."""
    return sorted({*(h for h in HORIZONS if h <= history.holdout_days), history.holdout_days})


def churn_horizon(judged: Mapping[Key, Judgment], history: History) -> int | None:
    """The days segstream's churn probability is of (None: no customer has one, or it
    reaches past the holdout)."""
    found = {j.churn_horizon for j in judged.values() if j.churn_horizon is not None}
    if not found:
        return None
    days = round(max(found))
    return days if days <= history.holdout_days else None


def anchor_figures(
    history: History, observed: Mapping[Key, Observed], within: Sequence[int] = ()
) -> tuple[dict[Key, Anchor], dict[str, dict[str, float]]]:
    """BG/NBD fitted offline per shop on the calibration period: every customer's figures,
    and per shop the parameters, the penalizer the fit needed and how many customers it
    left unanswered (NaN, or no fit at all: they are left out of the BG/NBD rows)."""
    horizons = horizon_days(history)
    by_shop: defaultdict[str, list[Key]] = defaultdict(list)
    for key in observed:
        by_shop[key[0]].append(key)
    found: dict[Key, Anchor] = {}
    fits: dict[str, dict[str, float]] = {}
    for shop_id, keys in sorted(by_shop.items()):
        seen = [observed[k] for k in keys]
        arrays = ([o.frequency for o in seen], [o.recency for o in seen], [o.T for o in seen])
        try:
            model = BgNbdAnchor.fit(*arrays, horizons)
        except RuntimeError:  # a tiny shop lifetimes cannot fit: its customers go unanswered
            fits[shop_id] = {"unanswered": len(keys), "failed": 1}
            continue
        expected = {h: model.expected_purchases(h) for h in horizons}
        p_buys = model.p_buys(history.holdout_days)
        p_within = {days: model.p_buys(days) for days in within}
        figures = [
            Anchor(
                {h: v[i] for h, v in expected.items()},
                p_buys[i],
                {days: v[i] for days, v in p_within.items()},
            )
            for i in range(len(keys))
        ]
        found |= {key: f for key, f in zip(keys, figures, strict=True) if f.finite}
        unanswered = sum(1 for f in figures if not f.finite)
        fits[shop_id] = {**model.params, "penalizer": model.penalizer, "unanswered": unanswered}
    return found, fits


def signals(
    history: History,
    observed: Mapping[Key, Observed],
    judged: Mapping[Key, Judgment],
    anchors: Mapping[Key, Anchor],
) -> list[Signal]:
    """Every signal of the table, in its order."""
    holdout = history.holdout_days
    base = sum(o.buys_again for o in observed.values()) / len(observed)
    within = churn_horizon(judged, history)
    found = [
        Signal(BG_EXPECTED, {k: a.expected[holdout] for k, a in anchors.items()}, horizon=holdout),
        Signal(BG_PROBABILITY, {k: a.p_buys for k, a in anchors.items()}, probability=True),
    ]
    if within is not None:
        bg_within = {k: a.p_within[within] for k, a in anchors.items()}
        found.append(Signal(BG_WITHIN, bg_within, probability=True, label_days=within))
    found += [
        Signal(RECENCY, {k: -o.quiet_days for k, o in observed.items()}),
        Signal(RFM, _present({k: _rfm_score(j.rfm) for k, j in judged.items()})),
        Signal(
            CHURN,
            _present({k: _complement(j.churn_probability) for k, j in judged.items()}),
            probability=True,
            label_days=within,
        ),
        _expected_orders_signal(judged, holdout),
        Signal(CLV, _present({k: j.clv_365d for k, j in judged.items()})),
        Signal(LIFECYCLE, _present({k: _stage(j.lifecycle) for k, j in judged.items()})),
        Signal(P_ALIVE, _present({k: j.p_alive for k, j in judged.items()}), probability=True),
        Signal(BASE_RATE, dict.fromkeys(observed, base), probability=True),
    ]
    if within is not None:
        rate = sum(o.buys_within(history.cut, within) for o in observed.values()) / len(observed)
        found.append(
            Signal(
                BASE_RATE_WITHIN, dict.fromkeys(observed, rate), probability=True, label_days=within
            )
        )
    return found


def _expected_orders_signal(judged: Mapping[Key, Judgment], holdout: int) -> Signal:
    """segstream's expected orders over the longest horizon the API gives within the holdout
    (none yet: an empty signal, shown as n/a)."""
    given = {h for j in judged.values() for h in j.expected_orders if h <= holdout}
    if not given:
        return Signal(f"{EXPECTED} (not in the API)", {})
    horizon = max(given)
    values = {
        k: j.expected_orders[horizon] for k, j in judged.items() if horizon in j.expected_orders
    }
    return Signal(f"{EXPECTED} (next {horizon} d)", values, horizon=horizon)


def _present(values: Mapping[Key, float | None]) -> dict[Key, float]:
    return {key: value for key, value in values.items() if value is not None}


def _complement(probability: float | None) -> float | None:
    return None if probability is None else 1.0 - probability


def _stage(stage: str | None) -> float | None:
    if stage is not None and stage not in STAGE_ORDER:
        raise ValueError(f"lifecycle stage {stage!r} has no rank: add it to STAGE_ORDER")
    return None if stage is None else float(STAGE_ORDER[stage])


def _rfm_score(rfm: tuple[int, int, int] | None) -> float | None:
    """The usual three-digit RFM cell as a number (R first, then F, then M).

    >>> _rfm_score((5, 1, 3))
    513.0
    """
    return None if rfm is None else float(100 * rfm[0] + 10 * rfm[1] + rfm[2])


def score(
    signal: Signal,
    observed: Mapping[Key, Observed],
    anchors: Mapping[Key, Anchor],
    history: History,
) -> Row:
    """A signal's AUC (and losses, forecast) over the customers it covers."""
    keys = sorted(signal.values)
    labels = [observed[k].buys_again for k in keys]
    values = [signal.values[k] for k in keys]
    judged = labels
    if signal.label_days is not None:
        judged = [observed[k].buys_within(history.cut, signal.label_days) for k in keys]
    horizon = signal.horizon
    partial = 0 < len(keys) < len(observed) and not signal.name.startswith("lifetimes")
    area = scores.auc(values, labels) if keys else math.nan
    positives = sum(labels)
    return Row(
        signal=signal.name,
        covered=len(keys),
        auc=area,
        auc_margin=scores.auc_margin(area, positives, len(labels) - positives),
        auc_same_customers=_anchor_auc(keys, observed, anchors, history) if partial else None,
        log_loss=scores.log_loss(values, judged) if signal.probability and keys else None,
        brier=scores.brier(values, judged) if signal.probability and keys else None,
        horizon=horizon,
        predicted=sum(values) if horizon is not None and keys else None,
        actual=sum(observed[k].orders(history.cut, horizon) for k in keys)
        if horizon is not None and keys
        else None,
        label_days=signal.label_days,
    )


def _anchor_auc(
    keys: Sequence[Key],
    observed: Mapping[Key, Observed],
    anchors: Mapping[Key, Anchor],
    history: History,
) -> float:
    """BG/NBD's AUC (expected orders in the holdout) on ``keys`` (those it answers)."""
    answered = [k for k in keys if k in anchors]
    return scores.auc(
        [anchors[k].expected[history.holdout_days] for k in answered],
        [observed[k].buys_again for k in answered],
    )


def forecasts(
    history: History, judged: Mapping[Key, Judgment], anchors: Mapping[Key, Anchor]
) -> list[Signal]:
    """Expected orders at every horizon of :func:`horizon_days`: BG/NBD's, and segstream's
    where the API gives that horizon (else an empty signal: n/a)."""
    found = []
    for days in horizon_days(history):
        bg = {k: a.expected[days] for k, a in anchors.items()}
        ours = {k: j.expected_orders[days] for k, j in judged.items() if days in j.expected_orders}
        found += [
            Signal(f"lifetimes BG/NBD, next {days} d", bg, horizon=days),
            Signal(f"segstream, next {days} d", ours, horizon=days),
        ]
    return found


# ---------------------------------------------------------------- one history's results


@dataclass
class Result:
    """Everything measured on one history."""

    history: History
    replay: Replay
    observed: dict[Key, Observed]
    judged: dict[Key, Judgment]
    anchors: dict[Key, Anchor]
    fits: dict[str, dict[str, float]]
    """BG/NBD parameters (and penalizer) per shop."""
    rows: list[Row]
    forecasts: list[Row]
    """Expected orders against actual ones at every horizon (:func:`forecasts`)."""

    @property
    def base_rate(self) -> float:
        return sum(o.buys_again for o in self.observed.values()) / len(self.observed)

    def facts_exact(self) -> int:
        """Customers whose frequency, recency and T in the API equal the log's."""
        return sum(
            1
            for key, o in self.observed.items()
            if self.judged[key].facts == (o.frequency, o.recency, o.T)
        )


def measure(history: History, settings: Settings) -> Result:
    """Replay the calibration period, read the answers, score every signal."""
    say(f"{history.name}: {history.description}")
    replay = Replay(history, settings).run()
    observed = observe(history)
    judged = judge(replay, observed)
    within = churn_horizon(judged, history)
    anchors, fits = anchor_figures(history, observed, () if within is None else (within,))
    found = signals(history, observed, judged, anchors)
    rows = [score(signal, observed, anchors, history) for signal in found]
    ahead = forecasts(history, judged, anchors)
    orders = [score(signal, observed, anchors, history) for signal in ahead]
    say(f"{history.name}: {len(replay.events):,} events replayed in {replay.seconds:.1f} s")
    return Result(history, replay, observed, judged, anchors, fits, rows, orders)


def reliability(result: Result) -> dict[str, list[scores.Bin]]:
    """Decile bins of segstream's P(buys within the churn horizon) (1 - churn probability,
    on the customers who have one) and of BG/NBD's P(buys within the same days) (on
    everyone), against an order within those days of the cut; without a churn horizon
    within the holdout, of BG/NBD's P(buys again) against the holdout."""
    within = churn_horizon(result.judged, result.history)
    ours = _present({k: _complement(j.churn_probability) for k, j in result.judged.items()})
    if within is None:
        theirs = {k: a.p_buys for k, a in result.anchors.items()}
    else:
        theirs = {k: a.p_within[within] for k, a in result.anchors.items()}
    found = {}
    for name, values in ((CHURN, ours), (BG_PROBABILITY, theirs)):
        keys = sorted(values)
        labels = [_bought(result, k, within) for k in keys]
        found[name] = scores.reliability([values[k] for k in keys], labels)
    return found


def _bought(result: Result, key: Key, within: int | None) -> bool:
    """Bought in the holdout (``within`` None) or within ``within`` days of the cut."""
    observed = result.observed[key]
    return (
        observed.buys_again if within is None else observed.buys_within(result.history.cut, within)
    )


def churn_quality(result: Result) -> list[dict[str, Any]]:
    """Per shop: the churn model's own progressive-validation figures (``/models``) and the
    holdout's AUC of 1 - its probability on the shop's customers."""
    found = []
    for shop_id in result.replay.shops:
        reported = queries.model_quality(result.replay.pipeline.reader, shop_id)["models"]
        quality = reported.get("churn_risk", {}).get("quality", {})
        keys = [
            k
            for k in sorted(result.observed)
            if k[0] == shop_id and result.judged[k].churn_probability is not None
        ]
        within = churn_horizon(result.judged, result.history)
        values = [1.0 - float(result.judged[k].churn_probability or 0.0) for k in keys]
        holdout_auc = scores.auc(values, [result.observed[k].buys_again for k in keys])
        within_auc = scores.auc(values, [_bought(result, k, within) for k in keys])
        found.append(
            {
                "shop_id": shop_id,
                "models": quality,
                "holdout_auc": holdout_auc,
                "within_auc": within_auc,
            }
        )
    return found


def clusters(result: Result) -> dict[str, Any]:
    """Cluster counts, formations, stability and (for the simulator) ARI at the cut."""
    replay, per_shop = result.replay, []
    for shop_id in replay.shops:
        sizes = queries.segment_sizes(replay.pipeline.reader, shop_id)["models"].get("cluster", {})
        reported = queries.model_quality(replay.pipeline.reader, shop_id)["models"].get(
            "cluster", {}
        )
        quality = reported.get("quality", {})
        per_shop.append(
            {
                "shop_id": shop_id,
                "carried": len(sizes),
                "largest_share": max(sizes.values()) / sum(sizes.values()) if sizes else None,
                "carried_ever": len(replay.carried[shop_id]),
                "most_carried": replay.most_carried[shop_id],
                "formed": replay.formed[shop_id],
                "models_clusters": quality.get("clusters"),
                "models_stability": quality.get("stability"),
            }
        )
    judged = result.judged.values()
    return {
        "shops": per_shop,
        "clustered": sum(1 for j in judged if j.cluster is not None),
        "disagreeing": sum(1 for j in judged if j.cluster != j.scored_cluster),
        "stability": replay.stability.share,
        "stability_last": replay.stability.last,
        "stability_pairs": replay.stability.pairs,
        "stability_customers": replay.stability.eligible,
        "ari": _ari(result) if result.history.personas else None,
        "named": _named(result) if len(replay.shops) == 1 else [],
    }


def _named(result: Result) -> list[dict[str, Any]]:
    """A one-shop history's clusters at the cut, largest first: id, name, members."""
    shop_id = result.replay.shops[0]
    sizes = queries.segment_sizes(result.replay.pipeline.reader, shop_id)
    names = sizes["names"].get("cluster", {})
    found = sizes["models"].get("cluster", {})
    return [
        {"segment": segment, "name": names.get(segment), "customers": count}
        for segment, count in sorted(found.items(), key=lambda item: (-item[1], item[0]))
    ]


def _ari(result: Result) -> float:
    """ARI of the clusters carried at the cut against the planted personas (labels of
    different shops never match)."""
    truth, found = [], []
    for key, persona in sorted(result.history.personas.items()):
        cluster = result.judged[key].cluster if key in result.judged else None
        if cluster is not None:
            truth.append(f"{key[0]}/{persona}")
            found.append(f"{key[0]}/{cluster}")
    return adjusted_rand_index(truth, found)
