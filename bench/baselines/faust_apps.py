"""Bare Faust agents on segstream's input topics (``python -m bench.baselines.faust_apps``).

- ``forward``: every record is sent on, unchanged, to the output topic;
- ``table``: every record is decoded (JSON), one table row per customer is written (a
  count and the last event time), and the record is forwarded.

Faust as it comes (at least once, its own commits, RocksDB tables), no segstream code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import faust

from bench.baselines import baseline_parser

RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def build(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=args.data_dir,
        web_port=args.web_port,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=2.0,
        table_standby_replicas=0,
    )
    inputs = app.topic(*args.topics, partitions=args.partitions, **RAW)
    output = app.topic(args.output, partitions=args.partitions, **RAW)
    if args.mode == "forward":

        @app.agent(inputs)
        async def forward(stream: Any) -> None:
            async for event in stream.events():
                await output.send(key=event.key, value=event.value)

    else:
        table = app.Table("customers", default=None, partitions=args.partitions)

        @app.agent(inputs)
        async def decode_write_forward(stream: Any) -> None:
            async for event in stream.events():
                try:  # the input holds some broken records, as segstream's does
                    payload = json.loads(event.value)
                    key = f"{payload['shop_id']}/{payload['customer_id']}"
                    row = table.get(key) or {"n": 0}
                    table[key] = {"n": row["n"] + 1, "last": payload["occurred_at"]}
                except (ValueError, KeyError, TypeError):
                    pass
                await output.send(key=event.key, value=event.value)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = baseline_parser("python -m bench.baselines.faust_apps")
    parser.add_argument("mode", choices=["forward", "table"])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--web-port", type=int, required=True)
    args = parser.parse_args(argv)
    app = build(args)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    sys.argv = [*sys.argv[:1], "worker"]
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
