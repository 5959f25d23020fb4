"""deploy/openapi.json is the query API's contract: valid OpenAPI 3.1, exactly the served
routes, and schemas that accept what the service really answers.

No OpenAPI validator is a dependency, so the structure is checked here: the keys OpenAPI
requires, every ``$ref`` resolving, every schema a valid JSON Schema 2020-12 (the document's
``jsonSchemaDialect``), path templates and path parameters agreeing, every example valid.
Real answers come from the views ``service.api.routes.register_views`` declares, registered on a
stand-in for the Faust app (it owns every partition, or none: the 503 of a rebalance) and
run over a pipeline fed a small simulation in-process. Bodies travel as strict JSON (no NaN).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from service.api import routes as api
from service.core.contracts import role_for
from service.core.pipeline import Pipeline
from service.segments import available_models
from service.segments.churn_risk import BANDS
from service.segments.lifecycle import STAGES
from service.segments.rfm import SEGMENTS
from service.settings import Settings
from service.stream.wiring import Wiring
from service.tools.simulation.generator import SimulationConfig, generate
from service.tools.simulation.shops import shops_per_kind
from tests.feed import feed

SPEC_PATH = Path(__file__).resolve().parents[3] / "deploy" / "openapi.json"
SPEC_URI = "urn:segstream:openapi"
"""Base URI the document is registered under, so its ``#/components/...`` refs resolve."""
OPERATIONS_ROUTES = {"/metrics", "/healthz", "/ready"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SERVED_METHODS = {"get"}
"""Faust turns a page function into a view whose ``get`` is the function."""
TEMPLATE_VARIABLE = re.compile(r"\{([^}]+)\}")
CUSTOMER = "/shops/{shop_id}/customers/{customer_id}"
SIZES = "/shops/{shop_id}/segments"
MEMBERS = "/shops/{shop_id}/segments/{model}/{segment}"
METRICS = "/shops/{shop_id}/metrics"
COHORTS = "/shops/{shop_id}/cohorts"
MODELS = "/shops/{shop_id}/models"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(SPEC_PATH.read_text()))


@pytest.fixture(scope="module")
def registry(spec: dict[str, Any]) -> Registry:
    registry: Registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
    return registry


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """``node``, or the object its reference (``$ref``) points at."""
    while isinstance(node, dict) and "$ref" in node:
        node = pointer_target(spec, node["$ref"])
    return node


def pointer_target(spec: dict[str, Any], ref: str) -> Any:
    """The node a local reference ``#/a/b~1c`` names (KeyError if there is none)."""
    assert ref.startswith("#/"), f"only local references are allowed, got {ref!r}"
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def escape(part: str) -> str:
    """One JSON-pointer segment."""
    return part.replace("~", "~0").replace("/", "~1")


def walk(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every node of the document with its JSON pointer."""
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{where}/{escape(key)}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{where}/{index}")


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) of every documented operation."""
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS & set(item):
            yield path, method, item[method]


def response_pointer(spec: dict[str, Any], path: str, method: str, status: str) -> str:
    """JSON pointer of a documented response (of the component when it is a reference)."""
    response = spec["paths"][path][method]["responses"][status]
    if "$ref" in response:
        return cast(str, response["$ref"])
    return f"#/paths/{escape(path)}/{method}/responses/{status}"


def media_types(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON pointer, media type object) of every documented response body."""
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            pointer = response_pointer(spec, path, method, status)
            for kind, media in resolve(spec, response).get("content", {}).items():
                yield f"{pointer}/content/{escape(kind)}", media


def validator(registry: Registry, pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` of the registered document."""
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def schema_errors(
    spec: dict[str, Any], registry: Registry, path: str, status: int, body: Any
) -> list[str]:
    """Why ``body`` does not match what the document promises for ``path`` and ``status``."""
    if str(status) not in spec["paths"][path]["get"]["responses"]:
        return [f"status {status} of {path} is not documented"]
    media = f"{response_pointer(spec, path, 'get', str(status))}/content/application~1json"
    checker = validator(registry, f"{media}/schema")
    return [
        f"{path} {status} at {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in checker.iter_errors(body)
    ]


# ---------------------------------------------------------------- (a) structure


def test_is_an_openapi_3_1_document_with_its_required_keys(spec: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"])
    assert spec["jsonSchemaDialect"] == "https://json-schema.org/draft/2020-12/schema"
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["paths"]
    for path in spec["paths"]:
        assert path.startswith("/"), path


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    refs = [
        (where, node["$ref"])
        for where, node in walk(spec)
        if isinstance(node, dict) and isinstance(node.get("$ref"), str)
    ]
    assert refs
    for where, ref in refs:
        try:
            pointer_target(spec, ref)
        except (KeyError, IndexError, ValueError) as error:
            raise AssertionError(f"{where}: {ref} does not resolve ({error!r})") from None


def test_every_schema_is_valid_json_schema_2020_12(spec: dict[str, Any]) -> None:
    schemas = list(spec["components"]["schemas"].values())
    schemas += [resolve(spec, p)["schema"] for p in spec["components"]["parameters"].values()]
    schemas += [media["schema"] for _, media in media_types(spec)]
    for _, _, operation in operations(spec):
        schemas += [resolve(spec, p)["schema"] for p in operation.get("parameters", [])]
    for schema in schemas:
        Draft202012Validator.check_schema(schema)


def test_operations_are_complete_and_unique(spec: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids)) == len(spec["paths"])
    for path, item in spec["paths"].items():
        assert set(item) & HTTP_METHODS == SERVED_METHODS, path
        operation = item["get"]
        assert operation["summary"] and operation["description"], path
        assert operation["responses"], path
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", status), (path, status)
            assert resolve(spec, response)["description"], (path, status)


def test_path_parameters_match_the_path_templates(spec: dict[str, Any]) -> None:
    for path, _, operation in operations(spec):
        parameters = [resolve(spec, p) for p in operation.get("parameters", [])]
        in_path = [p for p in parameters if p["in"] == "path"]
        assert all(p["in"] in ("path", "query") for p in parameters), path
        assert all(p["required"] is True for p in in_path), path
        assert sorted(p["name"] for p in in_path) == sorted(TEMPLATE_VARIABLE.findall(path))
        names = [(p["in"], p["name"]) for p in parameters]
        assert len(names) == len(set(names)), path


def test_every_example_matches_its_schema(spec: dict[str, Any], registry: Registry) -> None:
    checked = 0
    for pointer, media in media_types(spec):
        checker = validator(registry, f"{pointer}/schema")
        examples = [e["value"] for e in media.get("examples", {}).values()]
        examples += [media["example"]] if "example" in media else []
        for value in examples:
            assert not list(checker.iter_errors(value)), pointer
            checked += 1
    for name, parameter in spec["components"]["parameters"].items():
        checker = validator(registry, f"#/components/parameters/{name}/schema")
        assert not list(checker.iter_errors(parameter["example"])), name
    assert checked >= len(spec["paths"])


# ---------------------------------------------------------------- (b) routes and models


def test_documents_exactly_the_served_routes(spec: dict[str, Any]) -> None:
    assert set(spec["paths"]) == set(api.SHOP_VIEWS) | OPERATIONS_ROUTES


def test_shop_routes_document_unknown_shops_and_rebalances(spec: dict[str, Any]) -> None:
    for path in api.SHOP_VIEWS:
        assert {"200", "404", "503"} <= set(spec["paths"][path]["get"]["responses"]), path


def test_documents_exactly_the_segment_models_and_their_segments(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["ModelName"]["enum"] == list(available_models())
    segments = schemas["Segments"]["properties"]
    assert set(segments) == set(available_models())
    assert segments["rfm"]["enum"] == list(SEGMENTS)
    assert segments["lifecycle"]["enum"] == list(STAGES)
    assert segments["churn_risk"]["enum"] == list(BANDS)


# ---------------------------------------------------------------- (c) real answers


OWN_URL = "http://127.0.0.1:6066"
View = Callable[..., Coroutine[Any, Any, "Reply"]]
"""A registered page: ``(web, request, **path parameters)``."""
SETTINGS = Settings()


@dataclass(frozen=True, slots=True)
class Reply:
    """What a view answered: the body as a client parses it, status and content type."""

    body: Any
    status: int
    content_type: str = "application/json"


class RecordingView:
    """Stands in for Faust's view: keeps the body as it would travel (strict JSON)."""

    def json(self, value: Any, *, status: int = 200) -> Reply:
        return Reply(json.loads(json.dumps(value, allow_nan=False)), status)

    def bytes(self, value: bytes, *, content_type: str) -> Reply:
        return Reply(value.decode(), 200, content_type)


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """Stands in for a request: only the query string is read."""

    query: Mapping[str, str]


class StandInApp:
    """The Faust app as the views use it: pages get registered, partitions have an owner
    (this worker, or nobody mid-rebalance), tables are recovered or recovering."""

    def __init__(self, owns_partitions: bool = True, recovering: bool = False) -> None:
        self.conf = SimpleNamespace(canonical_url=OWN_URL)
        self.router = self
        self.pages: dict[str, View] = {}
        partitions = set(range(SETTINGS.topic_partitions))
        topics = {SETTINGS.topic("orders"): partitions}
        self.owners = {OWN_URL: topics} if owns_partitions else {}
        self.tables = SimpleNamespace(recovery=SimpleNamespace(completed=threading.Event()))
        if not recovering:
            self.tables.recovery.completed.set()
        self.rebalancing = False
        self.in_recovery = recovering

    def page(self, path: str) -> Callable[[Any], Any]:
        def register(view: View) -> View:
            self.pages[path] = view
            return view

        return register

    def external_topics_metadata(self) -> dict[str, dict[str, set[int]]]:
        return self.owners


@dataclass(frozen=True, slots=True)
class Worker:
    """The registered views of one worker over ``pipeline``, and a loop to run them on."""

    app: StandInApp
    runner: asyncio.Runner

    @classmethod
    def serving(cls, pipeline: Pipeline, runner: asyncio.Runner, **app: bool) -> Worker:
        stand_in = StandInApp(**app)
        api.register_views(cast(Wiring, SimpleNamespace(app=stand_in, pipeline=pipeline)), SETTINGS)
        return cls(stand_in, runner)

    def get(self, path: str, query: Mapping[str, str] | None = None, /, **params: str) -> Reply:
        """``GET path`` (a documented template) with its path parameters and query."""
        view = self.app.pages[path](RecordingView(), QueryRequest(query or {}), **params)
        return self.runner.run(view)


@dataclass(frozen=True, slots=True)
class Shop:
    """A simulated shop, its pipeline, and the worker that owns it."""

    pipeline: Pipeline
    shop_id: str
    worker: Worker

    def get(self, path: str, query: Mapping[str, str] | None = None, /, **params: str) -> Reply:
        """``GET path`` about this shop."""
        return self.worker.get(path, query, shop_id=self.shop_id, **params)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture(scope="module")
def shop(runner: asyncio.Runner) -> Shop:
    """Five months of a small coffee roaster: every model places customers, the churn model
    has settled labels, some customers cancelled."""
    simulation = generate(
        SimulationConfig(
            seed=3,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=25,
            start=date(2025, 8, 1),
            days=150,
        )
    )
    pipeline = Pipeline(SETTINGS, {}, {}, {}, {})
    feed(pipeline, [(role_for(event), event) for event in simulation.events])
    shop_id = simulation.events[0]["shop_id"]
    return Shop(pipeline, shop_id, Worker.serving(pipeline, runner))


def assert_documented(spec: dict[str, Any], registry: Registry, path: str, reply: Reply) -> None:
    assert not schema_errors(spec, registry, path, reply.status, reply.body)


def test_the_worker_registers_exactly_the_documented_routes(
    spec: dict[str, Any], shop: Shop
) -> None:
    assert set(shop.worker.app.pages) == set(spec["paths"])


def test_every_customer_matches_the_customer_schema(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    customers = [s.customer_id for s in shop.pipeline.shop_customers(shop.shop_id)]
    replies = [shop.get(CUSTOMER, customer_id=customer) for customer in customers]
    assert {reply.status for reply in replies} == {200}
    statuses = {reply.body["features"]["subscription"] for reply in replies}
    assert {"active", "cancelled"} <= statuses, "the simulation should cover both"
    for reply in replies:
        assert_documented(spec, registry, CUSTOMER, reply)


def test_segment_sizes_and_pages_of_every_segment_match_their_schemas(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    sizes = shop.get(SIZES)
    assert sizes.status == 200
    assert set(sizes.body["models"]) == set(available_models()), "every model should place"
    assert_documented(spec, registry, SIZES, sizes)
    for model, segments in sizes.body["models"].items():
        for segment, size in segments.items():
            for offset in ("0", str(size)):
                query = {"limit": "5", "offset": offset}
                page = shop.get(MEMBERS, query, model=model, segment=segment)
                assert page.status == 200 and page.body["total"] == size
                assert_documented(spec, registry, MEMBERS, page)


def test_window_metrics_of_every_grain_and_dimension_match_their_schema(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    dimensions = shop.pipeline.ledger.dimensions(shop.shop_id)
    assert any(d.startswith("segment:") for d in dimensions)
    assert any(d.startswith("cohort:") for d in dimensions)
    for grain in ("day", "week", "month", "30d"):
        for dimension in dimensions:
            for start in ({}, {"start": "2025-10-01"}):
                reply = shop.get(METRICS, {"grain": grain, "dimension": dimension, **start})
                assert reply.status == 200, reply.body
                assert_documented(spec, registry, METRICS, reply)


def test_cohort_tables_match_their_schema(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    for query in ({}, {"months": "1"}, {"months": "6"}):
        reply = shop.get(COHORTS, query)
        assert reply.status == 200, reply.body
        assert_documented(spec, registry, COHORTS, reply)


def test_model_quality_matches_its_schema(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    reply = shop.get(MODELS)
    assert reply.status == 200
    assert reply.body["models"]["churn_risk"]["quality"]["roc_auc"] is not None
    assert_documented(spec, registry, MODELS, reply)


def test_models_that_learned_nothing_yet_match_the_schema(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    """Quality figures are null (NaN inside) before any label or assignment."""
    pipeline = Pipeline(SETTINGS, {}, {}, {}, {})
    first = generate(SimulationConfig(days=30)).events[0]
    feed(pipeline, [(role_for(first), first)])
    reply = Worker.serving(pipeline, runner).get(MODELS, shop_id=first["shop_id"])
    assert reply.body["models"]["churn_risk"]["quality"]["roc_auc"] is None
    assert reply.body["models"]["cluster"]["quality"]["silhouette"] is None
    assert_documented(spec, registry, MODELS, reply)


ERROR_CASES: list[tuple[str, dict[str, str], dict[str, str], int, str]] = [
    (CUSTOMER, {}, {"customer_id": "nobody"}, 404, "nobody"),
    (MEMBERS, {}, {"model": "no-model", "segment": "x"}, 404, "no-model"),
    (MEMBERS, {"limit": "0"}, {"model": "rfm", "segment": "Champions"}, 400, "limit"),
    (MEMBERS, {"limit": "501"}, {"model": "rfm", "segment": "Champions"}, 400, "limit"),
    (MEMBERS, {"offset": "-1"}, {"model": "lifecycle", "segment": "new"}, 400, "offset"),
    (METRICS, {"grain": "fortnight"}, {}, 400, "grain"),
    (METRICS, {"start": "yesterday"}, {}, 400, "start"),
    (METRICS, {"start": "2030-01-01"}, {}, 400, "after"),
    (METRICS, {"start": "2020-01-01"}, {}, 400, "oldest"),
    (COHORTS, {"months": "many"}, {}, 400, "months"),
    (COHORTS, {"months": "0"}, {}, 400, "months"),
    (COHORTS, {"months": "36"}, {}, 400, "oldest"),
]


@pytest.mark.parametrize(("path", "query", "params", "status", "mentions"), ERROR_CASES)
def test_error_answers_match_the_documented_error_bodies(
    spec: dict[str, Any],
    registry: Registry,
    shop: Shop,
    path: str,
    query: dict[str, str],
    params: dict[str, str],
    status: int,
    mentions: str,
) -> None:
    reply = shop.get(path, query, **params)
    assert reply.status == status and mentions in reply.body["detail"], reply
    assert_documented(spec, registry, path, reply)


@pytest.mark.parametrize("path", sorted(api.SHOP_VIEWS))
def test_unknown_shops_get_the_documented_404(
    spec: dict[str, Any], registry: Registry, shop: Shop, path: str
) -> None:
    params = {name: "x" for name in TEMPLATE_VARIABLE.findall(path)}
    reply = shop.worker.get(path, **{**params, "shop_id": "no-such-shop"})
    assert reply.status == 404 and "no-such-shop" in reply.body["detail"], reply
    assert_documented(spec, registry, path, reply)


@pytest.mark.parametrize("path", sorted(api.SHOP_VIEWS))
def test_a_partition_without_owner_gets_the_documented_503(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, shop: Shop, path: str
) -> None:
    rebalancing = Worker.serving(shop.pipeline, runner, owns_partitions=False)
    params = {name: "x" for name in TEMPLATE_VARIABLE.findall(path)}
    reply = rebalancing.get(path, **{**params, "shop_id": shop.shop_id})
    assert reply.status == 503 and reply.body["error"] == "unavailable", reply
    assert_documented(spec, registry, path, reply)


def test_health_and_readiness_match_their_schemas(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, shop: Shop
) -> None:
    health = shop.worker.get("/healthz")
    ready = shop.worker.get("/ready")
    recovering = Worker.serving(shop.pipeline, runner, recovering=True).get("/ready")
    assert (health.status, ready.status, recovering.status) == (200, 200, 503)
    for path, reply in (("/healthz", health), ("/ready", ready), ("/ready", recovering)):
        assert_documented(spec, registry, path, reply)


def test_prometheus_metrics_have_the_documented_content_type(
    spec: dict[str, Any], shop: Shop
) -> None:
    reply = shop.worker.get("/metrics")
    documented = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert reply.status == 200 and "segstream_events_total" in reply.body
    assert set(documented) == {reply.content_type}
