"""``segstream``: one command for everything a user runs.

    segstream worker            run one worker until SIGTERM (settings: SEGSTREAM_* variables)
    segstream check-config      print the settings in effect, or what is wrong with them
    segstream simulate          publish simulated tiny shops' events (the demo's stream)
    segstream replay FILE.csv   import a shop's history from a CSV
    segstream watch             print segment changes as they happen
    segstream follow            keep a segment's members in a file, exactly once
    segstream erase SHOP CUST   ask segstream to forget a customer
    segstream token SCOPE       make a query-API token
    segstream registry --url U  register the input schemas in a schema registry
    segstream repartition ...   copy the input topics to a new partition count
    segstream webhooks          deliver segment changes to registered webhooks, signed

``segstream <command> --help`` says more. Exit codes everywhere: 0 done, 1 a failure of
Kafka or a peer, 2 bad arguments, settings or input (nothing done), 130 interrupted.
``python -m segstream <command>`` is the same command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from segstream.tools.command import PROGRAM, closed_pipe, plain

COMMANDS: dict[str, str] = {
    "worker": "segstream.__main__",
    "check-config": "segstream.__main__",
    "simulate": "segstream.tools.simulate",
    "replay": "segstream.tools.replay",
    "watch": "segstream.tools.watch",
    "follow": "segstream.tools.follow",
    "erase": "segstream.tools.erase",
    "token": "segstream.tools.token",
    "registry": "segstream.tools.registry",
    "repartition": "segstream.tools.repartition",
    "webhooks": "segstream.tools.webhooks",
}
"""Each subcommand and the module whose ``main(argv)`` runs it."""
RUNTIME = ("worker", "check-config")
"""The subcommands of ``segstream.__main__``, whose ``main`` takes the command name too."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``segstream <command> [arguments]``; its exit status. A reader that stops
    early (``segstream --help | head``) ends the command quietly, status 1."""
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        closed_pipe()
        return 1


def _run(args: list[str]) -> int:
    """One command."""
    if not args or args[0] in ("-h", "--help", "help"):
        print(plain(__doc__))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"{PROGRAM}: unknown command {name[:40]!r} (one of: {known})", file=sys.stderr)
        return 2
    run: Callable[[list[str]], int] = importlib.import_module(COMMANDS[name]).main
    try:
        return run([name, *rest] if name in RUNTIME else rest)
    except KeyboardInterrupt:
        print(f"{PROGRAM} {name}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as done:  # argparse's --help and errors
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())
