"""The model table of docs/segments.md, rendered from the segment model registry.

One row per model of :func:`~segstream.segments.available_models`: its name, the segments
it assigns (``segment_names``) and its ``summary``, so a new model's module is its row.
``python -m segstream.tools.models_doc`` prints the table; ``python -m
segstream.tools.models_doc docs/segments.md`` rewrites the table in that page in place.
"""

from __future__ import annotations

import sys

from segstream.segments import SegmentModel, available_models
from segstream.settings_doc import table_command

HEADER = "| model | segments | what it is |\n|---|---|---|\n"


def segments_text(model: type[SegmentModel]) -> str:
    """The segments a model assigns, as the page shows them: the names, or the pattern."""
    names = model.segment_names
    if "enum" in names:
        return ", ".join(str(name) for name in names["enum"])
    return f"names matching `{names['pattern']}`"


def cell(text: str) -> str:
    """``text`` made safe inside a Markdown table cell (a ``|`` would end it)."""
    return text.replace("|", "\\|")


def models_table() -> str:
    """The Markdown table of every registered model, in the registry's order."""
    rows = [
        f"| `{name}` | {cell(segments_text(model))} | {cell(model.summary)} |\n"
        for name, model in available_models().items()
    ]
    return HEADER + "".join(rows)


def main(argv: list[str]) -> int:
    """Print the table, or rewrite it in the page named by the one argument."""
    return table_command(argv, "models_doc", "model", HEADER, models_table)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
