"""Structured, quiet-by-default logging for the worker and the command-line tools."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import structlog

from segstream.settings import Settings

CHATTY = ("aiokafka", "mode.timers")
"""Loggers whose repeats are held back (see :class:`QuietRepeats`): aiokafka's reconnects,
and mode's "Timer ... is overlapping" from every timer tick of a busy worker (a backfill)."""


class QuietRepeats(logging.Filter):
    """Lets a chatty library's message (same logger, same template) through at most once
    per ``window_s``; the next one that passes says how many were held back. aiokafka
    logs every failed reconnect at ERROR: about 30,000 lines in seconds per worker while a
    broker restarts, which buried everything else in the chaos run's logs."""

    def __init__(self, window_s: float = 10.0, prefixes: tuple[str, ...] = CHATTY) -> None:
        super().__init__()
        self.window_s = window_s
        self.prefixes = prefixes
        self._passed: dict[tuple[str, str], float] = {}
        self._held: Counter[tuple[str, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        passed = self._passed.get(key)
        if passed is not None and record.created - passed < self.window_s:
            self._held[key] += 1
            return False
        self._passed[key] = record.created
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it not logged)"
        return True


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` that renders every record (Faust's too) as one
    JSON object per line (or a readable line with ``log_format=console``)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                "foreign_pre_chain": [
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                ],
            }
        },
        "filters": {"repeats": {"()": QuietRepeats}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "filters": ["repeats"],
            },
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
        "loggers": {PROGRESS: {"level": _progress_level(settings)}},
    }


PROGRESS = "segstream.progress"
"""The logger of long work's progress (a worker catching up on a backlog): shown at the
quiet default too, a line every half minute or so while the work lasts, nothing after."""


def _progress_level(settings: Settings) -> str:
    """Info, unless the logs were asked for errors only (or for everything)."""
    return {"debug": "DEBUG", "error": "ERROR"}.get(settings.log_level, "INFO")


def configure(settings: Settings) -> None:
    """Route structlog through stdlib logging with :func:`logging_config`."""
    import logging.config

    logging.config.dictConfig(logging_config(settings))
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    """A structured logger: ``log.info("event_name", key=value)``."""
    return structlog.get_logger(name)


__all__ = ["PROGRESS", "QuietRepeats", "configure", "get_logger", "logging", "logging_config"]
