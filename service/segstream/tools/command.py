"""What every ``segstream`` subcommand shares: its name, a help text in plain words, and
errors as one line.

Docstrings are written in reStructuredText for the code's readers (````name````,
``:func:`name```); a user's ``--help`` shows them as plain text.

>>> plain("Reads ``segstream.orders`` (see :mod:`segstream.tools.replay`).")
'Reads segstream.orders (see segstream.tools.replay).'
"""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

PROGRAM = "segstream"
"""The console command (``python -m segstream`` runs it too)."""

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(doc: str | None) -> str:
    """A docstring as a user reads it: RST roles and literals as their text."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", doc or "")).strip()


class OneLineParser(argparse.ArgumentParser):
    """An argument parser that reports errors as one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser_for(name: str, doc: str | None) -> OneLineParser:
    """The argument parser of subcommand ``name``: ``segstream <name>``, its docstring as
    plain help (paragraphs kept), errors as one line."""
    return OneLineParser(
        prog=f"{PROGRAM} {name}",
        description=plain(doc),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
