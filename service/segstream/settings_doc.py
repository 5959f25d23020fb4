"""The settings table of docs/configuration.md, rendered from :class:`Settings`.

One row per setting: its variable ``SEGSTREAM_<NAME>``, its default and the description of
its pydantic ``Field``, so the page cannot drift from the code (a unit test compares them).
``python -m segstream.settings_doc`` prints the table; ``python -m segstream.settings_doc
docs/configuration.md`` rewrites the table in that page in place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from segstream.settings import PREFIX, Settings

HEADER = "| variable | default | meaning |\n|---|---|---|\n"


def default_text(field: FieldInfo) -> str:
    """A setting's default as the page shows it: ``unset`` for none, else its JSON value."""
    return "unset" if field.default is None else str(to_jsonable_python(field.default))


def settings_table() -> str:
    """The Markdown table of every setting, in the order :class:`Settings` declares them."""
    rows = [
        f"| `{PREFIX}{name.upper()}` | `{default_text(field)}` | {field.description or ''} |\n"
        for name, field in Settings.model_fields.items()
    ]
    return HEADER + "".join(rows)


def table_of(page: str, header: str = HEADER) -> str:
    """The table of a page that starts with ``header`` (the settings table by default): its
    header lines and every table row after them.

    Raises ValueError when the page has no such header."""
    start = page.index(header)
    return "".join(_take_rows(page[start:].splitlines(keepends=True)))


def _take_rows(lines: list[str]) -> list[str]:
    """The leading lines of ``lines`` that are table rows."""
    taken = []
    for line in lines:
        if not line.startswith("|"):
            break
        taken.append(line)
    return taken


def table_command(
    argv: list[str], tool: str, what: str, header: str, render: Callable[[], str]
) -> int:
    """The command of a generated table (this one, the models'): print ``render()``, or
    rewrite the table under ``header`` in the page named by the one argument; 2 and one
    line naming ``tool`` when the page cannot be rewritten or has no ``what`` table."""
    if not argv:
        sys.stdout.write(render())
        return 0
    page = Path(argv[0])
    try:
        text = page.read_text()
        page.write_text(text.replace(table_of(text, header), render(), 1))
    except OSError as error:
        sys.stderr.write(f"{tool}: cannot rewrite {page}: {error.strerror or error}\n")
        return 2
    except ValueError:
        sys.stderr.write(f"{tool}: {page} has no {what} table ({header.splitlines()[0]})\n")
        return 2
    return 0


def main(argv: list[str]) -> int:
    """Print the table, or rewrite it in the page named by the one argument."""
    return table_command(argv, "settings_doc", "settings", HEADER, settings_table)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
