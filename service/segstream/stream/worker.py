"""Starting a worker process: topics, app, wiring, logging, and Faust's worker loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time

import faust
from aiokafka.errors import KafkaConnectionError, KafkaError

from segstream.api.routes import register_views
from segstream.observability.logs import configure, get_logger
from segstream.observability.memory_probe import start_from_environment as start_memory_probe
from segstream.settings import Settings
from segstream.stream.app import create_app
from segstream.stream.faust_patches import UnsupportedVersionError, check_versions
from segstream.stream.kafka import CredentialsRefusedError, check_credentials
from segstream.stream.timers import register_timers
from segstream.stream.topics import TopologyError, ensure_topics, input_topics, verify_partitions
from segstream.stream.wiring import wire


class StartupError(Exception):
    """The worker cannot start; the message says why and what to do."""


def prepare_topics(settings: Settings) -> None:
    """Create missing topics and refuse mismatched partitioning, before Faust starts.
    An unreachable broker is retried for ``kafka_wait_s`` (it may be restarting)."""
    deadline = time.monotonic() + settings.kafka_wait_s
    while True:
        try:
            created = asyncio.run(_prepare(settings))
            break
        except KafkaConnectionError as error:
            try:
                asyncio.run(check_credentials(settings))
            except CredentialsRefusedError as refused:
                raise StartupError(str(refused)) from None
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"cannot reach Kafka at {settings.kafka_bootstrap} ({error}); is the broker "
                    "up? (make kafka-up starts a local one)"
                ) from None
            get_logger(__name__).warning("kafka_unreachable", retry_in_s=1.0)
            time.sleep(1.0)
        except (TopologyError, KafkaError) as error:
            raise StartupError(str(error)) from None
    if created:
        get_logger(__name__).info("topics_created", topics=created)


async def _prepare(settings: Settings) -> list[str]:
    created = await ensure_topics(settings, changelogs=True)
    await verify_partitions(settings)
    return created


def run_worker(settings: Settings) -> None:
    """Run one worker until SIGTERM/SIGINT; state is recovered from changelogs at start."""
    configure(settings)
    if not (settings.api_tokens or settings.api_tokens_file or settings.api_open):
        raise StartupError(
            "the query API needs tokens: set SEGSTREAM_API_TOKENS or SEGSTREAM_API_TOKENS_FILE "
            "(segstream token makes one) or, for development only, "
            "SEGSTREAM_API_OPEN=true"
        )
    try:
        check_versions()  # a library the patches were not tested with, a codec missing
    except UnsupportedVersionError as error:
        raise StartupError(str(error)) from None
    prepare_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    wiring = wire(app, settings)
    register_views(wiring, settings)
    register_timers(wiring, settings, input_topics(settings))
    worker = BoundedWorker(
        app, loglevel=settings.log_level.upper(), quiet=True, redirect_stdouts=False
    )
    worker.spinner = None
    tune_garbage_collector()
    start_memory_probe()  # soak runs only (SEGSTREAM_TEST_MEMORY_PROBE)
    worker.execute_from_commandline()


SHUTDOWN_TIMEOUT_S = 20.0
"""Longest a worker takes to end after SIGTERM or SIGINT. Faust's clean stop usually takes
a few seconds, but waits for every fetched record to be acknowledged first, and one that
never is (an agent that crashed mid-batch) made it hang for minutes (faust-streaming #501,
#162; robinhood/faust #484). A stop that takes longer is cut short: nothing is lost, since
whatever the worker had not committed is read again by the partitions' next owner, as after
a SIGKILL."""
SHUTDOWN_TIMEOUT_EXIT = 70
"""The exit status of a worker whose clean stop took too long (EX_SOFTWARE)."""


class BoundedWorker(faust.Worker):
    """Faust's worker, whose shutdown ends within :data:`SHUTDOWN_TIMEOUT_S`."""

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        _exit_after(SHUTDOWN_TIMEOUT_S)
        super()._schedule_shutdown(signal)


def _exit_after(seconds: float) -> None:
    """End the process in ``seconds`` unless it has ended by then (a daemon thread: the
    event loop may be what hangs)."""

    def expire() -> None:
        get_logger(__name__).error("shutdown_timeout", after_s=seconds)
        logging_flush()
        os._exit(SHUTDOWN_TIMEOUT_EXIT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def logging_flush() -> None:
    """Flush the log handlers (``os._exit`` skips it)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


GC_THRESHOLDS = (10_000, 20, 20)
"""Young-generation collections every 10,000 allocations instead of 700: an event
allocates thousands of short-lived objects, and few of them form cycles."""


def tune_garbage_collector() -> None:
    """Move everything loaded so far (modules, app, models) out of the collector's
    sight, and collect less often (about 3 % more events/s in the pipeline)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
