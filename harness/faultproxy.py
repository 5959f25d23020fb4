"""A TCP fault proxy for the chaos harness (issue 30, item 1): network faults between the
workers and the broker(s) without root, iptables or toxiproxy.

One listening port per upstream broker address; every accepted connection is piped to its
upstream in both directions, chunk by chunk, through the faults in force at that moment:

- ``latency(fixed, jitter)``: every chunk is held ``fixed + uniform(0, jitter)`` seconds
  (delivery times never go backwards, so the byte stream keeps its order);
- ``bandwidth(bytes_per_second)``: each direction of each connection is paced to the rate;
- ``reset()``: every open connection is closed with a TCP RST (``SO_LINGER`` 0) on both sides;
- ``cut(seconds, mode)``: ``"stall"`` holds every byte of existing and new connections
  (a partition that heals before TCP gives up: the bytes arrive late, client timeouts fire
  first), ``"refuse"`` resets existing connections and every new one until the cut heals;
  after ``seconds`` (or at ``heal()``) traffic flows again;
- ``clear()`` lifts every fault.

The proxy runs its own asyncio loop in a daemon thread; its methods are called from the
harness's thread (they are thread safe and return once the loop has applied them).

Where it sits in the path (design choice). A Kafka client bootstraps, then connects to the
addresses the broker *advertises* for the listener the request came in on. A proxy in front
of the ordinary ``PLAINTEXT`` listener would be bypassed after the first metadata response.
So the broker gets a second listener for the workers only (``workers_listeners``), through
``KAFKA_EXTRA_CONFIG`` (a later key wins, as ``harness/secure.py`` does for SASL_SSL), e.g.
for broker port B, its real worker listener port W and proxy port P::

    listeners=PLAINTEXT://127.0.0.1:B,CONTROLLER://127.0.0.1:B+1,WORKERS1://127.0.0.1:W
    advertised.listeners=PLAINTEXT://127.0.0.1:B,WORKERS1://127.0.0.1:P
    listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,WORKERS1:PLAINTEXT

and the proxy listens on P with upstream ``127.0.0.1:W``. Workers bootstrap from P; the
broker answers them with P (the WORKERS listener's advertised address), so every worker
byte crosses the proxy, while the harness's producer, oracle and inter-broker traffic
(PLAINTEXT) and the controller quorum are untouched. On a cluster each broker gets its own
WORKERS port and its own proxy port (one ``FaultProxy`` with several upstreams). The
advertised address is per listener, not per client: to cut one worker off while the others
run, that worker needs a listener (and a proxy port) of its own, e.g. ``WORKERS1``,
``WORKERS2``... each advertised at its own proxy port; every worker bootstraps from its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

CHUNK = 65536
"""The most bytes read (and delayed, and paced) as one chunk."""

CutMode = Literal["stall", "refuse"]
T = TypeVar("T")


@dataclass
class Faults:
    """The faults in force (read by every pipe at every chunk)."""

    fixed: float = 0.0
    jitter: float = 0.0
    rate: float | None = None
    cut: CutMode | None = None


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    open_pipes: int = 2

    def abort(self) -> None:
        """Close both sides with a RST and stop the pipes."""
        for writer in (self.client, self.upstream):
            _rst(writer)
        for task in self.tasks:
            task.cancel()


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Proxies ``listen_ports[i]`` to ``upstreams[i]`` (``0``: a free port, see ``ports``)."""

    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        listen_ports: Sequence[int] | None = None,
        host: str = "127.0.0.1",
        seed: int = 0,
    ) -> None:
        wanted = list(listen_ports) if listen_ports is not None else [0] * len(upstreams)
        if len(wanted) != len(upstreams):
            raise ValueError("one listening port per upstream")
        self._upstreams = list(upstreams)
        self._wanted = wanted
        self._host = host
        self._random = random.Random(seed)
        self.faults = Faults()
        self.ports: list[int] = []
        self.accepted = 0
        self._connections: set[_Connection] = set()
        self._flowing: asyncio.Event | None = None
        self._heal: asyncio.TimerHandle | None = None
        self._servers: list[asyncio.Server] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        try:
            self._call(self._listen)
        except BaseException:
            self.stop()  # a port taken: the loop and what did start go too
            raise
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            if not self._loop.is_closed():
                self._loop.close()
            return
        try:
            self._call(self._close)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def address(self, index: int = 0) -> str:
        """``host:port`` a client connects to for ``upstreams[index]``."""
        return f"{self._host}:{self.ports[index]}"

    @property
    def connections(self) -> int:
        return self._call(self._count)

    # -- faults (thread safe) ---------------------------------------------------------

    def latency(self, fixed: float, jitter: float = 0.0) -> None:
        self._sync(lambda: self._set(fixed=fixed, jitter=jitter))

    def bandwidth(self, bytes_per_second: float | None) -> None:
        self._sync(lambda: self._set(rate=bytes_per_second))

    def reset(self) -> None:
        """Every open connection is closed with a RST (new ones are accepted as usual)."""
        self._sync(self._reset_all)

    def cut(self, seconds: float | None, mode: CutMode = "stall") -> None:
        """Cut the network for ``seconds`` (``None``: until ``heal()``)."""
        self._sync(lambda: self._cut(seconds, mode))

    def heal(self) -> None:
        self._sync(self._do_heal)

    def clear(self) -> None:
        """Lift every fault (a cut heals)."""
        self._sync(self._clear)

    # -- in the loop ------------------------------------------------------------------

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _sync(self, action: Callable[[], object]) -> None:
        async def run() -> None:
            action()

        self._call(run)

    async def _count(self) -> int:
        return len(self._connections)

    def _set(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self.faults, name, value)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        for upstream, port in zip(self._upstreams, self._wanted, strict=True):
            server = await asyncio.start_server(self._handler(upstream), self._host, port)
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        self._reset_all()
        for server in self._servers:
            await server.wait_closed()
        # Let the cancelled pipes (and their delivery tasks) finish before the loop stops.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _reset_all(self) -> None:
        for connection in list(self._connections):
            connection.abort()
        self._connections.clear()

    def _cut(self, seconds: float | None, mode: CutMode) -> None:
        assert self._flowing is not None
        if self._heal is not None:
            self._heal.cancel()
            self._heal = None
        self.faults.cut = mode
        self._flowing.clear()
        if mode == "refuse":
            self._reset_all()
        if seconds is not None:
            self._heal = self._loop.call_later(seconds, self._do_heal)

    def _clear(self) -> None:
        self._do_heal()
        self._set(fixed=0.0, jitter=0.0, rate=None)

    def _do_heal(self) -> None:
        assert self._flowing is not None
        if self._heal is not None:
            self._heal.cancel()
            self._heal = None
        self.faults.cut = None
        self._flowing.set()

    def _handler(
        self, upstream: tuple[str, int]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accept(reader, writer, upstream)

        return accept

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: tuple[str, int]
    ) -> None:
        self.accepted += 1
        if self.faults.cut == "refuse":
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            _rst(writer)
            return
        if self._refusing():  # a cut that began while the upstream connection opened
            _rst(writer)
            _rst(up_writer)
            return
        connection = _Connection(writer, up_writer)
        self._connections.add(connection)
        connection.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, connection)),
            asyncio.create_task(self._pipe(up_reader, writer, connection)),
        ]

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        """Read chunks, stamp each with its delivery time; a second task delivers them."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=64)
        deliver = asyncio.create_task(self._deliver(queue, writer, connection))
        last = 0.0
        try:
            while True:
                await self._wait_flowing()
                data = await reader.read(CHUNK)
                if not data:
                    break
                delay = self.faults.fixed + self._random.uniform(0.0, self.faults.jitter)
                last = max(last, time.monotonic() + delay)
                await queue.put((last, data))
            await queue.put((last, b""))
            await deliver
        except (OSError, asyncio.IncompleteReadError):
            connection.abort()
        finally:
            deliver.cancel()
            connection.open_pipes -= 1
            if connection.open_pipes == 0:
                connection.client.close()
                connection.upstream.close()
                self._connections.discard(connection)

    async def _deliver(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        connection: _Connection,
    ) -> None:
        try:
            while True:
                at, data = await queue.get()
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._wait_flowing()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                rate = self.faults.rate
                if rate:
                    # Pace in slices so a rate change applies within a chunk.
                    step = max(1, int(rate / 20))
                    for start in range(0, len(data), step):
                        await self._wait_flowing()  # a cut holds the rest of a chunk too
                        piece = data[start : start + step]
                        writer.write(piece)
                        await writer.drain()
                        await asyncio.sleep(len(piece) / rate)
                else:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            connection.abort()

    def _refusing(self) -> bool:
        return self.faults.cut == "refuse"

    async def _wait_flowing(self) -> None:
        assert self._flowing is not None
        await self._flowing.wait()


def workers_listeners(directory: Path, broker_port: int, routes: Sequence[tuple[int, int]]) -> Path:
    """Broker properties (for ``KAFKA_EXTRA_CONFIG``) adding, for each ``(port, proxy_port)``
    of ``routes``, a plaintext listener ``WORKERS<n>`` (n from 1) on ``port`` advertised at
    ``proxy_port``, where a :class:`FaultProxy` forwards to ``port``. The ``PLAINTEXT``
    listener on ``broker_port`` (controller on the next) stays as it was. A listener per
    worker lets one worker be cut off alone."""
    names = [f"WORKERS{n}" for n in range(1, len(routes) + 1)]
    listens = [f"{name}://127.0.0.1:{port}" for name, (port, _) in zip(names, routes, strict=True)]
    adverts = [f"{name}://127.0.0.1:{via}" for name, (_, via) in zip(names, routes, strict=True)]
    protocols = [f"{name}:PLAINTEXT" for name in names]
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "workers_listeners.properties"
    config.write_text(
        "\n".join(
            [
                ",".join(
                    [
                        f"listeners=PLAINTEXT://127.0.0.1:{broker_port}",
                        f"CONTROLLER://127.0.0.1:{broker_port + 1}",
                        *listens,
                    ]
                ),
                ",".join([f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}", *adverts]),
                ",".join(
                    [
                        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                        *protocols,
                    ]
                ),
                "",
            ]
        )
    )
    return config
