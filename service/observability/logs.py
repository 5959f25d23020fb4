"""Structured, quiet-by-default logging for the worker and the command-line tools."""

from __future__ import annotations

import logging
from typing import Any

import structlog

from service.settings import Settings


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
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "structured"},
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
    }


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


__all__ = ["configure", "get_logger", "logging", "logging_config"]
