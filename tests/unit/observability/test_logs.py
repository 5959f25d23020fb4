"""Logging: a chatty library's repeats are held back; everything else passes."""

from __future__ import annotations

import logging

from segstream.observability.logs import PROGRESS, QuietRepeats, logging_config
from segstream.settings import Settings


def record(name: str, msg: str, at: float, *args: object) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.ERROR, "x.py", 1, msg, args, None)
    made.created = at
    return made


def test_a_chatty_librarys_repeats_pass_once_per_window_and_are_counted() -> None:
    quiet = QuietRepeats(window_s=10.0)
    template = "Unable connect to node with id %s: %s"
    passed = [
        quiet.filter(record("aiokafka", template, t / 100, 1, "refused")) for t in range(1000)
    ]
    assert passed == [True] + [False] * 999  # ten seconds of reconnect errors: one line
    later = record("aiokafka", template, 10.5, 1, "refused")
    assert quiet.filter(later)
    assert (
        later.getMessage()
        == "Unable connect to node with id 1: refused (999 more like it not logged)"
    )
    other = record("aiokafka", "Unable to update metadata from %s", 0.5, [1])
    assert quiet.filter(other)  # another message of the same logger is its own


def test_a_busy_workers_overlapping_timers_say_so_once_per_window() -> None:
    quiet = QuietRepeats(window_s=10.0)
    template = "Timer %s is overlapping (interval=%r runtime=%r)"
    passed = [
        quiet.filter(record("mode.timers", template, t / 2, "lag", 0.5, 0.8)) for t in range(20)
    ]
    assert passed == [True] + [False] * 19


def test_our_own_and_other_loggers_are_never_held_back() -> None:
    quiet = QuietRepeats(window_s=10.0)
    assert all(
        quiet.filter(record("segstream.stream.wiring", "partition_fenced", 0.0)) for _ in range(5)
    )
    assert all(quiet.filter(record("faust.transport", "Heartbeat failed", 0.0)) for _ in range(5))


def test_the_worker_logs_through_the_filter() -> None:
    config = logging_config(Settings())
    assert config["handlers"]["stderr"]["filters"] == ["repeats"]
    assert config["filters"]["repeats"]["()"] is QuietRepeats


def test_progress_shows_at_the_quiet_default_and_not_when_only_errors_are_asked_for() -> None:
    levels = {
        level: logging_config(Settings(log_level=level))["loggers"][PROGRESS]["level"]
        for level in ("debug", "info", "warning", "error")
    }
    assert levels == {"debug": "DEBUG", "info": "INFO", "warning": "INFO", "error": "ERROR"}
    assert logging_config(Settings())["root"]["level"] == "WARNING"  # the rest stays quiet
