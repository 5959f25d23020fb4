"""Independent reference computation of the window metrics, from a whole event list (pandas).

Written from the definitions (README "Metrics"), not from ``service.metrics``: every
customer's MRR is replayed over the complete, time-ordered history (including the plan
in force at every moment, which the streaming ledger only knows as "the latest plan"),
and windows are plain filters and sums over the resulting tables:

- MRR of a plan: weekly x 52 / 12, monthly, quarterly / 3, yearly / 12; a customer pays
  from a signup until a cancellation requested after it takes effect at
  ``max(requested, effective)``; a later signup starts over;
- movements: 0 -> x is new (reactivation if a subscription had ended before), x -> 0
  churn, up / down expansion / contraction;
- subscribers and MRR at the start of ``[first, end)``: the sum of movements before
  ``first``; at the end: before ``end``;
- logo churn counts churns whose subscription began before ``first``;
- a customer's cohort is their first signup month (first purchase month without one).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

PER_MONTH = {"week": 52 / 12, "month": 1.0, "quarter": 1 / 3, "year": 1 / 12}


def _timestamp(value: str) -> pd.Timestamp:
    return pd.Timestamp(value).tz_convert("UTC")


def _days(values: Iterable[date]) -> np.ndarray:
    """Dates as a numpy day array (comparable with ``np.datetime64(day, "D")``)."""
    return np.array([np.datetime64(day, "D") for day in values], dtype="datetime64[D]")


def _mrr(plan: dict[str, Any]) -> float:
    return round(float(plan["price"]) * PER_MONTH[plan["interval"]], 6)


def _customer_movements(events: pd.DataFrame) -> list[dict[str, Any]]:
    """MRR change points of one customer from all of their events."""
    signups = sorted(events.loc[events["type"] == "signup", "at"])
    cancels = [
        (row.at, max(row.at, row.effective))
        for row in events[events["type"] == "cancellation"].itertuples()
    ]
    plans = sorted(
        (row.at, _mrr(row.plan)) for row in events.itertuples() if isinstance(row.plan, dict)
    )
    moments = sorted({*signups, *(end for _, end in cancels), *(at for at, _ in plans)})
    rows: list[dict[str, Any]] = []
    previous, ended, on_before, spell = 0.0, False, False, None
    for moment in moments:
        started = [s for s in signups if s <= moment]
        latest = started[-1] if started else None
        on = latest is not None and not any(
            requested >= latest and end <= moment for requested, end in cancels
        )
        if on and not on_before:
            spell = moment
        price = [mrr for at, mrr in plans if at <= moment][-1] if on else 0.0
        if price != previous:
            if previous == 0:
                kind = "reactivation" if ended else "new"
            elif price == 0:
                kind = "churn"
            else:
                kind = "expansion" if price > previous else "contraction"
            rows.append(
                {
                    "at": moment,
                    "kind": kind,
                    "before": previous,
                    "after": price,
                    "spell_start": spell,
                }
            )
        ended = ended or (latest is not None and not on)
        previous, on_before = price, on
    return rows


class MetricsOracle:
    """Window metrics of every shop, computed from the complete list of event payloads."""

    def __init__(self, payloads: Iterable[dict[str, Any]]) -> None:
        events = pd.DataFrame(list(payloads))
        events["at"] = events["occurred_at"].map(_timestamp)
        effective = events.get("effective_at", pd.Series(index=events.index, dtype=object))
        events["effective"] = [
            _timestamp(value) if isinstance(value, str) else at
            for value, at in zip(effective, events["at"], strict=True)
        ]
        if "plan" not in events:
            events["plan"] = None
        events["day"] = events["at"].dt.date
        cohorts = self._cohorts(events)
        moves = []
        for (shop_id, customer_id), group in events.groupby(["shop_id", "customer_id"]):
            for row in _customer_movements(group.sort_values("at")):
                moves.append({"shop_id": shop_id, "customer_id": customer_id, **row})
        self.movements = pd.DataFrame(
            moves,
            columns=["shop_id", "customer_id", "at", "kind", "before", "after", "spell_start"],
        )
        self.movements["day"] = pd.to_datetime(self.movements["at"], utc=True).dt.date
        self.movements["spell_day"] = pd.to_datetime(
            self.movements["spell_start"], utc=True
        ).dt.date
        self.movements["delta"] = self.movements["after"] - self.movements["before"]
        self.movements["subs"] = (
            self.movements["kind"].map({"new": 1, "reactivation": 1, "churn": -1}).fillna(0)
        )
        self.events = events
        self.cohorts = cohorts
        self._cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for frame in (self.movements, self.events):
            keys = pd.MultiIndex.from_frame(frame[["shop_id", "customer_id"]])
            frame["cohort"] = cohorts.reindex(keys).to_numpy()

    @staticmethod
    def _cohorts(events: pd.DataFrame) -> pd.Series:
        """Signup month per customer, else first purchase month."""
        keys = ["shop_id", "customer_id"]
        signed = events[events["type"] == "signup"].groupby(keys)["at"].min()
        bought = events[events["type"] == "order"].groupby(keys)["at"].min()
        first = signed.combine_first(bought)
        return first.map(lambda at: at.strftime("%Y-%m"))

    def window(
        self, shop_id: str, first: date, end: date, dimension: str = "all"
    ) -> dict[str, Any]:
        """Metrics of ``[first, end)`` for ``all`` or ``cohort:<YYYY-MM>``."""
        t = self._tables(shop_id, dimension)
        lo, hi = np.datetime64(first, "D"), np.datetime64(end, "D")
        before_first, before_end = t["move_day"] < lo, t["move_day"] < hi
        inside = before_end & ~before_first
        kind = t["kind"]
        churns = inside & (kind == "churn")
        ordered = (t["order_day"] >= lo) & (t["order_day"] < hi)

        def moved(name: str) -> float:
            return float(t["delta"][inside & (kind == name)].sum())

        return {
            "subscribers_start": int(t["subs"][before_first].sum()),
            "subscribers_end": int(t["subs"][before_end].sum()),
            "mrr_start": float(t["delta"][before_first].sum()),
            "mrr_end": float(t["delta"][before_end].sum()),
            "signups": int(((t["signup_day"] >= lo) & (t["signup_day"] < hi)).sum()),
            "new_subscribers": int((inside & (kind == "new")).sum()),
            "reactivations": int((inside & (kind == "reactivation")).sum()),
            "churned_subscribers": int(churns.sum()),
            "churned_start_subscribers": int((churns & (t["spell_day"] < lo)).sum()),
            "cancellations": int(((t["cancel_day"] >= lo) & (t["cancel_day"] < hi)).sum()),
            "new_mrr": moved("new"),
            "expansion_mrr": moved("expansion"),
            "contraction_mrr": -moved("contraction"),
            "churn_mrr": -moved("churn"),
            "reactivation_mrr": moved("reactivation"),
            "orders": int(ordered.sum()),
            "revenue": float(t["amount"][ordered].sum()),
            "ordering_customers": len(set(t["order_customer"][ordered])),
        }

    def _tables(self, shop_id: str, dimension: str) -> dict[str, np.ndarray]:
        """The shop's (and dimension's) rows as arrays, computed once."""
        key = (shop_id, dimension)
        if key not in self._cache:
            moves = self._select(self.movements, shop_id, dimension)
            events = self._select(self.events, shop_id, dimension)
            orders = events[events["type"] == "order"]
            cancels = events[events["type"] == "cancellation"]
            signups = events[events["type"] == "signup"].groupby("customer_id")["day"].min()
            self._cache[key] = {
                "move_day": _days(moves["day"]),
                "spell_day": _days(moves["spell_day"]),
                "kind": moves["kind"].to_numpy(dtype=str),
                "delta": moves["delta"].to_numpy(dtype=float),
                "subs": moves["subs"].to_numpy(dtype=int),
                "signup_day": _days(signups),
                "cancel_day": _days(
                    max(at, effective).date()
                    for at, effective in zip(cancels["at"], cancels["effective"], strict=True)
                ),
                "order_day": _days(orders["day"]),
                "amount": orders["amount"].to_numpy(dtype=float),
                "order_customer": orders["customer_id"].to_numpy(dtype=str),
            }
        return self._cache[key]

    @staticmethod
    def _select(frame: pd.DataFrame, shop_id: str, dimension: str) -> pd.DataFrame:
        chosen = frame[frame["shop_id"] == shop_id]
        if dimension == "all":
            return chosen
        return chosen[chosen["cohort"] == dimension.removeprefix("cohort:")]

    def dimensions(self, shop_id: str) -> list[str]:
        """``all`` and the shop's cohorts."""
        shop = self.events[self.events["shop_id"] == shop_id]
        return ["all", *(f"cohort:{c}" for c in sorted(shop["cohort"].dropna().unique()))]
