"""The chaos harness's TCP fault proxy (issue 30, item 1) in front of a local echo server:
bytes pass unchanged, and each fault does what it says."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faultproxy import FaultProxy, workers_listeners


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass  # reset through the proxy: what the tests do


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, int]]:
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield ("127.0.0.1", server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy([echo], seed=1) as running:
        yield running


def _connect(proxy: FaultProxy) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", proxy.ports[0]), timeout=2)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def _echoed(client: socket.socket, payload: bytes) -> bytes:
    client.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = client.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _round_trip(proxy: FaultProxy, payload: bytes) -> float:
    with _connect(proxy) as client:
        start = time.monotonic()
        assert _echoed(client, payload) == payload
        return time.monotonic() - start


def test_bytes_pass_through_unchanged(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 4000  # 1 MB, every byte value
    with _connect(proxy) as client:
        assert _echoed(client, payload) == payload
        assert _echoed(client, b"again") == b"again"


def test_latency_is_added_each_way(proxy: FaultProxy) -> None:
    assert _round_trip(proxy, b"ping") < 0.1
    proxy.latency(0.1, jitter=0.05)
    assert 0.2 <= _round_trip(proxy, b"ping") < 0.5  # 0.1-0.15 s there and back again
    proxy.clear()
    assert _round_trip(proxy, b"ping") < 0.1


def test_bandwidth_is_limited_roughly(proxy: FaultProxy) -> None:
    payload = b"x" * 100_000
    assert _round_trip(proxy, payload) < 0.1
    proxy.bandwidth(200_000)  # bytes/s each way; the echo flows back while the rest goes out
    assert 0.45 <= _round_trip(proxy, payload) < 0.8


def test_reset_closes_every_connection(proxy: FaultProxy) -> None:
    clients = [_connect(proxy) for _ in range(3)]
    for client in clients:
        assert _echoed(client, b"up") == b"up"
    assert proxy.connections == 3
    proxy.reset()
    for client in clients:
        with pytest.raises(ConnectionResetError):
            client.sendall(b"x")
            if not client.recv(10):
                raise ConnectionResetError("closed")
        client.close()
    assert _round_trip(proxy, b"new") < 0.1, "new connections are accepted after a reset"


def test_a_stall_cut_holds_bytes_then_heals(proxy: FaultProxy) -> None:
    with _connect(proxy) as client:
        assert _echoed(client, b"before") == b"before"
        proxy.cut(0.4)
        client.settimeout(0.2)
        client.sendall(b"held")
        with pytest.raises(TimeoutError):
            client.recv(10)
        client.settimeout(2)
        assert client.recv(10) == b"held", "delivered once the cut heals"
    assert proxy.faults.cut is None


def test_a_refuse_cut_resets_existing_and_new_connections_until_healed(
    proxy: FaultProxy,
) -> None:
    client = _connect(proxy)
    assert _echoed(client, b"up") == b"up"
    proxy.cut(None, mode="refuse")
    with pytest.raises(ConnectionResetError):
        client.sendall(b"x")
        if not client.recv(10):
            raise ConnectionResetError("closed")
    client.close()
    with pytest.raises(ConnectionResetError), _connect(proxy) as refused:
        refused.sendall(b"x")
        if not refused.recv(10):
            raise ConnectionResetError("closed")
    proxy.heal()
    assert _round_trip(proxy, b"healed") < 0.1


def test_the_listener_config_keeps_the_plaintext_and_controller_listeners(tmp_path: Path) -> None:
    text = workers_listeners(tmp_path, 100, [(102, 103), (104, 105)]).read_text().splitlines()
    assert text == [
        "listeners=PLAINTEXT://127.0.0.1:100,CONTROLLER://127.0.0.1:101,"
        "WORKERS1://127.0.0.1:102,WORKERS2://127.0.0.1:104",
        "advertised.listeners=PLAINTEXT://127.0.0.1:100,"
        "WORKERS1://127.0.0.1:103,WORKERS2://127.0.0.1:105",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "WORKERS1:PLAINTEXT,WORKERS2:PLAINTEXT",
    ]
