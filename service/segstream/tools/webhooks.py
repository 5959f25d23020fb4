"""``segstream webhooks``: deliver segment changes to the webhook endpoints shops registered
(``POST /shops/{shop_id}/webhooks``), signed after the Standard Webhooks specification.

Run as many as the change topic has partitions: they share it in the consumer group
``<app id>-webhooks``. Each serves Prometheus metrics on
``SEGSTREAM_WEBHOOK_METRICS_HOST:SEGSTREAM_WEBHOOK_METRICS_PORT`` (``/metrics``). Runs until
SIGTERM or SIGINT (or ``--seconds``). See docs/webhooks.md.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import generate_latest

from segstream.observability import logs, telemetry
from segstream.settings import ConfigError, Settings, load_settings
from segstream.stream.topics import ensure_topics
from segstream.tools.command import parser_for
from segstream.webhooks.service import Delivery

log = logs.get_logger(__name__)


async def metrics_server(settings: Settings) -> web.AppRunner:
    """``/metrics`` (Prometheus text) and ``/healthz`` of the delivery process."""

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(telemetry.REGISTRY)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_metrics_host, settings.webhook_metrics_port)
    await site.start()
    return runner


async def run(settings: Settings, seconds: float | None) -> None:
    """Create the topics it needs, serve metrics, deliver until stopped."""
    await ensure_topics(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    if seconds is not None:
        loop.call_later(seconds, stop.set)
    runner = await metrics_server(settings)
    log.info("webhooks_started", metrics_port=settings.webhook_metrics_port)
    try:
        await Delivery(settings).run(stop)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = parser_for("webhooks", __doc__)
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    logs.configure(settings)
    try:
        asyncio.run(run(settings, args.seconds))
    except (KafkaError, TimeoutError, OSError) as error:
        print(f"segstream webhooks: {type(error).__name__}: {error}"[:500], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
