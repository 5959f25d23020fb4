"""replay's command line and its orders shape: rows become valid, deterministic events;
a history with any row the worker would refuse sends nothing, exits 2 and lists the rows
with file, line and reason."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from segstream.domain.contracts import Rejection, parse_event
from segstream.domain.events import Order
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.tools import replay
from segstream.tools.publish import encode
from segstream.tools.replay import Columns, RowError, check, main, read_orders, row_to_event
from segstream.tools.replay_rows import History, Options, read_history

EXAMPLES = Path(__file__).resolve().parents[3] / "schemas" / "examples" / "replay"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

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
    with pytest.raises(RowError, match=r"line 1: no column 'amount' for the orders shape \(found"):
        _orders("customer_id,date\nc-1,2025-01-01\n")


def test_row_to_event_uses_the_given_line_in_messages() -> None:
    with pytest.raises(RowError, match=r"^line 41: "):
        row_to_event({"customer_id": "c", "date": "soon", "amount": "1"}, 41, 40, shop_id="s")


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the command would send: sending is replaced by a recorder (these tests run
    without a broker; tests/integration/test_replay.py sends for real)."""
    calls: list[Any] = []

    def record(settings: Settings, history: History, args: Any) -> int:
        calls.append(history)
        return 0

    monkeypatch.setattr(replay, "_send", record)
    for variable in list(os.environ):
        if variable.upper().startswith("SEGSTREAM_"):
            monkeypatch.delenv(variable)
    return calls


def test_cli_dry_run_summarises_and_json_lines_prints_the_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sent: list[Any]
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(CSV, encoding="utf-8")
    code, out, err = _cli([str(good), "--shop-id", "tea-house-1", "--dry-run"], capsys)
    assert code == 0 and err == "" and sent == []
    assert out.splitlines()[:2] == [
        f"replay: 4 rows of {good} (orders): 4 events of shop tea-house-1 (partition "
        f"{shop_partition('tea-house-1', 8)} of 8)",
        "  order 4",
    ]
    assert "2025-03-01 to 2025-03-02, 3 customers; every event passes" in out
    code, out, err = _cli([str(good), "--shop-id", "t", "--dry-run", "--json-lines"], capsys)
    lines = out.splitlines()
    assert (
        code == 0
        and len(lines) == 4
        and all(line.startswith('{"schema_version":1,') for line in lines)
    )
    assert err.startswith("replay: 4 rows of ")


BAD_LOG = (
    "customer_id,date,amount\n"
    "c-1,2025-01-01,10\n"
    "c-2\x01,2025-01-02,10\n"  # a control character in the id
    "c-3,2099-01-03,10\n"  # next year and later
    "c-4,1997-01-04,10\n"  # before the earliest event time
    "c-5,yesterday,10\n"
    "c-6,2025-01-06,10\n"
)


def test_a_history_with_refused_rows_sends_nothing_and_lists_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sent: list[Any]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_LOG, encoding="utf-8")
    for extra in ([], ["--dry-run"]):
        code, out, err = _cli([str(bad), "--shop-id", "tea-house-1", *extra], capsys)
        assert (code, out, sent) == (2, "", [])
        assert err.splitlines() == [
            "replay: refused: 4 of 6 rows; nothing sent",
            f"  {bad}:3: schema_invalid: $.customer_id: 'c-2\\x01' contains U+0001, a control "
            "or invisible character",
            f"  {bad}:4: implausible_time: $.occurred_at: '2099-01-03T00:00:00Z' is more than "
            f"2 days after the current time {err.split('current time ')[1].split()[0]}",
            f"  {bad}:5: implausible_time: $.occurred_at: '1997-01-04T00:00:00Z' is before "
            "2000-01-01T00:00:00Z",
            f"  {bad}:6: bad_row: date 'yesterday' is not YYYY-MM-DD or RFC 3339",
            "  by reason: implausible_time 2, schema_invalid 1, bad_row 1",
            "  1 events are dated before 2000-01-01T00:00:00Z (SEGSTREAM_EARLIEST_EVENT_TIME): to "
            "import this history, set it to 1997-01-04T00:00:00Z or earlier, for this command "
            "and for the worker",
        ]


def test_the_refused_list_is_bounded_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sent: list[Any]
) -> None:
    """A 1997 log of many rows: a few lines name rows, one counts the rest."""
    old = tmp_path / "old.csv"
    old.write_text("customer_id,date,amount\n" + "c,1997-02-03,1\n" * 500, encoding="utf-8")
    code, _, err = _cli([str(old), "--shop-id", "cdnow", "--list", "3"], capsys)
    lines = err.splitlines()
    assert code == 2 and sent == [] and len(lines) == 7
    assert lines[0] == "replay: refused: 500 of 500 rows; nothing sent"
    assert [line.split(":")[1] for line in lines[1:4]] == ["2", "3", "4"]
    assert lines[4:6] == ["  ... and 497 more", "  by reason: implausible_time 500"]


def test_the_earliest_event_time_setting_lets_an_older_history_in_and_says_so(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sent: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = tmp_path / "old.csv"
    old.write_text("customer_id,date,amount\nc,1997-02-03,1\nc,2001-02-03,1\n", encoding="utf-8")
    monkeypatch.setenv("SEGSTREAM_EARLIEST_EVENT_TIME", "1997-01-01T00:00:00Z")
    code, out, _ = _cli([str(old), "--shop-id", "cdnow"], capsys)
    assert code == 0 and len(sent) == 1 and len(sent[0].events) == 2
    assert (
        "  note: 1 events are dated before 2000-01-01T00:00:00Z, accepted with "
        "SEGSTREAM_EARLIEST_EVENT_TIME=1997-01-01T00:00:00Z: the worker needs the same "
        "setting, or it dead-letters them (implausible_time)"
    ) in out.splitlines()
    monkeypatch.setenv("SEGSTREAM_EARLIEST_EVENT_TIME", "1997")
    code, _, err = _cli([str(old), "--shop-id", "cdnow"], capsys)
    assert code == 2 and len(sent) == 1
    assert err.startswith("replay: error: invalid segstream settings: SEGSTREAM_EARLIEST_EVENT")
    assert err.count("\n") == 1


def test_a_subscription_history_is_sent_with_the_lateness_it_needs(
    capsys: pytest.CaptureFixture[str], sent: list[Any]
) -> None:
    files = [str(EXAMPLES / name) for name in ("subscriptions.csv", "charges.csv")]
    code, out, _ = _cli([*files, "--shop-id", "tea-house-1"], capsys)
    assert code == 0 and [len(h.events) for h in sent] == [11]
    assert "  order 5, signup 4, cancellation 2" in out.splitlines()
    assert "set it to 548 on the worker for the backfill" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.csv"], "replay: error: [Errno 2] No such file or directory: 'missing.csv'"),
        (
            ["EX/subscriptions.csv", "--shape", "orders"],
            "no column 'date', 'amount' for the orders",
        ),
        (["EX/events.csv", "--column", "colour=Farbe"], "expected NAME=HEADER with NAME one of"),
        (["EX/events.csv", "--shop-id", "no spaces"], "not a valid shop id: 'no spaces'"),
        (["EX/events.csv", "--wait", "0"], "must be a positive number"),
    ],
)
def test_bad_arguments_and_files_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], sent: list[Any]
) -> None:
    argv = [arg.replace("EX", str(EXAMPLES)) for arg in argv]
    if "--shop-id" not in argv:
        argv += ["--shop-id", "tea-house-1"]
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's errors
        code = int(str(exited.code))
    err = capsys.readouterr().err
    assert code == 2 and sent == [] and err.count("\n") == 1 and message in err, err


def test_checking_uses_the_bound_it_is_given() -> None:
    history = read_history(
        [("o.csv", ["customer_id,date,amount\n", "c,1998-05-05,1\n"])], Options("s")
    )
    assert check(history, datetime(1998, 1, 1, tzinfo=UTC), NOW).refusals == []
    [refusal] = check(history, datetime(1999, 1, 1, tzinfo=UTC), NOW).refusals
    assert (str(refusal.where), refusal.reason) == ("o.csv:2", "implausible_time")
