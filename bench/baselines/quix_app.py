"""The peer a user might pick instead: a quix-streams 3 application doing segstream's
minimum (``python bench/baselines/quix_app.py``, in its own virtualenv: quix-streams pins
older pydantic versions than segstream). It decodes each record (JSON), updates one
per-customer state entry (a count and the last event time, in quix's RocksDB state with
its changelog) and produces the record on; at least once or exactly once. It commits
every 0.5 s (quix's default is 5 s, longer than this app needs for the whole input)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from quixstreams import Application, State


def count(value: dict[str, Any], state: State) -> dict[str, Any]:
    key = f"c:{value['customer_id']}"
    row = state.get(key) or {"n": 0}
    state.set(key, {"n": row["n"] + 1, "last": value["occurred_at"]})
    return value


def skip(*_: Any) -> bool:
    """Ignore a record that does not decode or lacks a field (the input holds some broken
    records, as segstream's does): quix calls this on consumer and processing errors."""
    return True


def main(argv: Sequence[str] | None = None) -> int:
    # bench.baselines.baseline_parser's four arguments, repeated: .venv-quix lacks that package
    parser = argparse.ArgumentParser(prog="quix_app.py")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topics", nargs="+", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--guarantee", choices=["at-least-once", "exactly-once"], required=True)
    args = parser.parse_args(argv)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=args.guarantee,
        commit_interval=0.5,  # the bench reads progress from committed offsets (default 5 s)
        state_dir=args.state_dir,
        loglevel="WARNING",
        on_consumer_error=skip,
        on_processing_error=skip,
    )
    output = app.topic(args.output, value_serializer="json")
    for name in args.topics:
        sdf = app.dataframe(app.topic(name, value_deserializer="json"))
        sdf = sdf.update(count, stateful=True)
        sdf.to_topic(output)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
