"""``python -m harness.cluster up|down|status``: the three-broker loopback cluster of
``make cluster-up`` (127.0.0.1:39092, :39094, :39096; KRaft, replication factor 3,
``min.insync.replicas=2``). Point segstream at it with
``SEGSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:39092,127.0.0.1:39094,127.0.0.1:39096`` and
``SEGSTREAM_TOPIC_REPLICATION=3``."""

from __future__ import annotations

import argparse
import sys

from harness.broker import BrokerCluster, BrokerError

BASE_PORT = 39092


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--port", type=int, default=BASE_PORT, help="the first node's port")
    args = parser.parse_args(argv)
    cluster = BrokerCluster.on(args.port, "dev-cluster")
    try:
        if args.command == "up":
            cluster.start()
            print(f"cluster: up on {cluster.bootstrap}")
        elif args.command == "down":
            cluster.stop()
            print("cluster: stopped")
        else:
            running = [b.bootstrap for b in cluster.brokers if b.run("status").returncode == 0]
            print(f"cluster: {len(running)} of {len(cluster.brokers)} nodes up {running}")
            return 0 if len(running) == len(cluster.brokers) else 1
    except BrokerError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
