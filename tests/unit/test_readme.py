"""The docs document every setting and every API route the code has, and hold together.

README.md is the front door (at most 12 KB); the rest lives in ``docs/``. Settings are
documented in docs/configuration.md (its table rendered from the code), routes in
docs/api.md; every relative link in README.md and docs/ (design notes included) reaches an
existing file and, for ``#anchor`` links into Markdown, a heading. The design notes that
module docstrings point to exist and are indexed in docs/design/README.md.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from pydantic_core import to_jsonable_python

from segstream.api.routes import DEFINITIONS, SHOP_POSTS, SHOP_VIEWS, WEBHOOKS
from segstream.settings import Settings
from segstream.settings_doc import main, settings_table, table_of

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
API = (ROOT / "docs" / "api.md").read_text()
README_LIMIT_BYTES = 12 * 1024
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
DESIGN_NOTE = re.compile(r"docs/design/([\w-]+\.md)")


def test_every_setting_is_documented_with_its_default() -> None:
    for name, field in Settings.model_fields.items():
        variable = f"`SEGSTREAM_{name.upper()}`"
        assert field.description, f"{variable} has no description to document"
        assert variable in CONFIGURATION, variable
        rows = CONFIGURATION.splitlines()
        row = next(line for line in rows if line.startswith(f"| {variable}"))
        default = "unset" if field.default is None else str(to_jsonable_python(field.default))
        assert f"`{default}`" in row, row


def test_configuration_table_is_the_one_rendered_from_settings() -> None:
    assert table_of(CONFIGURATION) == settings_table(), "run python -m segstream.settings_doc"


def test_settings_doc_refuses_a_page_without_a_table_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "notes.md"
    page.write_text("# Notes\n")
    assert main([str(page)]) == 2
    assert main([str(tmp_path / "missing.md")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "no settings table" in lines[0] and "missing.md" in lines[1]
    assert page.read_text() == "# Notes\n"


def test_settings_doc_rewrites_a_stale_table_and_keeps_the_rest(tmp_path: Path) -> None:
    stale = "| variable | default | meaning |\n|---|---|---|\n| `SEGSTREAM_GONE` | `1` | old |\n"
    page = tmp_path / "configuration.md"
    page.write_text(f"# Settings\n\nintro\n\n{stale}\nafter\n")
    assert main([str(page)]) == 0
    assert page.read_text() == f"# Settings\n\nintro\n\n{settings_table()}\nafter\n"


def test_every_shop_route_is_documented() -> None:
    routes = [("GET", path) for path in SHOP_VIEWS] + [("POST", path) for path in SHOP_POSTS]
    routes += [
        (method.upper(), path)
        for registry in (DEFINITIONS, WEBHOOKS)
        for path, methods in registry.items()
        for method in methods
    ]
    for method, path in routes:
        documented = path.replace("{shop_id}", "{shop}").replace("{customer_id}", "{customer}")
        assert f"| `{method} {documented.split('?')[0]}" in API, path


def test_readme_is_a_front_door_of_at_most_12_kb() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move detail into docs/"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation but '-' and '_' dropped, spaces '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown text, repeated headings suffixed -1, -2 as GitHub does."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", markdown), re.MULTILINE):
        slug = anchor(heading)
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def test_anchor_follows_github() -> None:
    assert anchor("Convention: ChartMogul, Standard (B2B) formulas") == (
        "convention-chartmogul-standard-b2b-formulas"
    )
    assert anchors("# A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text()
    for url in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z]+:", url):
            continue
        path, _, fragment = url.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {url}: no such file"
        if fragment and target.suffix == ".md":
            assert fragment in anchors(target.read_text()), f"{page.name}: {url}: no such heading"


def test_every_design_note_pointed_to_exists_and_is_indexed() -> None:
    design = ROOT / "docs" / "design"
    index = (design / "README.md").read_text()
    notes = {path.name for path in design.glob("*.md")} - {"README.md"}
    sources = (ROOT / "service").rglob("*.py")
    pointed = {name for path in sources for name in DESIGN_NOTE.findall(path.read_text())}
    assert pointed, "no docstring points to docs/design/"
    assert pointed <= notes, f"pointed to but missing: {sorted(pointed - notes)}"
    assert notes == set(re.findall(r"\]\(([\w-]+\.md)\)", index)), "docs/design/README.md"
