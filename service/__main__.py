"""``python -m service worker``: run one segstream worker (settings from SEGSTREAM_* env)."""

from __future__ import annotations

import argparse
import sys

from service.settings import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, validate settings, run the worker until stopped."""
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("command", choices=["worker", "check-config"])
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(settings.model_dump_json(indent=2))
        return 0
    from service.stream.worker import StartupError, run_worker

    try:
        run_worker(settings)
    except StartupError as error:
        print(f"segstream: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
