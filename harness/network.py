"""Each worker's own road to a single broker, through a fault proxy (the chaos run's network
faults, issue 30 item 1).

The broker gets ``slots`` extra listeners (``WORKERS1``...), each advertised at its own
:class:`~harness.faultproxy.FaultProxy` port (see :func:`~harness.faultproxy.workers_listeners`
for why a proxy needs a listener of its own). A worker takes a free slot when it starts and
gives it back when it stops, so one worker can be cut off while the others run, and a fault
"on the network" is the same fault on every slot. The harness's own clients (publisher,
oracle, lag probe) use the ``PLAINTEXT`` listener and see no fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.faultproxy import CutMode, FaultProxy, workers_listeners


class WorkerNetwork:
    """``slots`` proxies, each in front of its own listener of the broker on ``broker_port``:
    the listeners take the ports after the broker's and its controller's (below the
    ephemeral range, so no outgoing connection takes one while the broker restarts); the
    proxies take free ports."""

    def __init__(self, broker_port: int, slots: int, directory: Path, seed: int = 0) -> None:
        self.listeners = [broker_port + 2 + n for n in range(slots)]
        self.proxies = [
            FaultProxy([("127.0.0.1", port)], seed=seed + n)
            for n, port in enumerate(self.listeners)
        ]
        self._broker_port = broker_port
        self._directory = directory
        self._holders: list[str | None] = [None] * slots

    def start(self) -> WorkerNetwork:
        """Start every proxy (the ones started are stopped again if one cannot start)."""
        try:
            for proxy in self.proxies:
                proxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every proxy, whatever one of them raises."""
        errors = []
        for proxy in self.proxies:
            try:
                proxy.stop()
            except Exception as error:  # the others still have to stop
                errors.append(error)
        if errors:
            raise errors[0]

    def broker_env(self) -> tuple[tuple[str, str], ...]:
        """``kafka.sh`` settings adding the listeners (the proxies must be started)."""
        pairs = zip(self.listeners, self.proxies, strict=True)
        routes = [(port, proxy.ports[0]) for port, proxy in pairs]
        config = workers_listeners(self._directory, self._broker_port, routes)
        return (("KAFKA_EXTRA_CONFIG", str(config)),)

    # -- slots ------------------------------------------------------------------------

    def take(self, worker: str) -> str:
        """The bootstrap address of a free slot, now held by ``worker``."""
        slot = self._holders.index(None) if None in self._holders else -1
        if slot < 0:
            raise RuntimeError(f"no free network slot for {worker}: {self._holders}")
        self._holders[slot] = worker
        return self.proxies[slot].address()

    def give_back(self, worker: str) -> None:
        """Free ``worker``'s slot (a cut of it heals: the next holder is not cut off; the
        network's latency and bandwidth stay, they are everyone's)."""
        for slot, holder in enumerate(self._holders):
            if holder == worker:
                self._holders[slot] = None
                self.proxies[slot].heal()

    def proxy_of(self, worker: str) -> FaultProxy:
        return self.proxies[self._holders.index(worker)]

    # -- faults on every slot ---------------------------------------------------------

    def latency(self, fixed: float, jitter: float = 0.0) -> None:
        for proxy in self.proxies:
            proxy.latency(fixed, jitter)

    def bandwidth(self, bytes_per_second: float | None) -> None:
        for proxy in self.proxies:
            proxy.bandwidth(bytes_per_second)

    def reset(self) -> None:
        for proxy in self.proxies:
            proxy.reset()

    def cut(self, worker: str, seconds: float, mode: CutMode) -> None:
        """Cut ``worker`` (its slot) off for ``seconds``; the others run on."""
        self.proxy_of(worker).cut(seconds, mode)


@contextmanager
def worker_network(
    broker_port: int, slots: int, directory: Path, seed: int = 0
) -> Iterator[WorkerNetwork]:
    """A started :class:`WorkerNetwork`, stopped on exit."""
    network = WorkerNetwork(broker_port, slots, directory, seed).start()
    try:
        yield network
    finally:
        network.stop()
