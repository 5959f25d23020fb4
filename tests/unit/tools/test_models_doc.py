"""docs/segments.md's model table is the one rendered from the model registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from segstream.segments import available_models, registered
from segstream.settings_doc import table_of
from segstream.tools.models_doc import HEADER, main, models_table
from tests.toy_model import SpendBandModel

PAGE = Path(__file__).resolve().parents[3] / "docs" / "segments.md"


def test_the_pages_table_is_the_one_rendered_from_the_registry() -> None:
    table = table_of(PAGE.read_text(), HEADER)
    assert table == models_table(), "run python -m segstream.tools.models_doc docs/segments.md"
    assert len(table.splitlines()) == 2 + len(available_models())


def test_a_registered_model_is_a_row_of_its_own() -> None:
    with registered(SpendBandModel):
        rows = models_table().splitlines()
    assert "| `spend_band` | small, big | big or small spender, by total spend |" in rows
    assert not any("spend_band" in row for row in models_table().splitlines())


def test_a_pattern_keeps_the_table_one_cell_per_column() -> None:
    cluster = next(row for row in models_table().splitlines() if row.startswith("| `cluster`"))
    assert cluster.replace("\\|", "").count("|") == 4


def test_main_rewrites_a_stale_table_and_keeps_the_rest(tmp_path: Path) -> None:
    page = tmp_path / "segments.md"
    page.write_text(f"# Models\n\n{HEADER}| `gone` | x | old |\n\nafter\n")
    assert main([str(page)]) == 0
    assert page.read_text() == f"# Models\n\n{models_table()}\nafter\n"


def test_main_refuses_a_page_without_a_table_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "notes.md"
    page.write_text("# Notes\n")
    assert main([str(page)]) == 2
    assert main([str(tmp_path / "missing.md")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "no model table" in lines[0] and "missing.md" in lines[1]
    assert page.read_text() == "# Notes\n"
