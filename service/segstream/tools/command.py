"""What every ``segstream`` subcommand shares: its name, a help text in plain words,
errors as one line, and a quiet end when Ctrl-C stops it or its reader goes away.

Docstrings are written in reStructuredText for the code's readers (````name````,
``:func:`name```); a user's ``--help`` shows them as plain text.

>>> plain("Reads ``segstream.orders`` (see :mod:`segstream.tools.replay`).")
'Reads segstream.orders (see segstream.tools.replay).'
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
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


class UsageError(Exception):
    """Bad input found before anything was sent; the message is one line."""


def run_cli(prog: str, body: Callable[[], int]) -> int:
    """Run a CLI body: one-line messages for usage errors, quiet on Ctrl-C and closed pipes
    (status 1, as ``segstream`` itself and Python's own recipe: the output was cut short)."""
    try:
        return body()
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        closed_pipe()
        return 1


def closed_pipe() -> None:
    """After a ``BrokenPipeError`` (the reader stopped early: ``... | head``), point stdout
    at the null device, so the interpreter's flush at exit does not raise again and print
    a traceback (the Python documentation's recipe, module ``signal``: SIGPIPE)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
