"""schemas/README.md names every schema file there is, and says what the code says of them.

Its Schemas table has one row per file of ``schemas/v1`` and no other; the input rows are the
event registry's types (each on its topic), the output rows the kinds ``validate_output``
checks; the Topics table gives every input and output topic its schema; the Dead letters
table has every reason the code and ``dead_letter.json`` allow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

from segstream.domain.contracts import EXAMPLE_DIR, SCHEMA_DIR, DeadLetterReason, OutputSchema
from segstream.domain.events import EVENT_CLASSES
from segstream.settings import OUTPUT_ROLES, Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "schemas" / "README.md").read_text()
ROW = re.compile(r"^\| \[`v1/(\w+)\.json`\]\(v1/(\w+)\.json\) \| (\w+) \|", re.MULTILINE)
SETTINGS = Settings.model_construct()


def section(title: str) -> str:
    """The text of README's level-2 section ``title``, up to the next level-2 heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def schema_rows() -> dict[str, str]:
    """Schema name -> kind (input, output, shared, document) from the Schemas table."""
    rows = ROW.findall(section("Schemas"))
    assert all(shown == target for shown, target, _ in rows), "a row links another file"
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names)), "a schema has two rows"
    return {name: kind for name, _, kind in rows}


def topic_row(topic: str) -> str:
    """The Topics table's row of ``topic``."""
    rows = [line for line in section("Topics").splitlines() if line.startswith(f"| `{topic}`")]
    assert len(rows) == 1, f"{topic}: {len(rows)} rows in the Topics table"
    return rows[0]


def test_every_schema_file_has_a_row_and_every_row_a_file() -> None:
    files = {path.stem for path in SCHEMA_DIR.glob("*.json")}
    named = set(schema_rows())
    assert files - named == set(), "schemas/README.md does not name these files"
    assert named - files == set(), "schemas/README.md names files that do not exist"


def test_input_rows_are_the_event_registry_each_on_its_topic() -> None:
    rows = schema_rows()
    inputs = {name for name, kind in rows.items() if kind == "input"}
    assert inputs == {cls.type_name for cls in EVENT_CLASSES}
    for cls in EVENT_CLASSES:
        topic = SETTINGS.topic(cls.topic_role)
        assert f"(v1/{cls.type_name}.json)" in topic_row(topic), topic


def test_output_rows_are_what_validate_output_checks() -> None:
    outputs = {name for name, kind in schema_rows().items() if kind == "output"}
    assert outputs == set(get_args(OutputSchema))


def test_every_output_topic_names_its_schemas() -> None:
    linked = set()
    for role in OUTPUT_ROLES:
        linked |= set(re.findall(r"\(v1/(\w+)\.json\)", topic_row(SETTINGS.topic(role))))
    assert linked == set(get_args(OutputSchema))


def test_every_dead_letter_reason_is_explained() -> None:
    schema = json.loads((SCHEMA_DIR / "dead_letter.json").read_text())
    reasons = set(get_args(DeadLetterReason))
    assert set(schema["properties"]["reason"]["enum"]) == reasons
    explained = set(re.findall(r"^\| `(\w+)` \|", section("Dead letters"), re.MULTILINE))
    assert explained == reasons


def test_every_example_folder_belongs_to_a_schema_and_holds_valid_records() -> None:
    folders = [path for path in EXAMPLE_DIR.iterdir() if path.is_dir()]
    assert folders
    for folder in folders:
        assert (SCHEMA_DIR / f"{folder.name}.json").exists(), folder.name
        assert list((folder / "valid").glob("*.json")), f"{folder.name}: no valid example"
