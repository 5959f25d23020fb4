"""Independent reference computations (pandas) that the tests compare segstream against.

``lifetimes_summary`` follows ``lifetimes.utils.summary_data_from_transaction_data``
with ``freq="D"``: purchases are bucketed per day, the first day is excluded from
``monetary_value``, and ages are counted in whole days up to the observation end.
"""

from __future__ import annotations

import pandas as pd


def lifetimes_summary(transactions: pd.DataFrame, observation_end: pd.Timestamp) -> pd.DataFrame:
    """frequency, recency, T, monetary_value per ``customer_id`` from rows of
    (customer_id, occurred_at, amount)."""
    daily = (
        transactions.assign(day=transactions["occurred_at"].dt.tz_convert("UTC").dt.floor("D"))
        .groupby(["customer_id", "day"], as_index=False)["amount"]
        .sum()
    )
    by_customer = daily.groupby("customer_id")["day"]
    first, last = by_customer.min(), by_customer.max()
    end = observation_end.tz_convert("UTC").floor("D")
    repeat = daily[daily["day"] != daily["customer_id"].map(first)]
    monetary = repeat.groupby("customer_id")["amount"].mean()
    return pd.DataFrame(
        {
            "frequency": by_customer.size() - 1,
            "recency": (last - first).dt.days.astype(float),
            "T": (end - first).dt.days.astype(float),
            "monetary_value": monetary.reindex(first.index).fillna(0.0),
        }
    )
