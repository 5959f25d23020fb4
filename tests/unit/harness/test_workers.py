"""The worker harness: its wait for progress (a slow ``/metrics`` answer is "not yet") and
the notable lines of a worker's log that a stuck chaos run prints."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.workers import WorkerProcess, notable


class _Metrics(BaseHTTPRequestHandler):
    delay_s = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        body = b"# TYPE segstream_events_total counter\nsegstream_events_total 42.0\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served() -> Iterator[tuple[ThreadingHTTPServer, WorkerProcess]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker = WorkerProcess("unused:9092", "app", "p", server.server_address[1], Path("/nowhere"))
    worker.scrape_timeout_s = 0.2
    try:
        yield server, worker
    finally:
        server.shutdown()
        _Metrics.delay_s = 0.0


def test_a_prompt_scrape_reads_the_count(
    served: tuple[ThreadingHTTPServer, WorkerProcess],
) -> None:
    assert served[1].events_handled() == 42.0


def test_a_scrape_slower_than_its_timeout_is_not_yet(
    served: tuple[ThreadingHTTPServer, WorkerProcess],
) -> None:
    _Metrics.delay_s = 0.5
    assert served[1].events_handled() is None


def test_a_refused_connection_is_not_hidden(
    served: tuple[ThreadingHTTPServer, WorkerProcess],
) -> None:
    server, worker = served
    server.shutdown()
    server.server_close()
    with pytest.raises(OSError):
        worker.events_handled()


def test_notable_keeps_warnings_and_errors_and_collapses_runs() -> None:
    def line(event: str, level: str) -> str:
        return json.dumps({"event": event, "level": level})

    lines = [
        line("recovery_started", "info"),
        line("partition_fenced", "warning"),
        *[line("timer overlapping", "warning")] * 3,
        "Traceback (most recent call last):",
        line("partition_stalled", "error"),
        line("timer overlapping", "warning"),
    ]

    assert notable(lines) == [
        line("partition_fenced", "warning"),
        line("timer overlapping", "warning") + " (x3)",
        "Traceback (most recent call last):",
        line("partition_stalled", "error"),
        line("timer overlapping", "warning"),
    ]
