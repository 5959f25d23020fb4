"""The CSV shapes replay reads: orders, a billing system's event log, a subscriptions
export; each row's events, the plan a row leaves empty, stable ids, and refused rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from segstream.domain.contracts import EARLIEST_EVENT_TIME, Rejection, parse_event
from segstream.domain.events import BY_TYPE_NAME
from segstream.tools.publish import encode
from segstream.tools.replay_rows import (
    History,
    Options,
    RowError,
    detect_shape,
    read_history,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "schemas" / "examples" / "replay"
SHOP = "tea-house-1"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _read(files: dict[str, str], **options: Any) -> History:
    given = [(name, text.splitlines(keepends=True)) for name, text in files.items()]
    return read_history(given, Options(SHOP, **options))


def _example(*names: str, **options: Any) -> History:
    return _read({name: (EXAMPLES / name).read_text() for name in names}, **options)


def _valid(history: History, earliest: datetime | None = None) -> None:
    """Every event passes the worker's own contract."""
    bound = EARLIEST_EVENT_TIME if earliest is None else earliest
    for where, event in history.events:
        parsed = parse_event(encode(event), BY_TYPE_NAME[event["type"]], NOW, earliest=bound)
        assert not isinstance(parsed, Rejection), (where, parsed)


def _plans(history: History, customer: str) -> list[tuple[str, str, float, str]]:
    """A customer's plan events: (type, change, monthly-ish price, plan id)."""
    return [
        (e["type"], e.get("change", ""), e["plan"]["price"], e["plan"]["plan_id"])
        for _, e in history.events
        if e["customer_id"] == customer and "plan" in e
    ]


def test_the_event_log_example_fills_plans_from_earlier_rows() -> None:
    """A pause is the plan at price 0, a resume the plan it interrupted, a plan change an
    upgrade or downgrade by monthly price (a quarterly 39.90 is less than a monthly
    14.90), and a re-signup to another plan keeps nothing of the old one."""
    history = _example("events.csv")
    assert history.refusals == [] and history.rows == 19 and len(history.events) == 19
    _valid(history)
    assert _plans(history, "c-001") == [
        ("signup", "", 14.9, "beans-250g"),
        ("plan_changed", "upgrade", 24.9, "beans-500g"),
        ("plan_changed", "pause", 0.0, "beans-500g"),
        ("plan_changed", "resume", 24.9, "beans-500g"),
    ]
    assert _plans(history, "c-003")[-1] == ("plan_changed", "downgrade", 39.9, "beans-quarter")
    resignup = [e for _, e in history.events if e["customer_id"] == "c-002"][-2]
    assert resignup["plan"] == {
        "plan_id": "beans-year",
        "price": 149.0,
        "interval": "year",
        "currency": "EUR",
    }
    assert resignup["acquisition_channel"] == "app"
    times = [e["occurred_at"] for _, e in history.events]
    assert times == sorted(times)


def test_event_log_cancellations_and_orders() -> None:
    history = _example("events.csv")
    cancels = [e for _, e in history.events if e["type"] == "cancellation"]
    assert [(c["reason"], c.get("comment"), c.get("effective_at")) for c in cancels] == [
        ("moved", None, None),
        ("other", "Too expensive", "2022-08-10T00:00:00Z"),
    ]
    orders = [e for _, e in history.events if e["type"] == "order"]
    assert sum(o["is_renewal"] for o in orders) == 8
    assert [o["amount"] for o in orders if not o["is_renewal"]] == [32.0]


def test_a_plan_change_names_the_new_plan_or_takes_the_one_in_force() -> None:
    text = (
        "type,customer_id,date,plan_id,price,interval\n"
        "signup,c-1,2024-01-01T00:00:00Z,small,10,month\n"
        "plan_change,c-1,2024-02-01T00:00:00Z,,12,\n"  # a price rise of the same plan
        "plan_change,c-1,2024-03-01T00:00:00Z,big,120,year\n"  # 10 a month: down from 12
        "switch,c-1,2024-04-01T00:00:00Z,other,120,year\n"
        "plan_change,c-1,2024-05-01T00:00:00Z,other,0,year\n"
        "plan_change,c-1,2024-06-01T00:00:00Z,other,120,year\n"
    )
    history = _read({"log.csv": text})
    assert [change for _, change, _, _ in _plans(history, "c-1")] == [
        "",
        "upgrade",
        "downgrade",
        "switch",
        "pause",
        "resume",
    ]
    assert _plans(history, "c-1")[1][2:] == (12.0, "small")
    _valid(history)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("pause,c-9,2024-02-01,,,", "no plan: plan_id, price, interval empty"),
        ("signup,c-9,2024-02-01,p,,month", "no plan: price empty"),
        ("signup,c-9,2024-02-01,p,10,fortnight", "interval 'fortnight' is not one of"),
        ("signup,c-9,2024-02-01,p,ten,month", "price 'ten' is not a number"),
        ("refund,c-9,2024-02-01,,,", "type 'refund' is not one of signup, order, renewal"),
        ("renewal,c-9,2024-02-01,,,", "'amount' is empty"),
        (",c-9,2024-02-01,,,", "'type' is empty"),
        ("signup,c-9,01.02.2024,p,10,month", "date '01.02.2024' is not YYYY-MM-DD"),
    ],
)
def test_event_log_rows_that_make_no_event_are_refused_with_their_line(
    row: str, problem: str
) -> None:
    text = "type,customer_id,date,plan_id,price,interval,amount\n"
    text += "signup,c-1,2024-01-01,p,10,month,\n" + row + "\n"
    history = _read({"log.csv": text})
    [refusal] = history.refusals
    assert (str(refusal.where), refusal.reason) == ("log.csv:3", "bad_row")
    assert refusal.detail.startswith(problem), refusal.detail
    assert [e["customer_id"] for _, e in history.events] == ["c-1"]


def test_the_subscriptions_export_and_its_charges_merge_in_time_order() -> None:
    history = _example("subscriptions.csv", "charges.csv")
    assert history.shapes == {"subscriptions.csv": "subscriptions", "charges.csv": "orders"}
    assert history.refusals == [] and history.rows == 9
    _valid(history)
    kinds = [(e["type"], e["customer_id"]) for _, e in history.events]
    first = [("signup", "c-101"), ("order", "c-101"), ("order", "c-101"), ("signup", "c-102")]
    assert kinds[:4] == first
    [cancel] = [e for _, e in history.events if e["type"] == "cancellation" and "comment" in e]
    assert cancel == {
        **cancel,
        "customer_id": "c-103",
        "occurred_at": "2022-03-01T00:00:00Z",
        "effective_at": "2022-09-01T00:00:00Z",
        "reason": "other",
        "comment": "Found a cheaper shop",
    }
    signup = next(e for _, e in history.events if e["customer_id"] == "c-102")
    assert signup["occurred_at"] == "2021-06-17T12:40:00Z"
    charges = [e for _, e in history.events if e["type"] == "order"]
    assert [c["order_id"] for c in charges][:2] == ["ch_1", "ch_2"]
    assert [c["is_renewal"] for c in charges] == [True, True, True, False, True]


def test_a_later_export_of_a_subscription_repeats_its_signup_id() -> None:
    """Ids come from the subscription, not the row: re-importing a newer export (the
    subscription now cancelled) is de-duplicated, and only the cancellation is new."""
    header = "subscription_id,customer_id,plan_id,price,interval,started_at,cancelled_at\n"
    active = _read({"a.csv": header + "sub_1,c-1,p,9,month,2024-01-01,\n"})
    later = _read({"b.csv": header + "sub_1,c-1,p,9,month,2024-01-01,2024-05-02\n"})
    [signup] = [e for _, e in active.events]
    again, cancel = (e for _, e in later.events)
    assert again["event_id"] == signup["event_id"]
    assert cancel["type"] == "cancellation" and cancel["event_id"] != signup["event_id"]


def test_a_stripe_style_export_is_read_with_column_mappings() -> None:
    """Stripe's subscriptions export names its columns its own way and writes times without
    an offset in columns headed "(UTC)"; lower-case currencies are read upper-case."""
    text = (
        "id,Customer ID,Plan,Amount,Interval,Currency,Start (UTC),Canceled At (UTC),"
        "Ended At (UTC)\n"
        "sub_A,cus_1,plan_m,9.00,month,usd,2023-04-05 10:11,2023-09-01 08:00,2023-10-05 10:11\n"
    )
    columns = {
        "subscription_id": "id",
        "plan_id": "Plan",
        "price": "Amount",
        "started_at": "Start (UTC)",
        "cancelled_at": "Canceled At (UTC)",
        "ended_at": "Ended At (UTC)",
    }
    history = _read({"stripe.csv": text}, columns=columns, assume_utc=True)
    assert history.shapes == {"stripe.csv": "subscriptions"} and history.refusals == []
    signup, cancel = (e for _, e in history.events)
    assert signup["customer_id"] == "cus_1" and signup["plan"]["currency"] == "USD"
    assert signup["occurred_at"] == "2023-04-05T10:11:00Z"
    assert cancel["effective_at"] == "2023-10-05T10:11:00Z" and cancel["reason"] == "unknown"
    without = _read({"stripe.csv": text}, columns=columns)
    assert without.refusals[0].detail.endswith(
        "has no UTC offset (add Z or +01:00, or pass --assume-utc)"
    )


def test_the_shape_follows_the_header_unless_forced() -> None:
    assert detect_shape(["Type", "customer_id", "date"], {}) == "events"
    assert detect_shape(["customer_id", "started_at"], {}) == "subscriptions"
    assert detect_shape(["customer_id", "date", "amount"], {}) == "orders"
    assert detect_shape(["kind", "customer_id"], {"type": "Kind"}) == "events"
    with pytest.raises(RowError, match=r"^x\.csv: line 1: no column 'amount' for the orders"):
        _read({"x.csv": "type,customer_id,date\n"}, shape="orders")


def test_orders_take_optional_order_ids_renewal_flags_and_currencies() -> None:
    text = "customer_id,date,amount,order_id,is_renewal,currency\nc,2024-01-01,5,o-7,yes,chf\n"
    [(_, order)] = _read({"o.csv": text}).events
    assert (order["order_id"], order["is_renewal"], order["currency"]) == ("o-7", True, "CHF")
    bad = _read({"o.csv": text.replace("yes", "perhaps")})
    assert bad.refusals[0].detail == "is_renewal 'perhaps' is not true or false"


def test_headers_match_whatever_their_case_and_spaces() -> None:
    text = " Customer ID ,DATE,Amount\nc-1,2024-01-01,3\n"
    [(_, order)] = _read({"o.csv": text}).events
    assert order["customer_id"] == "c-1" and order["amount"] == 3.0
