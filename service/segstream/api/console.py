"""The console: a read-only page of a shop's segments, flows, metrics, cohorts, journey,
defined segments, experiments and customers, served by every worker at ``GET /console``.

The page holds no data: it is the same few static files for everyone, and the browser
reads the JSON API with the token the person gives it (typed, or in the URL fragment
``#token=...``, which a browser never sends to a server), so the page sees exactly what
the token may read. Its files are the package's (``console_assets``, Chart.js vendored
there: nothing is fetched from anywhere else, it works offline), read once when the
worker starts, and served from a fixed list by name (``GET /console/{asset}``): any other
name is a JSON 404, so no path reaches the file system. Every file goes out with a
Content-Security-Policy that lets the page load scripts, styles and data from the worker
only, and with no referrer.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import faust
from faust.web import Request, Response, View

PAGE = "index.html"
"""The page itself, served at ``/console``."""
ASSETS: dict[str, str] = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "chart.umd.min.js": "text/javascript; charset=utf-8",
}
"""The files the page loads, served at ``/console/<name>``, with their media types."""
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""Sent with every console file: only the worker's own scripts, styles and API, never
framed, no referrer (the fragment is never sent anyway), revalidated on each load."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One console file: its bytes and media type."""

    body: bytes
    content_type: str

    def headers(self) -> dict[str, str]:
        """The answer's headers: its media type and :data:`SECURITY_HEADERS`."""
        return {"Content-Type": self.content_type, **SECURITY_HEADERS}


def load() -> dict[str, Asset]:
    """The page and every asset, by name, read from the installed package."""
    folder = resources.files("segstream.api") / "console_assets"
    kinds = {PAGE: "text/html; charset=utf-8", **ASSETS}
    return {name: Asset(folder.joinpath(name).read_bytes(), kind) for name, kind in kinds.items()}


def register(app: faust.App) -> None:
    """Declare ``/console`` and ``/console/{asset}`` on the app's web server."""
    files = load()

    @app.page("/console")
    async def console(web: View, request: Request) -> Response:
        page = files[PAGE]
        return web.bytes(page.body, headers=page.headers())

    @app.page("/console/{asset}")
    async def console_asset(web: View, request: Request, asset: str) -> Response:
        found = files.get(asset) if asset in ASSETS else None
        if found is None:
            detail = "no such console file; the console is at /console"
            return web.json({"error": "not_found", "detail": detail}, status=404)
        return web.bytes(found.body, headers=found.headers())
