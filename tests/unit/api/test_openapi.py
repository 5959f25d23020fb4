"""deploy/openapi.json is the query API's contract: valid OpenAPI 3.1, exactly the served
routes (GET views, and POST views that take a JSON body), and schemas that accept what the
service really answers.

No OpenAPI validator is a dependency, so the structure is checked here: the keys OpenAPI
requires, every ``$ref`` resolving, every schema a valid JSON Schema 2020-12 (the document's
``jsonSchemaDialect``), path templates and path parameters agreeing, every example valid.
Real answers come from the views ``service.api.routes.register_views`` declares, registered on a
stand-in for the Faust app (it owns every partition, or none: the 503 of a rebalance) and
run over a pipeline fed a small simulation in-process. Bodies travel as strict JSON (no NaN).
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from faust.web import View as FaustView
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from yarl import URL

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
SHOP_ROUTES = set(api.SHOP_VIEWS) | set(api.SHOP_POSTS)
"""Faust turns a page function into a view whose ``get`` is the function; a POST view is a
view class whose ``post`` is."""
TEMPLATE_VARIABLE = re.compile(r"\{([^}]+)\}")
CUSTOMER = "/shops/{shop_id}/customers/{customer_id}"
SIZES = "/shops/{shop_id}/segments"
MEMBERS = "/shops/{shop_id}/segments/{model}/{segment}"
METRICS = "/shops/{shop_id}/metrics"
COHORTS = "/shops/{shop_id}/cohorts"
MODELS = "/shops/{shop_id}/models"
PREVIEW = "/shops/{shop_id}/definitions/preview"
DEFINITIONS = Path(__file__).resolve().parents[3] / "schemas" / "examples" / "v1"
DEFINITION_SCHEMA = SPEC_PATH.parents[1] / "schemas" / "v1" / "segment_definition.json"


def method_of(path: str) -> str:
    """The one HTTP method a documented path is served with."""
    return "post" if path in api.SHOP_POSTS else "get"


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
    method = method_of(path)
    if str(status) not in spec["paths"][path][method]["responses"]:
        return [f"status {status} of {path} is not documented"]
    media = f"{response_pointer(spec, path, method, str(status))}/content/application~1json"
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
        assert set(item) & HTTP_METHODS == {method_of(path)}, path
        operation = item[method_of(path)]
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
    assert set(spec["paths"]) == SHOP_ROUTES | OPERATIONS_ROUTES
    assert not set(api.SHOP_VIEWS) & set(api.SHOP_POSTS)


def test_shop_routes_document_unknown_shops_and_rebalances(spec: dict[str, Any]) -> None:
    for path in SHOP_ROUTES:
        responses = spec["paths"][path][method_of(path)]["responses"]
        assert {"200", "404", "503"} <= set(responses), path


def test_request_bodies_are_documented_and_their_examples_valid(
    spec: dict[str, Any], registry: Registry
) -> None:
    for path in api.SHOP_POSTS:
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True and body["description"], path
        pointer = f"#/paths/{escape(path)}/post/requestBody/content/application~1json"
        checker = validator(registry, f"{pointer}/schema")
        examples = body["content"]["application/json"]["examples"].values()
        assert examples, path
        for example in examples:
            assert not list(checker.iter_errors(example["value"])), path


def test_the_definition_body_mirrors_the_top_level_of_its_contract(
    spec: dict[str, Any], registry: Registry
) -> None:
    """The OpenAPI schema repeats the contract's top level (it cannot reference a file
    outside the document): same keys, same required ones, and it accepts every valid
    example of the contract."""
    contract = json.loads(DEFINITION_SCHEMA.read_text())
    mirror = spec["components"]["schemas"]["SegmentDefinition"]
    assert set(mirror["properties"]) == set(contract["properties"])
    assert mirror["required"] == contract["required"]
    assert mirror["additionalProperties"] is contract["additionalProperties"] is False
    checker = validator(registry, "#/components/schemas/SegmentDefinition")
    examples = sorted((DEFINITIONS / "segment_definition" / "valid").glob("*.json"))
    assert examples
    for example in examples:
        assert not list(checker.iter_errors(json.loads(example.read_text()))), example.name


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

    def text(self, value: str, *, content_type: str, status: int) -> Reply:
        return Reply(value, status, content_type)


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """Stands in for a request: its query string and URL, and the body of a POST."""

    query: Mapping[str, str]
    body: bytes = b""
    url: URL = dataclasses.field(default_factory=lambda: URL(OWN_URL))
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    async def read(self) -> bytes:
        return self.body


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

    def post(
        self, path: str, body: bytes, query: Mapping[str, str] | None = None, /, **params: str
    ) -> Reply:
        """``POST path`` of ``body``: the ``post`` of the view class registered for it."""
        post = cast(Any, self.app.pages[path]).post
        view = post(RecordingView(), QueryRequest(query or {}, body), **params)
        return cast(Reply, self.runner.run(view))

    def call(self, path: str, **params: str) -> Reply:
        """``path`` with its own method: a POST carries a valid definition of the shop."""
        if path in api.SHOP_POSTS:
            return self.post(path, definition_body(params["shop_id"]), **params)
        return self.get(path, **params)


@dataclass(frozen=True, slots=True)
class Shop:
    """A simulated shop, its pipeline, and the worker that owns it."""

    pipeline: Pipeline
    shop_id: str
    worker: Worker

    def get(self, path: str, query: Mapping[str, str] | None = None, /, **params: str) -> Reply:
        """``GET path`` about this shop."""
        return self.worker.get(path, query, shop_id=self.shop_id, **params)

    def post(self, path: str, body: bytes, query: Mapping[str, str] | None = None) -> Reply:
        """``POST path`` about this shop."""
        return self.worker.post(path, body, query, shop_id=self.shop_id)


def definition_body(shop_id: str, **changes: Any) -> bytes:
    """The "valuable at risk" example definition for ``shop_id``, as a request body."""
    path = DEFINITIONS / "segment_definition" / "valid" / "high_spend_churn_risk.json"
    return json.dumps({**json.loads(path.read_text()), "shop_id": shop_id, **changes}).encode()


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


@pytest.mark.parametrize("path", sorted(SHOP_ROUTES))
def test_unknown_shops_get_the_documented_404(
    spec: dict[str, Any], registry: Registry, shop: Shop, path: str
) -> None:
    params = {name: "x" for name in TEMPLATE_VARIABLE.findall(path)}
    reply = shop.worker.call(path, **{**params, "shop_id": "no-such-shop"})
    assert reply.status == 404 and "no-such-shop" in reply.body["detail"], reply
    assert_documented(spec, registry, path, reply)


@pytest.mark.parametrize("path", sorted(SHOP_ROUTES))
def test_a_partition_without_owner_gets_the_documented_503(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, shop: Shop, path: str
) -> None:
    rebalancing = Worker.serving(shop.pipeline, runner, owns_partitions=False)
    params = {name: "x" for name in TEMPLATE_VARIABLE.findall(path)}
    reply = rebalancing.call(path, **{**params, "shop_id": shop.shop_id})
    assert reply.status == 503 and reply.body["error"] == "unavailable", reply
    assert_documented(spec, registry, path, reply)


def test_a_preview_matches_its_schema_and_a_recount(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    states = list(shop.pipeline.shop_customers(shop.shop_id))
    loyal = sorted(s.customer_id for s in states if s.segments.get("lifecycle") == "loyal")
    assert loyal, "the simulation should have loyal customers"
    rule = {"field": "segments.lifecycle", "op": "eq", "value": "loyal"}
    body = definition_body(shop.shop_id, rule=rule)
    for query, size in (
        ({}, 20),
        ({"limit": "0"}, 0),
        ({"limit": "1"}, 1),
        ({"limit": "100"}, 100),
    ):
        reply = shop.post(PREVIEW, body, query)
        assert reply.status == 200, reply
        assert reply.body["customers"] == len(states)
        assert reply.body["matching"] == len(loyal)
        assert reply.body["sample"] == loyal[:size]
        assert_documented(spec, registry, PREVIEW, reply)
    example = shop.post(PREVIEW, definition_body(shop.shop_id))
    assert example.status == 200 and example.body["segment_id"] == "valuable-at-risk"
    assert_documented(spec, registry, PREVIEW, example)


def test_every_invalid_example_definition_gets_the_documented_422(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    examples = sorted((DEFINITIONS / "segment_definition" / "invalid").glob("*.json"))
    assert examples
    for example in examples:
        payload = {**json.loads(example.read_text()), "shop_id": shop.shop_id}
        reply = shop.post(PREVIEW, json.dumps(payload).encode())
        assert reply.status == 422, (example.name, reply)
        assert reply.body["error"] == "invalid_definition"
        assert reply.body["detail"].startswith(f"{reply.body['path']}: "), reply
        assert "Traceback" not in reply.body["detail"]
        assert_documented(spec, registry, PREVIEW, reply)
    wrong = {
        "all": [{"field": "plan.interval", "op": "eq", "value": 1}, {"field": "x", "op": "exists"}]
    }
    reply = shop.post(PREVIEW, definition_body(shop.shop_id, rule=wrong))
    assert (reply.status, reply.body["path"]) == (422, "rule/all/0/value"), reply


PREVIEW_ERRORS: list[tuple[bytes | None, dict[str, str], str]] = [
    (b"", {}, "empty"),
    (b"segment: loyal", {}, "not JSON"),
    (b'{"schema_version": 1', {}, "not JSON"),
    (b"\xff\xfe\xfa", {}, "not JSON"),
    (b'{"schema_version": 1, "version": Infinity}', {}, "Infinity"),
    (None, {"limit": "101"}, "limit"),
    (None, {"limit": "-1"}, "limit"),
    (None, {"limit": "twenty"}, "limit"),
]


@pytest.mark.parametrize(("body", "query", "mentions"), PREVIEW_ERRORS)
def test_a_bad_preview_request_gets_the_documented_400(
    spec: dict[str, Any],
    registry: Registry,
    shop: Shop,
    body: bytes | None,
    query: dict[str, str],
    mentions: str,
) -> None:
    reply = shop.post(PREVIEW, definition_body(shop.shop_id) if body is None else body, query)
    assert reply.status == 400 and mentions in reply.body["detail"], reply
    assert_documented(spec, registry, PREVIEW, reply)


def test_a_definition_of_another_shop_gets_the_documented_400(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    reply = shop.post(PREVIEW, definition_body("tea-house-1"))
    assert reply.status == 400, reply
    assert "'tea-house-1'" in reply.body["detail"] and shop.shop_id in reply.body["detail"]
    assert_documented(spec, registry, PREVIEW, reply)


def test_faust_serves_a_post_view_with_post_only(shop: Shop) -> None:
    for path in api.SHOP_POSTS:
        page = shop.worker.app.pages[path]
        assert isinstance(page, type) and issubclass(page, FaustView), path
        assert page(cast(Any, None), cast(Any, None)).get_methods() == {"HEAD", "POST"}


OTHER_URL = "http://127.0.0.1:6067"


class ForwardingClient:
    """Stands in for ``app.http_client``: records what is forwarded, answers as an owner."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, URL, bytes | None, dict[str, str]]] = []

    def get(self, url: URL) -> OwnerAnswer:
        self.calls.append(("GET", url, None, {}))
        return OwnerAnswer()

    def post(self, url: URL, *, data: bytes, headers: Mapping[str, str]) -> OwnerAnswer:
        self.calls.append(("POST", url, data, dict(headers)))
        return OwnerAnswer()


class OwnerAnswer:
    """The owning worker's answer, as an ``async with`` response."""

    status = 200
    content_type = "application/json"

    async def __aenter__(self) -> OwnerAnswer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def text(self) -> str:
        return '{"from": "owner"}'


def test_a_post_is_forwarded_to_the_owner_with_its_body_and_query(
    runner: asyncio.Runner, shop: Shop
) -> None:
    worker = Worker.serving(shop.pipeline, runner)
    client = ForwardingClient()
    worker.app.owners = {OTHER_URL: worker.app.owners[OWN_URL]}
    worker.app.http_client = client  # type: ignore[attr-defined]
    body = definition_body(shop.shop_id)
    path = f"/shops/{shop.shop_id}/definitions/preview?limit=5"
    request = QueryRequest({"limit": "5"}, body, URL(OWN_URL + path), {"Content-Type": "x/y"})
    post = cast(Any, worker.app.pages[PREVIEW]).post
    reply = runner.run(post(RecordingView(), request, shop_id=shop.shop_id))
    assert reply == Reply('{"from": "owner"}', 200)
    assert client.calls == [("POST", URL(OTHER_URL + path), body, {"Content-Type": "x/y"})]
    segments = f"/shops/{shop.shop_id}/segments"
    request = QueryRequest({}, url=URL(OWN_URL + segments))
    reply = runner.run(worker.app.pages[SIZES](RecordingView(), request, shop_id=shop.shop_id))
    assert reply == Reply('{"from": "owner"}', 200)
    assert client.calls[-1] == ("GET", URL(OTHER_URL + segments), None, {})


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
