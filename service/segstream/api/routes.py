"""HTTP views on every worker: the query API, health, readiness and Prometheus metrics.

Shop views are routed to the worker that owns the shop's partition, so any worker
answers any request: the partition is Kafka's default partitioner over the ``shop_id``
key (what producers use), its owner comes from Faust's assignment metadata. Faust's own
``topic_route`` is not used: it asks the producer's metadata for the topic, which is
empty until the worker has produced to it. A POST is forwarded with its body. The
contract is ``deploy/openapi.json``: path ids are checked against it before anything else
(:mod:`segstream.api.edge`), a body must be sent as ``application/json``, and every answer
is JSON, including the web server's own (unknown route 404, wrong method 405 with
``Allow``, body over 1 MiB 413) and, should a view fail, a 500 without a traceback.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import faust
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from prometheus_client import generate_latest
from yarl import URL

from segstream.api import console, definitions, edge, experiments, export, queries, webhooks
from segstream.api.access import Access
from segstream.api.definitions import DefinitionWriter
from segstream.api.document import SPEC_PATH
from segstream.domain.events import Order
from segstream.engine.view import ReadView
from segstream.experiments import ExperimentError
from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.segments.defined import DefinitionError
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.stalls import Stall
from segstream.stream.wiring import Wiring
from segstream.webhooks.registry import WebhookError

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
"""Prometheus text format (aiohttp adds the charset itself)."""
JSON_CONTENT_TYPE = "application/json"
"""The only media type a request body may have (415 otherwise)."""

log = get_logger(__name__)

Answer = Callable[..., dict[str, Any]]

SHOP_VIEWS: dict[str, Answer] = {
    "/shops/{shop_id}/customers/{customer_id}": lambda p, q, shop_id, customer_id: queries.customer(
        p, shop_id, customer_id
    ),
    "/shops/{shop_id}/segments": lambda p, q, shop_id: queries.segment_sizes(p, shop_id),
    "/shops/{shop_id}/segments/{model}/{segment}": lambda p, q, shop_id, model, segment: (
        queries.segment_members(p, shop_id, model, segment, q)
    ),
    "/shops/{shop_id}/metrics": lambda p, q, shop_id: queries.window_metrics(p, shop_id, q),
    "/shops/{shop_id}/cohorts": lambda p, q, shop_id: queries.cohorts(p, shop_id, q),
    "/shops/{shop_id}/journey": lambda p, q, shop_id: queries.journey(p, shop_id, q),
    "/shops/{shop_id}/models": lambda p, q, shop_id: queries.model_quality(p, shop_id),
    "/shops/{shop_id}/flows": lambda p, q, shop_id: queries.flows(p, shop_id, q),
    "/shops/{shop_id}/customers": lambda p, q, shop_id: queries.search_customers(p, shop_id, q),
}
"""GET views: ``(reader, query, **path parameters) -> answer``."""

SHOP_POSTS: dict[str, Answer] = {
    "/shops/{shop_id}/definitions/preview": lambda p, q, body, shop_id: queries.definition_preview(
        p, shop_id, body, q
    ),
}
"""POST views: ``(reader, query, body, **path parameters) -> answer`` (body: bytes)."""

Write = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]
DEFINITIONS: dict[str, dict[str, Write]] = {
    "/shops/{shop_id}/definitions": {
        "get": lambda p, w, body, shop_id: _now((200, definitions.listing(p, shop_id))),
        "post": lambda p, w, body, shop_id: definitions.create(p, w.send, shop_id, body),
    },
    "/shops/{shop_id}/definitions/{segment_id}": {
        "get": lambda p, w, body, shop_id, segment_id: _now(
            (200, definitions.one(p, shop_id, segment_id))
        ),
        "put": lambda p, w, body, shop_id, segment_id: definitions.replace(
            p, w.send, shop_id, segment_id, body
        ),
        "delete": lambda p, w, body, shop_id, segment_id: definitions.delete(
            p, w.send, shop_id, segment_id
        ),
    },
    "/shops/{shop_id}/experiments": {
        "get": lambda p, w, body, shop_id: _now((200, experiments.listing(p, shop_id))),
        "post": lambda p, w, body, shop_id: experiments.create(p, w.send, shop_id, body),
    },
    "/shops/{shop_id}/experiments/{experiment_id}": {
        "get": lambda p, w, body, shop_id, experiment_id: _now(
            (200, experiments.one(p, shop_id, experiment_id))
        ),
        "put": lambda p, w, body, shop_id, experiment_id: experiments.replace(
            p, w.send, shop_id, experiment_id, body
        ),
        "delete": lambda p, w, body, shop_id, experiment_id: experiments.delete(
            p, w.send, shop_id, experiment_id
        ),
    },
}
"""Definition views by method: ``(reader, writer, body, **path parameters) -> (status,
answer)``, awaited (writes wait for the worker to apply them)."""


WEBHOOKS: dict[str, dict[str, Write]] = {
    "/shops/{shop_id}/webhooks": {
        "get": lambda store, body, shop_id: webhooks.listing(store, shop_id),
        "post": lambda store, body, shop_id: webhooks.create(store, shop_id, body),
    },
    "/shops/{shop_id}/webhooks/{webhook_id}": {
        "get": lambda store, body, shop_id, webhook_id: webhooks.one(store, shop_id, webhook_id),
        "put": lambda store, body, shop_id, webhook_id: webhooks.replace(
            store, shop_id, webhook_id, body
        ),
        "delete": lambda store, body, shop_id, webhook_id: webhooks.delete(
            store, shop_id, webhook_id
        ),
    },
}
"""Webhook views by method: ``(store, body, **path parameters) -> (status, answer)``,
awaited (see :mod:`segstream.api.webhooks`)."""


async def _now(answer: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return answer


def serving(app: faust.App) -> bool:
    """Whether the tables may be read: not rebalancing, recovered from their changelogs."""
    recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
    return recovered and not app.rebalancing and not app.in_recovery


def readiness(
    app: faust.App, stalls: Mapping[int, Stall], fenced: Collection[int] = ()
) -> dict[str, Any]:
    """Ready means: the tables may be read (:func:`serving`), no partition is stalled
    (each stalled one is listed with its reason), and none waits for a new assignment
    after its producer was fenced or its transaction failed (listed too)."""
    ready = serving(app) and not stalls and not fenced
    telemetry.set_ready(ready)
    return {
        "ready": ready,
        "rebalancing": bool(app.rebalancing),
        "recovering": bool(app.in_recovery),
        "stalled": [{"partition": p, **stalls[p].report()} for p in sorted(stalls)],
        "fenced": sorted(fenced),
    }


def answer(view: View, query: Callable[[], dict[str, Any]]) -> Response:
    """Run a query; unknown things are 404, bad parameters 400, a segment definition that
    breaks its contract 422 (with the offending part's path), all with a message."""
    try:
        return view.json(query())
    except Exception as error:
        return failure(view, error)


async def answer_write(view: View, write: Callable[[], Awaitable[tuple[int, Any]]]) -> Response:
    """Run a definition view; failures as :func:`answer`'s, and a conflict is 409."""
    try:
        status, body = await write()
    except Exception as error:
        return failure(view, error)
    return view.json(body, status=status)


CLIENT_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (definitions.ConflictError, 409, "conflict"),
    (webhooks.WebhookConflictError, 409, "conflict"),
    (webhooks.WebhooksUnavailableError, 503, "unavailable"),
    (WebhookError, 422, "invalid_webhook"),
    (queries.NotFoundError, 404, "not_found"),
    (queries.BadRequestError, 400, "bad_request"),
    (ExperimentError, 422, "invalid_experiment"),  # before its base, DefinitionError
    (DefinitionError, 422, "invalid_definition"),
)
"""The errors a client caused: status and error code of each."""


def failure(view: View, error: Exception) -> Response:
    """The client's error answer to ``error`` (re-raised when it is not the client's); an
    invalid definition's answer also names the offending part (``path``). Detail and path
    are cut to :data:`~segstream.api.edge.DETAIL_MAX_CHARS`: they quote the request."""
    for kind, status, code in CLIENT_ERRORS:
        if isinstance(error, kind):
            body = {"error": code, "detail": edge.bounded(str(error))}
            if isinstance(error, DefinitionError | WebhookError):
                body["path"] = edge.bounded(error.path)
            return view.json(body, status=status)
    raise error


PREVIEW_PATH = re.compile(r"/shops/[^/]+/definitions/preview")
"""The preview route, which ``/definitions/{segment_id}`` also matches: OpenAPI (and so
this API) reads the concrete path first, so it serves POST only (the segment id
``preview`` is reserved)."""
SERVER_ERRORS: dict[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
"""Error codes of what the web server answers itself (another status: ``bad_request``
below 500, ``internal_error`` from 500)."""


@aiohttp_web.middleware
async def json_errors(request: aiohttp_web.Request, handler: Any) -> aiohttp_web.StreamResponse:
    """Every answer JSON: the web server's own errors (no route, a method the route does
    not serve, a body over the size limit) keep their status and headers (``Allow``) with
    an Error body; an exception no view handled is logged and answered 500 without a
    traceback (a bug, never a client's fault)."""
    try:
        response: aiohttp_web.StreamResponse = await handler(request)
    except aiohttp_web.HTTPException as error:
        if error.status < 400:
            raise
        code = SERVER_ERRORS.get(error.status, "bad_request" if error.status < 500 else "")
        headers = dict(error.headers)
        if error.status == 405 and PREVIEW_PATH.fullmatch(request.path):
            headers["Allow"] = "POST"  # not the methods of /definitions/{segment_id}
        return _json_error(error.status, code or "internal_error", error.reason, headers)
    except Exception:
        log.exception("api_request_failed", method=request.method, path=request.path[:200])
        detail = "the worker failed to answer; the failure is logged"
        return _json_error(500, "internal_error", detail, {})
    return response


def _json_error(status: int, code: str, detail: str, headers: Any) -> aiohttp_web.Response:
    kept = {name: value for name, value in headers.items() if name.lower() in ("allow",)}
    body = {"error": code, "detail": edge.bounded(detail)}
    return aiohttp_web.json_response(body, status=status, headers=kept)


def json_answers(app: faust.App) -> None:
    """Put :func:`json_errors` in front of every route of the app's web server."""
    middlewares = app.web.web_app.middlewares  # type: ignore[attr-defined]
    if json_errors not in middlewares:
        middlewares.append(json_errors)


def unsupported_body(web: View, request: Request) -> Response | None:
    """415 unless the body is sent as JSON (``application/json``, any parameters)."""
    kind = request.headers.get("Content-Type", "")
    if kind.partition(";")[0].strip().lower() == JSON_CONTENT_TYPE:
        return None
    detail = f"send the body as {JSON_CONTENT_TYPE}, not {edge.shown(kind or 'no Content-Type')}"
    return web.json({"error": "unsupported_media_type", "detail": detail}, status=415)


def _refused(route: Route, web: View, request: Request, shop_id: str | None) -> Response | None:
    """The answer to a request its token may not make (see :mod:`segstream.api.access`)."""
    denial = route.access.check(request.headers.get("Authorization"), shop_id)
    if denial is None:
        return None
    body = {"error": denial.error, "detail": denial.detail}
    return web.json(body, status=denial.status, headers=denial.headers())


MEMBERS_CSV = "/shops/{shop_id}/segments/{model}/{segment}/members.csv"
SHOP_STREAMS = (MEMBERS_CSV,)
"""GET views that stream their answer (not JSON)."""


async def stream_members(
    reader: ReadView, web: View, request: Request, params: dict[str, str]
) -> Response:
    """``members.csv``: a segment's members as CSV, streamed a page at a time (bounded
    memory whatever the segment's size; the worker's other work runs between pages). A
    failure once the answer began cuts it short: the client sees it incomplete."""
    shop_id, model, segment = params["shop_id"], params["model"], params["segment"]
    try:
        fields = export.chosen(request.query)
        export.check(reader, shop_id, model, segment)
    except Exception as error:
        return failure(web, error)
    name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{shop_id}-{model}-{segment}.csv")
    response = aiohttp_web.StreamResponse(
        headers={
            "Content-Type": f"{CSV_CONTENT_TYPE}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
    )
    await response.prepare(request)  # type: ignore[arg-type]
    try:
        await response.write(export.header(fields).encode())
        for page in export.pages(reader, shop_id, model, segment, fields):
            await response.write(page.encode())
            await asyncio.sleep(0)  # the worker's batches, heartbeats and other requests
        await response.write_eof()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        log.info("export_abandoned", shop_id=shop_id, model=model)  # the client went away
    except Exception:
        log.exception("export_failed", shop_id=shop_id, model=model)
        cut_short(request)
    return response  # type: ignore[return-value]


def cut_short(request: Request) -> None:
    """End a streamed answer that failed after it began without its last chunk, so the
    client sees an incomplete answer (a status can no longer be sent)."""
    transport = request.transport  # type: ignore[attr-defined]
    if transport is not None:
        transport.abort()


async def list_shops(
    app: faust.App, reader: ReadView, route: Route, web: View, request: Request
) -> Response:
    """``GET /shops``: the shops the token may read, from this worker and (unless the
    request is another worker's, ``local=true``) from every other worker, by id."""
    if not serving(app):
        detail = "this worker is restoring its tables; retry shortly"
        return web.json({"error": "unavailable", "detail": detail}, status=503)
    try:
        local = edge.choice(request.query, "local", "false", ("true", "false")) == "true"
    except edge.BadRequestError as error:
        return failure(web, error)
    only = route.access.only_shop(request.headers.get("Authorization"))
    listed = queries.shops(reader, only)
    if not local:
        peers = peer_urls(app, route)
        answers = await asyncio.gather(*(_peer_shops(app, url, request) for url in peers))
        for url, (status, found) in zip(peers, answers, strict=True):
            if status == 429:
                detail = "more requests than this token may make: the shop list asks every worker"
                body = {"error": "too_many_requests", "detail": detail}
                return web.json(body, status=429, headers={"Retry-After": "1"})
            if found is None:
                detail = f"the worker at {url} does not answer (it may have died); retry shortly"
                return web.json({"error": "unavailable", "detail": detail}, status=503)
            listed += found
    return web.json({"shops": sorted(listed, key=lambda shop: str(shop["shop_id"]))})


PEER_TIMEOUT = aiohttp.ClientTimeout(total=10)
"""How long ``GET /shops`` waits for another worker's shops."""


def peer_urls(app: faust.App, route: Route) -> list[str]:
    """The web URLs of the other workers that consume the input topic."""
    own = URL(route.own_url)
    return sorted(
        str(url)
        for url, topics in app.router.external_topics_metadata().items()
        if topics.get(route.topic) and URL(str(url)) != own
    )


async def _peer_shops(
    app: faust.App, url: str, request: Request
) -> tuple[int, list[dict[str, Any]] | None]:
    """Another worker's own shops, with its status (0: no answer; the shops are None
    unless it answered them)."""
    headers = forwarded_token(request)
    asked = URL(url).with_path("/shops").with_query(local="true")
    try:
        async with app.http_client.get(asked, headers=headers, timeout=PEER_TIMEOUT) as response:
            if response.status != 200:
                return response.status, None
            found = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0, None
    shops = found.get("shops") if isinstance(found, dict) else None
    return 200, shops if isinstance(shops, list) else None


def owner_url(app: faust.App, topic: str, partition: int) -> str | None:
    """Web URL of the worker that consumes ``topic``'s ``partition`` (None mid-rebalance)."""
    for url, topics in app.router.external_topics_metadata().items():
        if partition in topics.get(topic, ()):
            return str(url)
    return None


def forwarded_token(request: Request) -> dict[str, str]:
    """The request's ``Authorization`` header for a request to another worker, which
    checks the token again (none when the request had none)."""
    found = request.headers.get("Authorization")
    return {} if found is None else {"Authorization": found}


async def proxy(
    app: faust.App, url: str, web: View, request: Request, body: bytes | None = None
) -> Response:
    """Forward the request (its method, and ``body``) to another worker and relay its
    answer."""
    target = URL(url)
    routed = request.url.with_host(str(target.host)).with_port(target.port)
    kind = request.headers.get("Content-Type", "application/json")
    headers = forwarded_token(request) | ({} if body is None else {"Content-Type": kind})
    options: dict[str, Any] = {"data": body, "headers": headers}
    if routed.path.endswith(".csv"):  # an export: as long as it keeps coming
        options["timeout"] = STREAM_TIMEOUT
    forwarded = app.http_client.request(request.method, routed, **options)
    try:
        async with forwarded as response:
            if response.content_type == CSV_CONTENT_TYPE and response.status == 200:
                return await _relay(response, request)
            return web.text(
                await response.text(), content_type=response.content_type, status=response.status
            )
    except (aiohttp.ClientError, TimeoutError):
        detail = "the worker that owns the shop does not answer (it may have died); retry shortly"
        return web.json({"error": "unavailable", "detail": detail}, status=503)


CSV_CONTENT_TYPE = "text/csv"
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
"""A forwarded export has no total time limit, only one between chunks."""


async def _relay(answer: aiohttp.ClientResponse, request: Request) -> Response:
    """Relay a streamed answer (a CSV export) chunk by chunk: the forwarding worker keeps
    no more than one chunk of it."""
    kept = ("Content-Type", "Content-Disposition")
    headers = {name: answer.headers[name] for name in kept if name in answer.headers}
    relayed = aiohttp_web.StreamResponse(status=answer.status, headers=headers)
    await relayed.prepare(request)  # type: ignore[arg-type]
    try:
        async for chunk in answer.content.iter_chunked(64 * 1024):
            await relayed.write(chunk)
        await relayed.write_eof()
    except (ConnectionError, aiohttp.ClientError, TimeoutError) as error:
        # the client went away, or the owner did: an incomplete answer, never a short one
        log.info("relay_cut", path=str(request.url.path)[:200], error=type(error).__name__)
        cut_short(request)
    return relayed  # type: ignore[return-value]


def register_views(wiring: Wiring, settings: Settings) -> None:
    """Declare the HTTP views on the wired app."""
    app, reader = wiring.app, wiring.pipeline.reader  # reads that fill no write cache
    json_answers(app)
    topic = settings.topic(Order.topic_role)
    own_url = str(app.conf.canonical_url)
    access, incomplete = Access.from_settings(settings), wiring.runner.commits.incomplete
    route = Route(topic, settings.topic_partitions, own_url, access, incomplete)
    for path, handler in SHOP_VIEWS.items():
        _shop_view(app, reader, path, handler, route)
    for path, handler in SHOP_POSTS.items():
        _shop_post(app, reader, path, handler, route)
    writer = DefinitionWriter(settings)
    for path, methods in DEFINITIONS.items():
        _definitions_view(app, reader, writer, path, methods, route)
    store = webhooks.WebhookStore(settings)
    for path, methods in WEBHOOKS.items():
        _webhooks_view(app, store, path, methods, route)

    async def close_writer(sender: Any, *args: Any, **kwargs: Any) -> None:
        await writer.close()
        await store.close()

    app.on_before_shutdown.connect(close_writer)  # type: ignore[arg-type]

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        readiness(app, wiring.runner.stalls, wiring.runner.checkpoint.fenced)
        return web.bytes(generate_latest(telemetry.REGISTRY), content_type=METRICS_CONTENT_TYPE)

    @app.page(MEMBERS_CSV)
    async def members_csv(web: View, request: Request, **params: str) -> Response:
        elsewhere = await _elsewhere(app, route, web, request, params)
        if elsewhere is not None:
            return elsewhere
        return await stream_members(reader, web, request, params)

    @app.page("/shops")
    async def shop_list(web: View, request: Request) -> Response:
        refused = _refused(route, web, request, None)
        if refused is not None:
            return refused
        return await list_shops(app, reader, route, web, request)

    @app.page("/templates")
    async def segment_templates(web: View, request: Request) -> Response:
        return _refused(route, web, request, None) or web.json(definitions.templates())

    console.register(app)  # the page and its files; the data comes from the views above
    contract = SPEC_PATH.read_bytes()  # the document the contract tests check

    @app.page("/openapi.json")
    async def openapi(web: View, request: Request) -> Response:
        return web.bytes(contract, content_type=JSON_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "alive"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        state = readiness(app, wiring.runner.stalls, wiring.runner.checkpoint.fenced)
        return web.json(state, status=200 if state["ready"] else 503)


@dataclass(frozen=True, slots=True)
class Route:
    """How to find a shop's owner: the topic and partition count, and this worker's URL."""

    topic: str
    partitions: int
    own_url: str
    access: Access
    incomplete: Callable[[int], bool] = lambda partition: False
    """Whether this worker's store of a partition misses records (its recovery refused)."""


def _shop_view(app: faust.App, reader: ReadView, path: str, handler: Answer, route: Route) -> None:
    @app.page(path)
    async def shop_view(web: View, request: Request, **params: str) -> Response:
        elsewhere = await _elsewhere(app, route, web, request, params)
        if elsewhere is not None:
            return elsewhere
        return answer(web, lambda: handler(reader, request.query, **params))


def _shop_post(app: faust.App, reader: ReadView, path: str, handler: Answer, route: Route) -> None:
    async def shop_post(web: View, request: Request, **params: str) -> Response:
        elsewhere = await _elsewhere(app, route, web, request, params, with_body=True)
        if elsewhere is not None:
            return elsewhere
        body = await request.read()
        return answer(web, lambda: handler(reader, request.query, body, **params))

    # What View.from_handler does for a GET page: a view class whose ``post`` is the page.
    view = type(shop_post.__name__, (ApiView,), {"post": shop_post, "__module__": __name__})
    app.page(path)(view)


def _definitions_view(
    app: faust.App,
    reader: ReadView,
    writer: DefinitionWriter,
    path: str,
    methods: dict[str, Write],
    route: Route,
) -> None:
    def method(write: Write) -> Callable[..., Awaitable[Response]]:
        async def handle(web: View, request: Request, **params: str) -> Response:
            if params.get("segment_id") == definitions.PREVIEW:
                detail = "the preview route takes POST only"
                refusal = {"error": "method_not_allowed", "detail": detail}
                return web.json(refusal, status=405, headers={"Allow": "POST"})
            with_body = request.method.lower() in BODY_METHODS
            elsewhere = await _elsewhere(app, route, web, request, params, with_body)
            if elsewhere is not None:
                return elsewhere
            body = await request.read() if with_body else b""
            return await answer_write(web, lambda: write(reader, writer, body, **params))

        return handle

    handlers = {name: method(write) for name, write in methods.items()}
    view = type("definitions", (ApiView,), {**handlers, "__module__": __name__})
    app.page(path)(view)


def _webhooks_view(
    app: faust.App, store: webhooks.WebhookStore, path: str, methods: dict[str, Write], route: Route
) -> None:
    def method(write: Write) -> Callable[..., Awaitable[Response]]:
        async def handle(web: View, request: Request, **params: str) -> Response:
            with_body = request.method.lower() in BODY_METHODS
            elsewhere = await _elsewhere(app, route, web, request, params, with_body)
            if elsewhere is not None:
                return elsewhere
            body = await request.read() if with_body else b""
            return await answer_write(web, lambda: write(store, body, **params))

        return handle

    handlers = {name: method(write) for name, write in methods.items()}
    view = type("webhooks", (ApiView,), {**handlers, "__module__": __name__})
    app.page(path)(view)


BODY_METHODS = frozenset({"post", "put"})
"""The methods whose requests carry a body (a JSON document)."""


class ApiView(View):
    """A view class of the shop routes: it serves the methods it defines, and HEAD only
    beside GET (Faust adds HEAD to every view; without GET it could only fail)."""

    def get_methods(self) -> set[str]:
        """The HTTP methods registered for the view's route."""
        methods: set[str] = super().get_methods()
        return methods if "GET" in methods else methods - {"HEAD"}


async def _elsewhere(
    app: faust.App,
    route: Route,
    web: View,
    request: Request,
    params: dict[str, str],
    with_body: bool = False,
) -> Response | None:
    """The answer when this worker cannot answer for the shop itself: a refusal (no
    token, another shop's token, too many requests; then a path id that breaks its
    pattern, 400, or a body not sent as JSON, 415), the owner's (the request forwarded,
    with its body), or 503 when the partition has no owner or this worker is still
    restoring its tables; None when this worker owns the shop, is ready and the token may
    ask."""
    shop_id = params["shop_id"]
    refused = _refused(route, web, request, shop_id)
    if refused is not None:
        return refused
    try:
        edge.check_path(params)
    except edge.BadRequestError as error:
        return failure(web, error)
    if with_body and (unsupported := unsupported_body(web, request)) is not None:
        return unsupported
    owner = owner_url(app, route.topic, shop_partition(shop_id, route.partitions))
    if owner is None:
        detail = "the shop's partition has no owner right now (rebalancing); retry shortly"
        return web.json({"error": "unavailable", "detail": detail}, status=503)
    if URL(owner) != URL(route.own_url):
        body = await request.read() if with_body else None
        return await proxy(app, owner, web, request, body)
    if not serving(app):
        detail = "this worker is restoring the shop's tables; retry shortly"
        return web.json({"error": "unavailable", "detail": detail}, status=503)
    if route.incomplete(shop_partition(shop_id, route.partitions)):
        detail = "this worker's disk refused the shop's tables (full); retry later"
        return web.json({"error": "unavailable", "detail": detail}, status=503)
    return None
