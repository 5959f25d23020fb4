"""Transaction CSV rows become valid, deterministic order events; bad rows name their line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from service.core.contracts import Rejection, parse_event
from service.core.events import Order
from service.tools.publish import encode
from service.tools.replay import Columns, RowError, main, read_orders, row_to_event

CSV = """customer_id,date,amount
c-2,2025-03-02,12.50
c-1,2025-03-01T10:00:00.5+01:00,9
c-1,2025-03-01,3.333
c-3,2025-03-01T09:00:00Z,0
"""


def _orders(text: str, **options: Any) -> list[dict[str, Any]]:
    return read_orders(text.splitlines(keepends=True), shop_id="tea-house-1", **options)


def test_rows_become_valid_orders_sorted_by_date() -> None:
    events = _orders(CSV)
    assert [(e["customer_id"], e["occurred_at"], e["amount"]) for e in events] == [
        ("c-1", "2025-03-01T00:00:00Z", 3.33),
        ("c-3", "2025-03-01T09:00:00Z", 0.0),
        ("c-1", "2025-03-01T09:00:00.500000Z", 9.0),
        ("c-2", "2025-03-02T00:00:00Z", 12.5),
    ]
    assert [e["order_id"] for e in events] == [
        "row-000003",
        "row-000004",
        "row-000002",
        "row-000001",
    ]
    for event in events:
        assert event["is_renewal"] is False and event["currency"] == "EUR"
        assert not isinstance(parse_event(encode(event), Order), Rejection)


def test_event_ids_are_deterministic_and_depend_on_row_and_shop() -> None:
    first, again = _orders(CSV), _orders(CSV)
    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    assert len({e["event_id"] for e in first}) == len(first)
    other_shop = read_orders(CSV.splitlines(keepends=True), shop_id="tea-house-2")
    assert not {e["event_id"] for e in first} & {e["event_id"] for e in other_shop}
    twice = CSV + "c-2,2025-03-02,12.50\n"
    ids = [e["event_id"] for e in _orders(twice) if e["customer_id"] == "c-2"]
    assert len(set(ids)) == 2


def test_custom_columns_delimiter_and_currency() -> None:
    text = "kunde;datum;betrag\nk-1;2025-01-05;4.20\n"
    columns = Columns(customer="kunde", date="datum", amount="betrag")
    [event] = read_orders(
        text.splitlines(keepends=True),
        shop_id="soap-maker-1",
        currency="CHF",
        columns=columns,
        delimiter=";",
    )
    assert (event["customer_id"], event["amount"], event["currency"]) == ("k-1", 4.2, "CHF")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("c-1,2025-02-30,1.00", "line 3: date '2025-02-30' is not YYYY-MM-DD or RFC 3339"),
        ("c-1,2025-02-03T10:00:00,1.00", "line 3: date '2025-02-03T10:00:00' has no UTC offset"),
        ('c-1,2025-02-03,"1,50"', "line 3: amount '1,50' is not a number (use a dot"),
        ("c-1,2025-02-03,-2", "line 3: amount '-2' must be a non-negative number"),
        ("c-1,2025-02-03,nan", "line 3: amount 'nan' must be a non-negative number"),
        (",2025-02-03,1", "line 3: 'customer_id' is empty"),
        ("c-1,2025-02-03", "line 3: 'amount' is empty"),
    ],
)
def test_bad_rows_name_their_line(row: str, message: str) -> None:
    text = f"customer_id,date,amount\nc-0,2025-02-01,1\n{row}\n"
    with pytest.raises(RowError, match="^" + re.escape(message)):
        _orders(text)


def test_missing_columns_are_named() -> None:
    with pytest.raises(RowError, match=r"line 1: no column 'amount' \(found: customer_id, date\)"):
        _orders("customer_id,date\nc-1,2025-01-01\n")


def test_row_to_event_uses_the_given_line_in_messages() -> None:
    with pytest.raises(RowError, match=r"^line 41: "):
        row_to_event({"customer_id": "c", "date": "soon", "amount": "1"}, 41, 40, shop_id="s")


def test_cli_dry_run_prints_json_lines_and_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(CSV, encoding="utf-8")
    assert main([str(good), "--shop-id", "tea-house-1", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and all(line.startswith('{"schema_version":1,') for line in out)

    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,date,amount\nc-1,yesterday,1\n", encoding="utf-8")
    assert main([str(bad), "--shop-id", "tea-house-1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == f"replay: error: {bad}: line 2: date 'yesterday' is not YYYY-MM-DD or RFC 3339\n"

    with pytest.raises(SystemExit) as exit_info:
        main([str(good), "--shop-id", "no spaces please", "--dry-run"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
