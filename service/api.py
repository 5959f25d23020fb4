"""HTTP views on every worker: health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from service import telemetry
from service.agents import Wiring

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
"""Prometheus text format (aiohttp adds the charset itself)."""


def readiness(app: faust.App) -> dict[str, Any]:
    """Ready means: not rebalancing, and tables recovered from their changelogs."""
    recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
    rebalancing = bool(app.rebalancing)
    in_recovery = bool(app.in_recovery)
    ready = recovered and not rebalancing and not in_recovery
    telemetry.WORKER_READY.set(int(ready))
    return {"ready": ready, "rebalancing": rebalancing, "recovering": in_recovery}


def register_views(wiring: Wiring) -> None:
    """Declare the HTTP views on the wired app."""
    app = wiring.app

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        readiness(app)
        return web.bytes(generate_latest(telemetry.REGISTRY), content_type=METRICS_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "alive"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        state = readiness(app)
        return web.json(state, status=200 if state["ready"] else 503)
