"""What a request must be before it reaches a table (service/segstream/api/edge.py), and the JSON
every error answer has (service/segstream/api/routes.py's middleware)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from segstream.api import edge
from segstream.api.routes import json_errors


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("shop_id", "__main__"),
        ("shop_id", "_x"),
        ("shop_id", "tea house"),
        ("shop_id", "\u00d7\u00f8"),  # what the property run sent
        ("shop_id", "a" * 65),
        ("shop_id", "tea-1\n"),
        ("segment_id", "Big"),
        ("experiment_id", "-x"),
        ("model", "no-model"),
        ("model", "defined:"),
        ("customer_id", "c\x00"),
        ("customer_id", "c\u200b"),
        ("segment", "x" * 129),
    ],
)
def test_a_path_id_that_breaks_its_pattern_is_a_bad_request_quoting_a_prefix(
    name: str, value: str
) -> None:
    with pytest.raises(edge.BadRequestError, match=name) as raised:
        edge.check_path({name: value})
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("shop_id", "coffee-roaster-1"),
        ("shop_id", "tea.house_7"),
        ("customer_id", "cust 42/ü"),
        ("model", "lifecycle"),
        ("model", "defined:green-tea-lovers"),
        ("segment", "Can't Lose Them"),
        ("experiment_id", "winback-10"),
    ],
)
def test_a_documented_id_passes(name: str, value: str) -> None:
    edge.check_path({name: value})


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        ("5", 5),
        ("0", None),
        ("501", None),
        ("5_0", None),
        (" 5", None),
        ("+5", None),
        ("5.0", None),
    ],
)
def test_query_integers_are_read_strictly(raw: str, accepted: int | None) -> None:
    if accepted is None:
        with pytest.raises(edge.BadRequestError, match="limit"):
            edge.integer({"limit": raw}, "limit", 100, 1, 500)
    else:
        assert edge.integer({"limit": raw}, "limit", 100, 1, 500) == accepted


@pytest.mark.parametrize("raw", ["20250101", "2025-W01-1", "2025-1-01", "2025-13-01", "2025-02-29"])
def test_a_date_is_yyyy_mm_dd_and_real(raw: str) -> None:
    with pytest.raises(edge.BadRequestError, match="start"):
        edge.day({"start": raw}, "start")


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b'{"name": "a", "name": "b"}', "duplicate key 'name'"),
        (b'{"rule": {"op": "eq", "op": "ne"}}', "duplicate key 'op'"),
        (b'{"value": 1e999}', "double range"),
        (b'{"value": NaN}', "NaN"),
        (b'{"value": ' + b"9" * 400 + b"}", "double range"),
        (b'{"name": "\\ud800"}', "unpaired surrogate"),
    ],
)
def test_a_body_is_strict_json(body: bytes, mentions: str) -> None:
    with pytest.raises(edge.BadRequestError, match=mentions) as raised:
        edge.json_body(body, "a definition")
    assert len(str(raised.value)) <= edge.DETAIL_MAX_CHARS


def test_a_message_never_quotes_more_than_a_bounded_prefix() -> None:
    huge = "x" * 500_000
    for name in ("shop_id", "segment", "customer_id"):
        with pytest.raises(edge.BadRequestError) as raised:
            edge.check_path({name: huge})
        assert len(str(raised.value)) < 300
    with pytest.raises(edge.BadRequestError) as raised:
        edge.json_body(b'{"' + huge.encode() + b'": 1, "' + huge.encode() + b'": 2}', "x")
    assert len(str(raised.value)) < 300


def answer_of(error: BaseException, method: str = "GET") -> tuple[int, dict[str, Any], Any]:
    """What the middleware answers when the route (or view) raises ``error``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        raise error

    request = make_mocked_request(method, "/shops/x/nowhere")
    response = asyncio.run(json_errors(request, handler))
    assert isinstance(response, web.Response) and response.content_type == "application/json"
    assert response.text is not None
    return response.status, json.loads(response.text), response.headers


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (web.HTTPNotFound(), 404, "not_found"),
        (web.HTTPMethodNotAllowed("PATCH", ["GET", "HEAD"]), 405, "method_not_allowed"),
        (web.HTTPRequestEntityTooLarge(1024**2, 2 * 1024**2), 413, "payload_too_large"),
        (web.HTTPBadRequest(), 400, "bad_request"),
        (ValueError("a bug " + "x" * 10_000), 500, "internal_error"),
    ],
)
def test_every_error_of_the_web_server_is_json(
    error: BaseException, status: int, code: str
) -> None:
    got, body, headers = answer_of(error)
    assert (got, body["error"]) == (status, code)
    assert set(body) == {"error", "detail"} and len(body["detail"]) <= edge.DETAIL_MAX_CHARS
    assert "Traceback" not in body["detail"] and "xxx" not in body["detail"]
    if status == 405:
        assert headers["Allow"] == "GET,HEAD"


def test_an_answer_passes_the_middleware_unchanged() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True}, status=201)

    response = asyncio.run(json_errors(make_mocked_request("GET", "/"), handler))
    assert isinstance(response, web.Response) and response.status == 201


def test_a_405_on_the_preview_route_allows_post_only() -> None:
    """aiohttp's Allow joins the methods of every route the path matches, which for the
    preview includes ``/definitions/{segment_id}``'s."""

    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed("OPTIONS", ["DELETE", "GET", "HEAD", "POST", "PUT"])

    request = make_mocked_request("OPTIONS", "/shops/tea-1/definitions/preview")
    response = asyncio.run(json_errors(request, handler))
    assert (response.status, response.headers["Allow"]) == (405, "POST")
