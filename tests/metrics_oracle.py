"""Independent reference computation of the window metrics, from a whole event list (pandas).

Written from the definitions (docs/metrics.md), not from ``segstream.metrics``: every
customer's MRR is replayed over the complete, time-ordered history (including the plan
in force at every moment, which the streaming ledger only knows as "the latest plan"),
and windows are plain filters and sums over the resulting tables:

- MRR of a plan: weekly x 52 / 12, monthly, quarterly / 3, yearly / 12; a customer pays
  from a signup until a cancellation requested after it takes effect at
  ``max(requested, effective)``; a later signup starts over;
- movements: 0 -> x is new the first time, reactivation after that (a cancelled or a
  paused subscription paying again), x -> 0 churn (a pause at price 0 too), up / down
  expansion / contraction;
- subscribers and MRR at the start of ``[first, end)``: the sum of movements before
  ``first``; at the end: before ``end``;
- logo churn counts churns of customers who paid at the start (the latest 0 -> x
  before the churn lies before ``first``);
- a customer's cohort is their first signup month (first purchase month without one).
"""

from __future__ import annotations

from bisect import bisect_right
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
    previous, spell = 0.0, None
    for moment in moments:
        on = _subscribed(signups, cancels, moment)
        price = [mrr for at, mrr in plans if at <= moment][-1] if on else 0.0
        if price == previous:
            continue
        if previous == 0:
            kind = "reactivation" if rows else "new"
            spell = moment
        elif price == 0:
            kind = "churn"
        else:
            kind = "expansion" if price > previous else "contraction"
        rows.append(
            {"at": moment, "kind": kind, "before": previous, "after": price, "spell_start": spell}
        )
        previous = price
    return rows


def _subscribed(signups: list[Any], cancels: list[tuple[Any, Any]], moment: Any) -> bool:
    """Whether a subscription runs at ``moment``: the latest signup before it was not
    followed by a cancellation that took effect by then."""
    started = [s for s in signups if s <= moment]
    return bool(started) and not any(
        requested >= started[-1] and end <= moment for requested, end in cancels
    )


def as_delivered(arrivals: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The customers' events as the metrics count them, from every payload in arrival
    order: what an erasure (``customer_erased``) does is written out as plain events.

    An erasure of a customer segstream knows ends a running subscription when it arrives,
    at the shop's stream time then (the latest ``occurred_at`` arrived so far): a
    cancellation with reason ``erased``, effective at once. From then on the customer's
    events that occurred by the erasure are dropped while segstream knows nothing of them;
    a later one starts a new person under the same id, written ``<id>~<n>`` here."""
    stream: dict[str, pd.Timestamp] = {}
    people: dict[tuple[str, str], int] = {}
    known: dict[tuple[str, str], list[dict[str, Any]]] = {}
    erased: dict[tuple[str, str], pd.Timestamp] = {}
    delivered = []
    for payload in arrivals:
        key = (payload["shop_id"], payload["customer_id"])
        at = _timestamp(payload["occurred_at"])
        stream[key[0]] = max(stream.get(key[0], at), at)
        if payload["type"] == "customer_erased":
            erased[key] = max(erased.get(key, at), at)
            if key in known:
                rows = known.pop(key)
                if _running(rows, stream[key[0]]):
                    delivered.append(_ending(rows[0], stream[key[0]]))
                people[key] = people.get(key, 0) + 1
            continue
        if key not in known and key in erased and at <= erased[key]:
            continue
        person = people.get(key, 0)
        row = dict(payload, customer_id=f"{key[1]}~{person}" if person else key[1])
        known.setdefault(key, []).append(row)
        delivered.append(row)
    return delivered


def _running(rows: list[dict[str, Any]], moment: pd.Timestamp) -> bool:
    """Whether the subscription of a customer with these events runs at ``moment``."""
    signups = sorted(_timestamp(r["occurred_at"]) for r in rows if r["type"] == "signup")
    cancels = []
    for row in rows:
        if row["type"] == "cancellation":
            requested = _timestamp(row["occurred_at"])
            effective = _timestamp(row.get("effective_at", row["occurred_at"]))
            cancels.append((requested, max(requested, effective)))
    return _subscribed(signups, cancels, moment)


def _ending(row: dict[str, Any], moment: pd.Timestamp) -> dict[str, Any]:
    """The cancellation an erasure at ``moment`` amounts to."""
    return {
        "schema_version": 1,
        "type": "cancellation",
        "event_id": f"erased-{row['customer_id']}-{moment.isoformat()}",
        "shop_id": row["shop_id"],
        "customer_id": row["customer_id"],
        "occurred_at": moment.isoformat(),
        "effective_at": moment.isoformat(),
        "reason": "erased",
    }


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
        for column in ("plan", "amount", "is_renewal"):  # a history without such events
            if column not in events:
                events[column] = None
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
            "renewals": int((ordered & t["renewal"]).sum()),
            "renewal_revenue": float(t["amount"][ordered & t["renewal"]].sum()),
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
                "renewal": (orders["is_renewal"] == True).to_numpy(dtype=bool),  # noqa: E712
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


COUNTS = (
    "subscribers_start",
    "subscribers_end",
    "signups",
    "new_subscribers",
    "reactivations",
    "churned_subscribers",
    "churned_start_subscribers",
    "cancellations",
)
"""Window counts every dimension is checked on."""
AMOUNTS = (
    "mrr_start",
    "mrr_end",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churn_mrr",
    "reactivation_mrr",
)
"""Window amounts every dimension is checked on."""
ATTRIBUTE_COUNTS = (*COUNTS, "orders", "renewals")
ATTRIBUTE_AMOUNTS = (*AMOUNTS, "revenue", "renewal_revenue")


def _attribute(name: str, seen: list[Any]) -> str | None:
    """The value of attribute ``name`` after the events ``seen`` (time order)."""
    if name == "channel":
        signups = [row for row in seen if row.type == "signup"]
        return _text(signups[-1].acquisition_channel) if signups else None
    if name == "cancel_reason":
        cancels = [row for row in seen if row.type == "cancellation"]
        return _text(cancels[-1].reason) if cancels else None
    plans = [row.plan for row in seen if isinstance(row.plan, dict)]
    if not plans:
        return None
    return str(plans[-1]["plan_id" if name == "plan" else "interval"])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class AttributeOracle:
    """Window metrics of the attribute dimensions (``channel:``, ``cancel_reason:``,
    ``plan:``, ``interval:``) for a stream delivered in time order, from the definition:
    a booking counts under the value the attribute had right after the latest event at or
    before its moment (a pending churn: at its cancellation); a customer counts at a
    window's start (end) if they pay and have that value then."""

    def __init__(self, oracle: MetricsOracle) -> None:
        self.oracle = oracle
        self._customers: dict[tuple[str, str], list[tuple[list[Any], list[Any], Any]]] = {}

    def window(self, shop_id: str, first: date, end: date, dimension: str) -> dict[str, Any]:
        name, _, value = dimension.partition(":")
        got: dict[str, Any] = dict.fromkeys(ATTRIBUTE_COUNTS, 0)
        got.update(dict.fromkeys(ATTRIBUTE_AMOUNTS, 0.0))
        for rows, moves, value_at in self._timelines(shop_id, name):
            _count_customer(got, rows, moves, value, value_at, first, end)
        return got

    def _timelines(self, shop_id: str, name: str) -> list[tuple[list[Any], list[Any], Any]]:
        """Per customer: events in time order, MRR movements, and the attribute's value at
        a moment (after the latest event at or before it)."""
        key = (shop_id, name)
        if key not in self._customers:
            events = self.oracle.events[self.oracle.events["shop_id"] == shop_id]
            moves = self.oracle.movements[self.oracle.movements["shop_id"] == shop_id]
            found = []
            for customer_id, group in events.groupby("customer_id"):
                rows = list(group.sort_values("at").itertuples())
                times = [row.at for row in rows]
                values = [_attribute(name, rows[: n + 1]) for n in range(len(rows))]

                def value_at(
                    moment: pd.Timestamp, times: list[Any] = times, values: list[Any] = values
                ) -> str | None:
                    n = bisect_right(times, moment)
                    return values[n - 1] if n else None

                mine = list(moves[moves["customer_id"] == customer_id].itertuples())
                found.append((rows, mine, value_at))
            self._customers[key] = found
        return self._customers[key]


def _count_customer(
    got: dict[str, Any],
    rows: list[Any],
    moves: list[Any],
    value: str,
    value_at: Any,
    first: date,
    end: date,
) -> None:
    """Add one customer's bookings under ``value`` in ``[first, end)`` to ``got``."""
    for edge, suffix in ((first, "start"), (end, "end")):
        moment = pd.Timestamp(edge, tz="UTC") - pd.Timedelta(microseconds=1)
        mrr = sum(float(move.delta) for move in moves if move.day < edge)
        if mrr > 1e-9 and value_at(moment) == value:
            got[f"subscribers_{suffix}"] += 1
            got[f"mrr_{suffix}"] += mrr
    for move in moves:
        if not first <= move.day < end or value_at(move.at) != value:
            continue
        kind, delta = move.kind, float(move.delta)
        if kind == "new":
            got["new_subscribers"] += 1
            got["new_mrr"] += delta
        elif kind == "reactivation":
            got["reactivations"] += 1
            got["reactivation_mrr"] += delta
        elif kind == "churn":
            got["churned_subscribers"] += 1
            got["churned_start_subscribers"] += int(move.spell_day < first)
            got["churn_mrr"] -= delta
        else:
            got[f"{kind}_mrr"] += abs(delta)
    signups = [row for row in rows if row.type == "signup"]
    if signups and first <= signups[0].day < end and value_at(signups[0].at) == value:
        got["signups"] += 1
    for row in rows:
        if row.type == "cancellation":
            effective = max(row.at, row.effective)
            if first <= effective.date() < end and value_at(effective) == value:
                got["cancellations"] += 1
        elif row.type == "order" and first <= row.day < end and value_at(row.at) == value:
            got["orders"] += 1
            got["revenue"] += float(row.amount)
            if row.is_renewal is True:
                got["renewals"] += 1
                got["renewal_revenue"] += float(row.amount)
