"""``segstream webhooks``: bad settings are one line and 2; its /metrics serves the
delivery families."""

from __future__ import annotations

import aiohttp
import pytest

from harness.workers import free_port
from segstream.settings import Settings
from segstream.tools import webhooks


def test_a_bad_setting_is_one_line_and_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGSTREAM_WEBHOOK_QUEUE_MAX", "0")
    assert webhooks.main([]) == 2
    err = capsys.readouterr().err
    assert "SEGSTREAM_WEBHOOK_QUEUE_MAX" in err and "Traceback" not in err


def test_a_bad_argument_is_one_line_and_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        webhooks.main(["--seconds", "0"])
    assert done.value.code == 2 and len(capsys.readouterr().err.splitlines()) == 1


async def test_the_metrics_port_serves_the_delivery_families() -> None:
    settings = Settings(webhook_metrics_port=free_port())
    runner = await webhooks.metrics_server(settings)
    try:
        url = f"http://127.0.0.1:{settings.webhook_metrics_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            text = await answer.text()
    finally:
        await runner.cleanup()
    assert answer.status == 200
    assert 'segstream_webhook_deliveries_total{outcome="delivered"}' in text
    assert "segstream_webhook_delivery_seconds_bucket" in text
