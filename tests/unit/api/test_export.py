"""The CSV export of a segment's members: every member once, in id order, the columns
asked for, formula-like text defused, unknown fields and segments refused."""

from __future__ import annotations

import csv
import io

import pytest

from segstream.api import export, queries
from tests.unit.api.test_flows_and_search import fed


def _rows(shop: str, model: str, segment: str, fields: list[str]) -> list[dict[str, str]]:
    pipeline, _ = fed()
    text = export.header(fields) + "".join(
        export.pages(pipeline.reader, shop, model, segment, fields)
    )
    return list(csv.DictReader(io.StringIO(text)))


def test_every_member_comes_once_in_id_order_with_the_columns_asked_for() -> None:
    pipeline, moves = fed()
    shop = next(iter(moves))[0]
    sizes = queries.segment_sizes(pipeline.reader, shop)["models"]["lifecycle"]
    segment = max(sizes, key=sizes.__getitem__)
    fields = export.chosen({"fields": "p_alive,marketing_opt_in,since,total_spend"})
    assert fields == ["customer_id", "p_alive", "marketing_opt_in", "since", "total_spend"]
    rows = _rows(shop, "lifecycle", segment, fields)
    members = queries.segment_members(
        pipeline.reader, shop, "lifecycle", segment, {"limit": "500"}
    )["customers"]
    assert [row["customer_id"] for row in rows] == members and len(rows) == sizes[segment]
    assert all(row["since"].endswith("Z") for row in rows)
    assert {row["marketing_opt_in"] for row in rows} <= {"true", "false", ""}
    assert all(float(row["total_spend"]) >= 0 for row in rows)


def test_pages_resume_after_the_last_customer_read(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, moves = fed()
    shop = next(iter(moves))[0]
    fields = export.chosen({"fields": "since"})
    whole = _rows(shop, "lifecycle", "active", fields)
    monkeypatch.setattr(export, "PAGE", 7)
    assert len(list(export.pages(pipeline.reader, shop, "lifecycle", "active", fields))) > 5
    assert _rows(shop, "lifecycle", "active", fields) == whole and whole


def test_default_columns_and_unknown_fields() -> None:
    assert export.chosen({})[0] == "customer_id" and "p_alive" in export.chosen({})
    with pytest.raises(queries.BadRequestError, match="unknown field 'email'"):
        export.chosen({"fields": "email"})


def test_an_unknown_model_or_segment_is_not_found() -> None:
    pipeline, moves = fed()
    shop = next(iter(moves))[0]
    with pytest.raises(queries.NotFoundError, match="unknown model"):
        export.check(pipeline.reader, shop, "nope", "x")
    with pytest.raises(queries.NotFoundError, match="unknown segment"):
        export.check(pipeline.reader, shop, "lifecycle", "nope")
    with pytest.raises(queries.NotFoundError, match="unknown shop"):
        export.check(pipeline.reader, "no-such-shop", "lifecycle", "active")


@pytest.mark.parametrize("hostile", ["=HYPERLINK(1)", "+1", "-2+3", "@SUM(A1)", "\tx"])
def test_text_a_spreadsheet_would_run_is_defused(hostile: str) -> None:
    line = export.header([export._cell(hostile), export._cell(-3), export._cell(None)])
    assert line.startswith(("'", "\"'")) and ",-3," in line
