"""Every metric formula, written once.

Convention: **ChartMogul's "Standard (B2B)" formulas** (help.chartmogul.com: "Customer
Churn Rate", "MRR Churn Rate", "Net MRR Churn Rate", "Customer Lifetime Value",
"MRR movements"), except retention rate, which follows the brief's seed 001. ChartMogul,
Baremetrics and Stripe differ in details; ChartMogul's choices here are:

- a *subscriber* (ChartMogul: customer) is a customer with MRR > 0 at that moment;
- rates compare a period's movements with the state at the *start* of the period, and
  the start of ``[start, end)`` is the end of the day before ``start``;
- customer (logo) churn counts only subscribers who were subscribers at the start: a
  customer who joined and churned within the period is not churn (it is drop-off);
- MRR churn sums the period's movements as they are (ChartMogul does not exclude the
  MRR of customers who joined in the period).

A rate whose denominator is 0 is ``None`` (undefined), never 0 or infinity.
"""

from __future__ import annotations

DAYS_PER_MONTH = 365.25 / 12
"""Average month length, for scaling a rate over a week or a day to a month."""


def share(part: float, whole: float) -> float | None:
    """``part / whole``, or ``None`` when ``whole`` is 0.

    >>> share(1, 4), share(3, 0)
    (0.25, None)
    """
    if whole == 0:
        return None
    return part / whole


def churn_rate(churned_start_subscribers: int, subscribers_start: int) -> float | None:
    """Customer (logo) churn rate: subscribers at the start who churned in the period,
    over subscribers at the start (ChartMogul "Customer Churn Rate", B2B formula:
    customers who both joined and churned in the period are excluded).

    >>> churn_rate(10, 100)
    0.1
    """
    return share(churned_start_subscribers, subscribers_start)


def retention_rate(subscribers_end: int, joined: int, subscribers_start: int) -> float | None:
    """Retention rate (seed 001): (subscribers at end - subscribers who joined) /
    subscribers at start.

    ``joined`` counts every subscription that *started* in the period: new subscribers
    **and reactivations** (a won-back customer was not retained), and, for a segment,
    customers who moved into it. So a customer who signed up and cancelled in the same
    period lowers retention, although it is not logo churn (ChartMogul excludes it).

    >>> retention_rate(subscribers_end=95, joined=10, subscribers_start=100)
    0.85
    """
    return share(subscribers_end - joined, subscribers_start)


def gross_mrr_churn_rate(
    churn_mrr: float, contraction_mrr: float, mrr_start: float
) -> float | None:
    """Gross MRR churn rate: (churn MRR + contraction MRR) / MRR at the start
    (ChartMogul "MRR Churn Rate", Standard formula).

    >>> gross_mrr_churn_rate(10.0, 10.0, 100.0)
    0.2
    """
    return share(churn_mrr + contraction_mrr, mrr_start)


def net_mrr_churn_rate(
    churn_mrr: float,
    contraction_mrr: float,
    expansion_mrr: float,
    reactivation_mrr: float,
    mrr_start: float,
) -> float | None:
    """Net MRR churn rate: (churn + contraction - expansion - reactivation MRR) / MRR at
    the start (ChartMogul "Net MRR Churn Rate", Standard formula); negative when existing
    customers grow MRR faster than it is lost.

    >>> net_mrr_churn_rate(10.0, 10.0, 10.0, 0.0, 100.0)
    0.1
    """
    return share(churn_mrr + contraction_mrr - expansion_mrr - reactivation_mrr, mrr_start)


def net_revenue_retention(
    mrr_start: float,
    expansion_mrr: float,
    reactivation_mrr: float,
    contraction_mrr: float,
    churn_mrr: float,
) -> float | None:
    """Net revenue retention: (MRR at start + expansion + reactivation - contraction -
    churn MRR) / MRR at the start, i.e. 1 - the net MRR churn rate above (ChartMogul's
    Standard formula); above 1 when existing customers grow.

    >>> net_revenue_retention(100.0, 10.0, 0.0, 10.0, 10.0)
    0.9
    """
    return share(
        mrr_start + expansion_mrr + reactivation_mrr - contraction_mrr - churn_mrr, mrr_start
    )


def quick_ratio(
    new_mrr: float,
    expansion_mrr: float,
    reactivation_mrr: float,
    churn_mrr: float,
    contraction_mrr: float,
) -> float | None:
    """SaaS quick ratio: MRR gained (new + expansion + reactivation) / MRR lost (churn +
    contraction); above 1 when the shop grows faster than it leaks, None without losses.

    >>> quick_ratio(30.0, 10.0, 0.0, 15.0, 5.0)
    2.0
    """
    if churn_mrr + contraction_mrr <= 0:
        return None
    return (new_mrr + expansion_mrr + reactivation_mrr) / (churn_mrr + contraction_mrr)


def arpu(mrr: float, subscribers: int) -> float | None:
    """Average revenue per user: MRR / paying subscribers, both at the end of the period
    (ChartMogul "ARPA").

    >>> arpu(250.0, 10)
    25.0
    """
    return share(mrr, subscribers)


def ltv(arpu_value: float | None, churn: float | None, period_months: float = 1.0) -> float | None:
    """Customer lifetime value: ARPU / monthly customer churn rate (ChartMogul
    "Customer Lifetime Value"). A churn rate over ``period_months`` months is scaled
    linearly to a month first. ``None`` when churn is 0 or undefined (ChartMogul shows
    0 then; an infinite lifetime is not a value).

    >>> ltv(100.0, 0.05)
    2000.0
    >>> ltv(100.0, 0.01, period_months=0.5)  # 1 % in half a month: 2 % a month
    5000.0
    >>> ltv(100.0, 0.0) is None
    True
    """
    if arpu_value is None or not churn:
        return None
    return arpu_value / (churn / period_months)


def average_orders_per_customer(orders: int, ordering_customers: int) -> float | None:
    """Orders in the period / distinct customers who ordered in the period.

    >>> average_orders_per_customer(30, 20)
    1.5
    """
    return share(orders, ordering_customers)


def signup_rate(signups: int, subscribers_start: int) -> float | None:
    """Sign-up rate (seeds 000/002): first-time signups in the period / subscribers at
    the start; the acquisition counterpart of the churn rate (no visitor counts exist
    to divide by).

    >>> signup_rate(5, 100)
    0.05
    """
    return share(signups, subscribers_start)


def drop_off_rate(dropped_off: int, joined: int) -> float | None:
    """Drop-off rate (seeds 000/003): subscribers who joined in the period and churned
    within it / subscribers who joined in the period (new and reactivated): the early
    leavers that customer churn (ChartMogul B2B) leaves out.

    >>> drop_off_rate(1, 4)
    0.25
    """
    return share(dropped_off, joined)
