"""The HTTP client: what one POST reports, and that endpoints holding their connections
open do not leave the others waiting for one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from harness.workers import free_port
from segstream.webhooks.service import client_session, http_poster

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the server fixture's loop

HANGING = 150
"""More than aiohttp's default cap of 100 connections in all."""


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    released = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(text="late")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="x" * 5000)

    app = web.Application()
    app.router.add_post("/hang", hang)
    app.router.add_post("/ok", ok)
    app.router.add_post("/broken", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()  # all at once
    yield f"http://127.0.0.1:{port}", released
    released.set()
    await runner.cleanup()


async def test_endpoints_that_hang_do_not_hold_the_connections_of_others(
    server: tuple[str, asyncio.Event],
) -> None:
    base, released = server
    async with client_session() as session:
        post = http_poster(session, timeout_s=30)
        hanging = [asyncio.ensure_future(post(f"{base}/hang", b"{}", {})) for _ in range(HANGING)]
        await asyncio.sleep(1.0)  # every hanging POST holds its connection now
        answer = await asyncio.wait_for(post(f"{base}/ok", b"{}", {}), 5)
        assert answer.status == 204 and answer.ok
        released.set()
        assert all(a.status == 200 for a in await asyncio.gather(*hanging))


async def test_the_default_client_would_have_made_them_wait(
    server: tuple[str, asyncio.Event],
) -> None:
    """Why the cap is lifted: with aiohttp's defaults the healthy POST waits."""
    base, released = server
    async with aiohttp.ClientSession() as session:
        post = http_poster(session, timeout_s=30)
        hanging = [asyncio.ensure_future(post(f"{base}/hang", b"{}", {})) for _ in range(HANGING)]
        await asyncio.sleep(1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(post(f"{base}/ok", b"{}", {}), 1)
        released.set()
        await asyncio.gather(*hanging)


async def test_a_post_reports_status_timeout_and_refusal(
    server: tuple[str, asyncio.Event],
) -> None:
    base, _ = server
    async with client_session() as session:
        post = http_poster(session, timeout_s=0.3)
        broken = await post(f"{base}/broken", b"{}", {})
        assert (broken.status, broken.result, len(broken.excerpt)) == (503, "5xx", 500)
        late = await post(f"{base}/hang", b"{}", {})
        assert (late.status, late.result) == (None, "timeout")
        refused = await post(f"http://127.0.0.1:{free_port()}/x", b"{}", {})
        assert (refused.status, refused.result) == (None, "error")
