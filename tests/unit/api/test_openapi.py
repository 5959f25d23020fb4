"""deploy/openapi.json is the query API's contract: valid OpenAPI 3.1, exactly the served
routes and methods (GET views, POST views that take a JSON body, and the definition views
with a method each for listing, reading, creating, replacing and deleting), and schemas that
accept what the service really answers, per method and status.

No OpenAPI validator is a dependency, so the structure is checked here: the keys OpenAPI
requires, every ``$ref`` resolving, every schema a valid JSON Schema 2020-12 (the document's
``jsonSchemaDialect``), path templates and path parameters agreeing, every example valid.
Real answers come from the views ``segstream.api.routes.register_views`` declares, registered on a
stand-in for the Faust app (it owns every partition, or none: the 503 of a rebalance) and
run over a pipeline fed a small simulation in-process; the definitions topic is a stand-in
that applies each record to that pipeline as the owning worker would. Bodies travel as
strict JSON (no NaN).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import json
import re
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import patch

import pytest
from faust.web import View as FaustView
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from yarl import URL

from harness.stores import feed
from segstream.api import document, edge
from segstream.api import routes as api
from segstream.api import webhooks as webhook_views
from segstream.api.access import token_hash
from segstream.api.webhooks import WebhookStore
from segstream.domain.changes import Source
from segstream.domain.contracts import role_for
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.segments import available_models
from segstream.segments.churn_risk import BANDS
from segstream.segments.defined.templates import TEMPLATES
from segstream.segments.lifecycle import STAGES
from segstream.segments.rfm import SEGMENTS
from segstream.settings import DEFINITIONS_ROLE, Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.stalls import Stall
from segstream.stream.wiring import Wiring
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind
from segstream.webhooks.directory import WebhookDirectory
from segstream.webhooks.registry import record_key

SPEC_PATH = Path(__file__).resolve().parents[3] / "deploy" / "openapi.json"
SPEC_URI = "urn:segstream:openapi"
"""Base URI the document is registered under, so its ``#/components/...`` refs resolve."""
OPERATIONS_ROUTES = {"/metrics", "/healthz", "/ready", "/templates", "/openapi.json", "/shops"}
"""Routes of no shop (GET only): operations, and the built-in segment templates."""
CONSOLE_ROUTES = {"/console", "/console/{asset}"}
"""The console's page and files (GET only, no token: they hold no data)."""
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SERVED: list[tuple[str, str]] = sorted(
    [(path, "get") for path in (*api.SHOP_VIEWS, *api.SHOP_STREAMS)]
    + [(path, "post") for path in api.SHOP_POSTS]
    + [(path, method) for path, methods in api.DEFINITIONS.items() for method in methods]
    + [(path, method) for path, methods in api.WEBHOOKS.items() for method in methods]
)
"""(path, method) of every shop route. Faust turns a page function into a view whose ``get``
is the function; a POST view, or a definitions view, is a view class with a function per
method."""
SHOP_ROUTES = {path for path, _ in SERVED}
TEMPLATE_VARIABLE = re.compile(r"\{([^}]+)\}")
CUSTOMER = "/shops/{shop_id}/customers/{customer_id}"
SIZES = "/shops/{shop_id}/segments"
MEMBERS = "/shops/{shop_id}/segments/{model}/{segment}"
METRICS = "/shops/{shop_id}/metrics"
COHORTS = "/shops/{shop_id}/cohorts"
JOURNEY = "/shops/{shop_id}/journey"
MODELS = "/shops/{shop_id}/models"
PREVIEW = "/shops/{shop_id}/definitions/preview"
DEFINED = "/shops/{shop_id}/definitions"
DEFINED_ONE = "/shops/{shop_id}/definitions/{segment_id}"
EXPERIMENTS = "/shops/{shop_id}/experiments"
EXPERIMENT = "/shops/{shop_id}/experiments/{experiment_id}"
WEBHOOKS = "/shops/{shop_id}/webhooks"
WEBHOOK = "/shops/{shop_id}/webhooks/{webhook_id}"
SAMPLE_IDS = {"webhook_id": "wh_0000000000000000"}
"""Path ids that must have a form of their own ("x" elsewhere)."""
WITH_BODY = {"post", "put"}
UNKNOWN_SHOP_ANSWERS: dict[tuple[str, str], int] = {
    (DEFINED, "get"): 200,
    (DEFINED, "post"): 201,
    (EXPERIMENTS, "get"): 200,
    (EXPERIMENTS, "post"): 201,
    (WEBHOOKS, "get"): 200,
    (WEBHOOKS, "post"): 201,
}
"""Where an unknown shop is not a 404: a shop may define segments and start experiments
before its first event (the stream keeps them; they have no customers yet), so it lists
none and may create one."""
DEFINITIONS = Path(__file__).resolve().parents[3] / "schemas" / "examples" / "v1"
DEFINITION_SCHEMA = SPEC_PATH.parents[1] / "schemas" / "v1" / "segment_definition.json"


def sample_params(path: str) -> dict[str, str]:
    """A well-formed value of every path parameter of ``path``."""
    return {name: SAMPLE_IDS.get(name, "x") for name in TEMPLATE_VARIABLE.findall(path)}


def methods_of(path: str) -> set[str]:
    """The HTTP methods a documented path is served with (operations routes: GET)."""
    return {method for served, method in SERVED if served == path} or {"get"}


def load_spec() -> dict[str, Any]:
    """The OpenAPI document."""
    return cast(dict[str, Any], json.loads(SPEC_PATH.read_text()))


def spec_registry(spec: dict[str, Any]) -> Registry:
    """The document registered under SPEC_URI, so its ``#/components/...`` refs resolve."""
    registry: Registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
    return registry


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture(scope="module")
def registry(spec: dict[str, Any]) -> Registry:
    return spec_registry(spec)


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
    spec: dict[str, Any],
    registry: Registry,
    path: str,
    status: int,
    body: Any,
    method: str = "get",
) -> list[str]:
    """Why ``body`` does not match what the document promises for ``method path`` and
    ``status``."""
    if str(status) not in spec["paths"][path][method]["responses"]:
        return [f"status {status} of {method.upper()} {path} is not documented"]
    media = f"{response_pointer(spec, path, method, str(status))}/content/application~1json"
    checker = validator(registry, f"{media}/schema")
    return [
        f"{method.upper()} {path} {status} at {'/'.join(map(str, e.absolute_path))}: {e.message}"
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
    assert len(ids) == len(set(ids)) == len(SERVED) + len(OPERATIONS_ROUTES | CONSOLE_ROUTES)
    for path, item in spec["paths"].items():
        assert set(item) & HTTP_METHODS == methods_of(path), path
    for path, method, operation in operations(spec):
        assert operation["summary"] and operation["description"], (path, method)
        assert operation["responses"], (path, method)
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", status), (path, method, status)
            assert resolve(spec, response)["description"], (path, method, status)


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


def test_documents_exactly_the_served_routes_and_methods(spec: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in operations(spec)}
    assert documented == set(SERVED) | {
        (path, "get") for path in OPERATIONS_ROUTES | CONSOLE_ROUTES
    }
    registries = [
        set(api.SHOP_VIEWS),
        set(api.SHOP_POSTS),
        set(api.DEFINITIONS),
        set(api.WEBHOOKS),
    ]
    assert len(set().union(*registries)) == sum(map(len, registries)), "a path served twice"


@pytest.mark.parametrize(("path", "method"), SERVED)
def test_shop_routes_document_unknown_shops_and_rebalances(
    spec: dict[str, Any], path: str, method: str
) -> None:
    responses = spec["paths"][path][method]["responses"]
    unknown_shop = str(UNKNOWN_SHOP_ANSWERS.get((path, method), 404))
    assert {unknown_shop, "503"} <= set(responses)
    assert any(status.startswith("2") for status in responses)


DEFINITION_WRITES = [
    (p, m) for p, methods in api.DEFINITIONS.items() for m in methods if m != "get"
]


@pytest.mark.parametrize(("path", "method"), DEFINITION_WRITES)
def test_definition_writes_document_how_they_end(
    spec: dict[str, Any], path: str, method: str
) -> None:
    """A write answers when applied, or 202 when that takes longer; a create or replace may
    lose to a concurrent one (409), and its body may be malformed (400, 413) or break the
    contract (422)."""
    responses = set(spec["paths"][path][method]["responses"])
    assert "202" in responses
    if method in WITH_BODY:
        assert {"400", "409", "413", "422"} <= responses


@pytest.mark.parametrize(("path", "method"), SERVED)
def test_request_bodies_are_documented_and_their_examples_valid(
    spec: dict[str, Any], registry: Registry, path: str, method: str
) -> None:
    operation = spec["paths"][path][method]
    if method not in WITH_BODY:
        assert "requestBody" not in operation
        return
    body = operation["requestBody"]
    assert body["required"] is True and body["description"]
    pointer = f"#/paths/{escape(path)}/{method}/requestBody/content/application~1json"
    checker = validator(registry, f"{pointer}/schema")
    examples = body["content"]["application/json"]["examples"].values()
    assert examples
    for example in examples:
        assert not list(checker.iter_errors(example["value"])), example["summary"]


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


FILLED_IN = {"schema_version", "shop_id", "version", "segment_id"}
"""What a written definition may leave out: the server assigns the version, the path names
the shop (and, for a replace, the segment), the contract version is 1."""


def test_a_written_definition_may_leave_out_only_what_the_server_fills_in(
    spec: dict[str, Any], registry: Registry
) -> None:
    contract = json.loads(DEFINITION_SCHEMA.read_text())
    written = spec["components"]["schemas"]["SegmentDefinitionInput"]
    assert set(written["properties"]) == set(contract["properties"])
    assert set(contract["required"]) - set(written["required"]) == FILLED_IN
    assert set(written["required"]) < set(contract["required"])
    assert written["additionalProperties"] is False
    checker = validator(registry, "#/components/schemas/SegmentDefinitionInput")
    examples = sorted((DEFINITIONS / "segment_definition" / "valid").glob("*.json"))
    for example in examples:
        complete = json.loads(example.read_text())
        bare = {k: v for k, v in complete.items() if k not in FILLED_IN}
        for body in (complete, bare):
            assert not list(checker.iter_errors(body)), example.name
    assert list(checker.iter_errors({**bare, "owner": "someone"}))


def test_documents_exactly_the_segment_models_and_their_segments(spec: dict[str, Any]) -> None:
    """Each model's segments as the registry states them (``segment_names``), which the
    models' own lists agree with."""
    schemas = spec["components"]["schemas"]
    assert schemas["ModelName"]["enum"] == list(available_models())
    segments = schemas["Segments"]["properties"]
    assert set(segments) == set(available_models())
    for name, model in available_models().items():
        documented = {k: v for k, v in segments[name].items() if k in ("enum", "pattern")}
        assert documented == model.segment_names, name
    assert segments["rfm"]["enum"] == list(SEGMENTS)
    assert segments["lifecycle"]["enum"] == list(STAGES)
    assert segments["churn_risk"]["enum"] == list(BANDS)


def test_the_parts_the_code_owns_are_generated_from_it(spec: dict[str, Any]) -> None:
    """The definition contract's rule grammar, the field catalogue, the templates and the
    models' names, summaries and segments (``python -m segstream.api.document`` rewrites
    them)."""
    assert spec == document.rewritten(spec)


ID_SAMPLES = [
    "coffee-roaster-1",
    "tea.house_7",
    "__main__",
    "_x",
    "-x",
    "Big",
    "big",
    "a" * 64,
    "a" * 65,
    "a" * 129,
    "c-0001",
    "cust 42/ü",
    "c\n",
    "c\x00",
    "c\u200b",
    "x\u2028",
    "lifecycle",
    "no-model",
    "no_model",
    "defined:green",
    "defined:",
    "defined:Big",
    "Can't Lose Them",
    "c12",
    "",
]
PATH_PARAMETER_SCHEMAS = {
    "shop_id": "ShopId",
    "customer_id": "CustomerId",
    "segment_id": "SegmentId",
    "experiment_id": "ExperimentId",
    "webhook_id": "WebhookId",
    "model": "Model",
    "segment": "Segment",
}


def ecma_pattern(
    checker: Any, pattern: str, instance: object, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """``pattern`` as ECMA-262 (what clients and schemathesis read) means a final ``$``:
    the end of the input, not also before a trailing newline as Python's ``$``."""
    whole = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if isinstance(instance, str) and not re.search(whole, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator: Any = validators.extend(Draft202012Validator, {"pattern": ecma_pattern})


@pytest.mark.parametrize(("name", "parameter"), sorted(PATH_PARAMETER_SCHEMAS.items()))
def test_the_path_ids_the_code_accepts_are_the_documented_ones(
    registry: Registry, name: str, parameter: str
) -> None:
    """Every path id the service checks at the edge (service/segstream/api/edge.py) against its
    documented schema, on valid and tricky samples: both accept the same ones."""
    pointer = f"{SPEC_URI}#/components/parameters/{parameter}/schema"
    checker = EcmaValidator({"$ref": pointer}, registry=registry)
    for sample in ID_SAMPLES:
        documented = checker.is_valid(sample)
        try:
            edge.check_path({name: sample})
            accepted = True
        except edge.BadRequestError:
            accepted = False
        if name == "model" and documented != accepted:  # the document lists the models
            assert accepted and not documented and "-" not in sample, sample
            continue
        assert accepted == documented, (name, sample)


# ---------------------------------------------------------------- (c) real answers


OWN_URL = "http://127.0.0.1:6066"
View = Callable[..., Coroutine[Any, Any, "Reply"]]
"""A registered page: ``(web, request, **path parameters)``."""
PLATFORM_TOKEN = "platform-token"
SHOP_TOKEN = "coffee-token"
"""A token of the coffee roaster (the simulated shop the views are asked about)."""
FOREIGN_TOKEN = "tea-token"
"""A token of another shop."""
SETTINGS = Settings(
    api_tokens={
        token_hash(PLATFORM_TOKEN): "platform",
        token_hash(SHOP_TOKEN): "shop:coffee-roaster-1",
        token_hash(FOREIGN_TOKEN): "shop:tea-house-1",
    },
    api_rate_per_s=1e6,  # these tests ask a lot at once; the rate test lowers it
    api_burst=1_000_000,
    churn_horizon_days=30.0,  # five months settle churn labels of both outcomes
)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a view answered: the body as a client parses it, status and content type."""

    body: Any
    status: int
    content_type: str = "application/json"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


class RecordingView:
    """Stands in for Faust's view: keeps the body as it would travel (strict JSON)."""

    def json(
        self, value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Reply:
        body = json.loads(json.dumps(value, allow_nan=False))
        return Reply(body, status, headers=dict(headers or {}))

    def bytes(
        self,
        value: bytes,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        kind = content_type or dict(headers or {}).get("Content-Type", "")
        return Reply(value.decode(), 200, kind, dict(headers or {}))

    def text(self, value: str, *, content_type: str, status: int) -> Reply:
        return Reply(value, status, content_type)


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """Stands in for a request: its query string, URL and method, and the body of a POST or
    PUT."""

    query: Mapping[str, str]
    body: bytes = b""
    url: URL = dataclasses.field(default_factory=lambda: URL(OWN_URL))
    headers: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"Authorization": f"Bearer {PLATFORM_TOKEN}"}
    )
    method: str = "GET"

    async def read(self) -> bytes:
        return self.body


class StandInApp:
    """The Faust app as the views use it: pages get registered, partitions have an owner
    (this worker, or nobody mid-rebalance), tables are recovered or recovering."""

    def __init__(self, owns_partitions: bool = True, recovering: bool = False) -> None:
        self.conf = SimpleNamespace(canonical_url=OWN_URL)
        self.router = self
        self.pages: dict[str, View] = {}
        self.http_client: ForwardingClient | None = None  # forwarding: set by a test
        partitions = set(range(SETTINGS.topic_partitions))
        topics = {SETTINGS.topic("orders"): partitions}
        self.owners = {OWN_URL: topics} if owns_partitions else {}
        self.tables = SimpleNamespace(recovery=SimpleNamespace(completed=threading.Event()))
        if not recovering:
            self.tables.recovery.completed.set()
        self.rebalancing = False
        self.in_recovery = recovering
        self.on_before_shutdown = SimpleNamespace(connect=lambda receiver: None)
        self.web = SimpleNamespace(web_app=SimpleNamespace(middlewares=[]))

    def page(self, path: str) -> Callable[[Any], Any]:
        def register(view: View) -> View:
            self.pages[path] = view
            return view

        return register

    def external_topics_metadata(self) -> dict[str, dict[str, set[int]]]:
        return self.owners


@dataclass
class DefinitionsTopic:
    """The segment-definitions topic and the worker that owns the shop, as the definition
    views see them (``send``, the writer's): while ``applying``, every record sent is
    consumed at once as the worker does, applied to ``pipeline`` and committed (flushed),
    so the views' polling of the tables finds it; otherwise it only waits in ``records``."""

    pipeline: Pipeline
    applying: bool = True
    records: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    async def send(self, shop_id: str, segment_id: str, value: bytes | None) -> None:
        """What ``DefinitionWriter.send`` does: one record, keyed ``<shop>|<segment>``."""
        self.records.append((shop_id, segment_id, value))
        if self.applying:
            self.apply(shop_id, segment_id, value)

    def apply(self, shop_id: str, segment_id: str, value: bytes | None) -> Outcome:
        """The owning worker consuming one record: define, then commit the batch."""
        partition = shop_partition(shop_id, SETTINGS.topic_partitions)
        source = Source(SETTINGS.topic(DEFINITIONS_ROLE), partition, len(self.outcomes))
        outcome = self.pipeline.define(f"{shop_id}|{segment_id}".encode(), value, source)
        self.pipeline.flush()
        self.outcomes.append(outcome)
        return outcome


STAND_INS: list[StandInWebhooks] = []
"""Every webhook stand-in made, the last one the newest worker's."""


class StandInWebhooks(WebhookStore):
    """The webhooks topic as the webhook views see it: a record sent is read back at once
    (kept in ``records`` too)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.records: list[tuple[str, str, bytes | None]] = []
        STAND_INS.append(self)

    async def read(self) -> WebhookDirectory:
        return self.directory

    async def close(self) -> None:
        return None

    async def send(self, shop_id: str, webhook_id: str, value: bytes | None) -> None:
        self.records.append((shop_id, webhook_id, value))
        self.directory.apply(record_key(shop_id, webhook_id), value)


@dataclass(frozen=True, slots=True)
class Worker:
    """The registered views of one worker over ``pipeline``, the definitions topic its
    writer sends to, and a loop to run the views on."""

    app: StandInApp
    runner: asyncio.Runner
    topic: DefinitionsTopic

    @classmethod
    def serving(
        cls,
        pipeline: Pipeline,
        runner: asyncio.Runner,
        topic: DefinitionsTopic | None = None,
        settings: Settings = SETTINGS,
        stalls: dict[int, Stall] | None = None,
        fenced: set[int] | None = None,
        incomplete: set[int] | None = None,
        **app: bool,
    ) -> Worker:
        stand_in = StandInApp(**app)
        topic = DefinitionsTopic(pipeline) if topic is None else topic
        runner_ = SimpleNamespace(
            stalls=stalls or {},
            checkpoint=SimpleNamespace(fenced=fenced or set()),
            commits=SimpleNamespace(incomplete=lambda partition: partition in (incomplete or ())),
        )
        wiring = cast(Wiring, SimpleNamespace(app=stand_in, pipeline=pipeline, runner=runner_))
        with (
            patch.object(api, "DefinitionWriter", lambda settings: topic),
            patch.object(webhook_views, "WebhookStore", StandInWebhooks),
        ):
            api.register_views(wiring, settings)
        return cls(stand_in, runner, topic)

    def handler(self, path: str, method: str) -> View:
        """What serves ``method path``: the page function of a GET view, or the method of
        the view class registered for the path."""
        page = self.app.pages[path]
        if isinstance(page, type):
            return cast(View, getattr(page, method))
        assert method == "get", (path, method)
        return page

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        query: Mapping[str, str] | None = None,
        /,
        token: str | None = PLATFORM_TOKEN,
        **params: str,
    ) -> Reply:
        """``method path`` (a documented template) with its path parameters, query, body
        and token (None: none)."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if method in WITH_BODY:
            headers["Content-Type"] = "application/json"
        request = QueryRequest(query or {}, body, method=method.upper(), headers=headers)
        return self.runner.run(self.handler(path, method)(RecordingView(), request, **params))

    def get(
        self,
        path: str,
        query: Mapping[str, str] | None = None,
        /,
        token: str | None = PLATFORM_TOKEN,
        **params: str,
    ) -> Reply:
        """``GET path`` with its path parameters, query and token (None: none)."""
        return self.request("get", path, b"", query, token=token, **params)

    def post(
        self, path: str, body: bytes, query: Mapping[str, str] | None = None, /, **params: str
    ) -> Reply:
        """``POST path`` of ``body``."""
        return self.request("post", path, body, query, **params)

    def call(
        self, path: str, method: str, token: str | None = PLATFORM_TOKEN, **params: str
    ) -> Reply:
        """``method path`` with the body it takes (see :func:`request_body`)."""
        body = request_body(path, method, params)
        return self.request(method, path, body, None, token=token, **params)


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


def written_body(**changes: Any) -> bytes:
    """The "valuable at risk" example as a client writes it (a create or replace): without
    what the server fills in (version, shop_id, schema_version)."""
    path = DEFINITIONS / "segment_definition" / "valid" / "high_spend_churn_risk.json"
    example = json.loads(path.read_text())
    bare = {k: v for k, v in example.items() if k not in {"version", "shop_id", "schema_version"}}
    return json.dumps({**bare, **changes}).encode()


def experiment_body(experiment_id: str) -> bytes:
    """An experiment on the at-risk stage as a client writes it (no version)."""
    return json.dumps(
        {
            "experiment_id": experiment_id,
            "name": "10 % off for at-risk subscribers",
            "model": "lifecycle",
            "segment": "at_risk",
            "arms": [{"name": "holdout", "share": 0.2}, {"name": "treatment", "share": 0.8}],
            "starts_at": "2025-01-01T00:00:00Z",
        }
    ).encode()


def request_body(path: str, method: str, params: Mapping[str, str]) -> bytes:
    """A valid body for ``method path``: a preview's definition of the shop, a create's or
    replace's definition (of the path's segment), or none."""
    if method not in WITH_BODY:
        return b""
    if path == PREVIEW:
        return definition_body(params["shop_id"])
    if path in (EXPERIMENTS, EXPERIMENT):
        return experiment_body(params.get("experiment_id", "winback-10"))
    if path in (WEBHOOKS, WEBHOOK):
        return json.dumps({"url": "https://hooks.example.com/segstream"}).encode()
    return written_body(**({"segment_id": params["segment_id"]} if "segment_id" in params else {}))


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture(scope="module")
def shop(runner: asyncio.Runner) -> Shop:
    """Five months of a small coffee roaster: every model places customers, the churn model
    has settled labels, some customers cancelled."""
    pipeline, shop_id = coffee_roaster()
    return Shop(pipeline, shop_id, Worker.serving(pipeline, runner))


@functools.cache
def coffee_roaster_events() -> tuple[dict[str, Any], ...]:
    """Five months of a small coffee roaster (the document's examples come from it)."""
    simulation = generate(
        SimulationConfig(
            seed=3,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=25,
            start=date(2025, 8, 1),
            days=150,
        )
    )
    return tuple(simulation.events)


@functools.cache
def coffee_roaster_tables() -> tuple[dict[str, Any], ...]:
    """The tables (customers, shops, models, metrics) of a pipeline fed the coffee roaster's
    events, fed once: feeding takes seconds, a copy milliseconds."""
    tables: tuple[dict[str, Any], ...] = ({}, {}, {}, {})
    pipeline = Pipeline(SETTINGS, *tables)
    feed(pipeline, [(role_for(event), event) for event in coffee_roaster_events()])
    return tables


def coffee_roaster() -> tuple[Pipeline, str]:
    """A new pipeline over a copy of the fed coffee roaster's tables (a worker starting from
    its changelogs), and the shop's id."""
    tables = copy.deepcopy(coffee_roaster_tables())
    return Pipeline(SETTINGS, *tables), coffee_roaster_events()[0]["shop_id"]


def assert_documented(
    spec: dict[str, Any], registry: Registry, path: str, reply: Reply, method: str = "get"
) -> None:
    assert not schema_errors(spec, registry, path, reply.status, reply.body, method)


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
        assert reply.body["months"] == len(reply.body["cohorts"]) == int(query.get("months", 12))
        assert_documented(spec, registry, COHORTS, reply)


def test_a_cohort_table_longer_than_the_kept_history_shows_the_months_kept(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    """Every documented value of months is accepted: a table reaching back before the kept
    history (400 days) shows as many months as are kept, the newest last, and says so."""
    kept = shop.get(COHORTS, {"months": "36"})
    assert kept.status == 200, kept
    assert 13 <= kept.body["months"] == len(kept.body["cohorts"]) <= 14
    assert shop.get(COHORTS, {"months": "35"}).body == kept.body
    assert_documented(spec, registry, COHORTS, kept)
    assert kept.body["cohorts"][-1] == shop.get(COHORTS, {"months": "1"}).body["cohorts"][0]


def test_journey_funnels_match_their_schema_and_count_every_visitor(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    """The coffee roaster's five months with touchpoints and prospects: every cohort month
    and channel answers by the contract, and the funnel counts every visitor once."""
    simulation = generate(
        SimulationConfig(
            seed=3,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=25,
            start=date(2025, 8, 1),
            days=150,
            touchpoints=True,
        )
    )
    pipeline = Pipeline(SETTINGS, {}, {}, {}, {})
    feed(pipeline, [(role_for(event), event) for event in simulation.events])
    shop_id = simulation.events[0]["shop_id"]
    worker = Worker.serving(pipeline, runner)
    for query in (
        {},
        {"months": "1"},
        {"months": "36"},
        {"channel": "social"},
        {"channel": "unknown"},
    ):
        reply = worker.get(JOURNEY, query, shop_id=shop_id)
        assert reply.status == 200, reply.body
        assert_documented(spec, registry, JOURNEY, reply)
    everyone = worker.get(JOURNEY, {"months": "36"}, shop_id=shop_id).body
    visitors = {event["customer_id"] for event in simulation.events}
    assert everyone["funnel"]["stages"][0]["customers"] == len(visitors) == 25 + 12
    by_channel = sum(row["funnel"]["stages"][0]["customers"] for row in everyone["channels"])
    by_month = sum(row["funnel"]["stages"][0]["customers"] for row in everyone["cohorts"])
    assert by_channel == by_month == len(visitors)
    customer = worker.get(CUSTOMER, shop_id=shop_id, customer_id="c-0001").body
    assert customer["journey"]["stage"] in ("purchase", "retention")


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
    (MEMBERS, {}, {"model": "no_model", "segment": "x"}, 404, "no_model"),
    (MEMBERS, {}, {"model": "no-model", "segment": "x"}, 400, "no-model"),
    (MEMBERS, {}, {"model": "lifecycle", "segment": "nosuch"}, 404, "nosuch"),
    (MEMBERS, {}, {"model": "lifecycle", "segment": "at-risk"}, 404, "at_risk"),
    (MEMBERS, {}, {"model": "defined:nope", "segment": "nope"}, 404, "defined:nope"),
    (MEMBERS, {"limit": "5_0"}, {"model": "rfm", "segment": "Champions"}, 400, "limit"),
    (MEMBERS, {"limit": " 5"}, {"model": "rfm", "segment": "Champions"}, 400, "limit"),
    (CUSTOMER, {}, {"customer_id": "c\n1"}, 400, "customer_id"),
    (CUSTOMER, {}, {"shop_id": "__main__", "customer_id": "c-0001"}, 400, "__main__"),
    (SIZES, {}, {"shop_id": "x" * 65}, 400, "shop_id"),
    (MEMBERS, {"limit": "0"}, {"model": "rfm", "segment": "Champions"}, 400, "limit"),
    (MEMBERS, {"limit": "501"}, {"model": "rfm", "segment": "Champions"}, 400, "limit"),
    (MEMBERS, {"offset": "-1"}, {"model": "lifecycle", "segment": "new"}, 400, "offset"),
    (METRICS, {"grain": "fortnight"}, {}, 400, "grain"),
    (METRICS, {"start": "yesterday"}, {}, 400, "start"),
    (METRICS, {"start": "2030-01-01"}, {}, 404, "after"),
    (METRICS, {"start": "2020-01-01"}, {}, 404, "oldest"),
    (METRICS, {"start": "0066-02-04"}, {}, 404, "oldest"),
    (METRICS, {"start": "0000-01-01"}, {}, 404, "oldest"),
    (METRICS, {"start": "9999-12-31", "grain": "30d"}, {}, 404, "no such window kept"),
    (METRICS, {"start": "20251001"}, {}, 400, "start"),
    (METRICS, {"start": "2025-02-30"}, {}, 400, "start"),
    (METRICS, {"dimension": "segment"}, {}, 400, "dimension"),
    (COHORTS, {"months": "many"}, {}, 400, "months"),
    (COHORTS, {"months": "0"}, {}, 400, "months"),
    (COHORTS, {"months": "37"}, {}, 400, "months"),
    (JOURNEY, {"months": "0"}, {}, 400, "months"),
    (JOURNEY, {"channel": "tv"}, {}, 400, "channel"),
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
    reply = shop.worker.get(path, query, **{"shop_id": shop.shop_id, **params})
    assert reply.status == status and mentions in reply.body["detail"], reply
    assert_documented(spec, registry, path, reply)


@pytest.mark.parametrize(("path", "method"), SERVED)
def test_unknown_shops_get_the_documented_404(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, path: str, method: str
) -> None:
    """Every route and method, on a worker that saw no shop (a create would change it);
    listing and creating definitions are the exceptions UNKNOWN_SHOP_ANSWERS names."""
    worker = Worker.serving(Pipeline(SETTINGS, {}, {}, {}, {}), runner)
    params = sample_params(path)
    reply = worker.call(path, method, **{**params, "shop_id": "no-such-shop"})
    assert reply.status == UNKNOWN_SHOP_ANSWERS.get((path, method), 404), reply
    assert "no-such-shop" in json.dumps(reply.body), reply
    assert_documented(spec, registry, path, reply, method)


@pytest.mark.parametrize("why", ["no owner", "store incomplete"])
@pytest.mark.parametrize(("path", "method"), SERVED)
def test_a_shop_that_cannot_be_answered_gets_the_documented_503(
    spec: dict[str, Any],
    registry: Registry,
    runner: asyncio.Runner,
    shop: Shop,
    path: str,
    method: str,
    why: str,
) -> None:
    # no owner: a rebalance; store incomplete: this worker's disk refused its recovery
    partition = shop_partition(shop.shop_id, SETTINGS.topic_partitions)
    worker = (
        Worker.serving(shop.pipeline, runner, owns_partitions=False)
        if why == "no owner"
        else Worker.serving(shop.pipeline, runner, incomplete={partition})
    )
    params = sample_params(path)
    reply = worker.call(path, method, **{**params, "shop_id": shop.shop_id})
    assert reply.status == 503 and reply.body["error"] == "unavailable", reply
    assert ("disk refused" in reply.body["detail"]) == (why == "store incomplete"), reply
    assert worker.topic.records == [], "nothing is written for a shop not answered"
    assert_documented(spec, registry, path, reply, method)


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
        assert_documented(spec, registry, PREVIEW, reply, "post")
    example = shop.post(PREVIEW, definition_body(shop.shop_id))
    assert example.status == 200 and example.body["segment_id"] == "valuable-at-risk"
    assert_documented(spec, registry, PREVIEW, example, "post")


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
        assert_documented(spec, registry, PREVIEW, reply, "post")
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
    assert_documented(spec, registry, PREVIEW, reply, "post")


def test_a_definition_of_another_shop_gets_the_documented_400(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    reply = shop.post(PREVIEW, definition_body("tea-house-1"))
    assert reply.status == 400, reply
    assert "'tea-house-1'" in reply.body["detail"] and shop.shop_id in reply.body["detail"]
    assert_documented(spec, registry, PREVIEW, reply, "post")


@pytest.mark.parametrize("path", sorted(SHOP_ROUTES))
def test_faust_serves_each_route_with_exactly_its_methods(shop: Shop, path: str) -> None:
    """A page function becomes a GET view; a view class answers the methods it defines,
    and HEAD beside GET (Faust adds HEAD to every view; a route without GET drops it);
    any other is the web server's 405."""
    page = shop.worker.app.pages[path]
    view = page if isinstance(page, type) else FaustView.from_handler(cast(Any, page))
    assert issubclass(view, FaustView)
    served = {method.upper() for method in methods_of(path)}
    head = {"HEAD"} if "GET" in served else set()
    assert view(cast(Any, None), cast(Any, None)).get_methods() == head | served


OTHER_URL = "http://127.0.0.1:6067"


class ForwardingClient:
    """Stands in for ``app.http_client``: records what is forwarded, answers as an owner."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, URL, bytes | None, dict[str, str]]] = []

    def request(
        self,
        method: str,
        url: URL,
        *,
        data: bytes | None,
        headers: Mapping[str, str],
        timeout: object = None,
    ) -> OwnerAnswer:
        self.calls.append((method, url, data, dict(headers)))
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


@pytest.mark.parametrize(("path", "method"), SERVED)
def test_every_route_is_forwarded_to_the_owner_with_its_method_body_and_query(
    runner: asyncio.Runner, shop: Shop, path: str, method: str
) -> None:
    worker = Worker.serving(shop.pipeline, runner)
    client = ForwardingClient()
    worker.app.owners = {OTHER_URL: worker.app.owners[OWN_URL]}
    worker.app.http_client = client
    params = sample_params(path) | {"shop_id": shop.shop_id}
    target = path.format(**params) + "?limit=5"
    body = request_body(path, method, params)
    bearer = {"Authorization": f"Bearer {SHOP_TOKEN}"}
    request = QueryRequest(
        {"limit": "5"},
        body,
        URL(OWN_URL + target),
        {"Content-Type": "application/json; charset=utf-8", **bearer},
        method.upper(),
    )
    reply = runner.run(worker.handler(path, method)(RecordingView(), request, **params))
    assert reply == Reply('{"from": "owner"}', 200)
    [(forwarded, url, data, headers)] = client.calls
    assert (forwarded, url) == (method.upper(), URL(OTHER_URL + target))
    if method in WITH_BODY:
        assert (data, headers) == (
            body,
            {"Content-Type": "application/json; charset=utf-8", **bearer},
        )
    else:
        assert not data and headers["Authorization"] == bearer["Authorization"]
    assert worker.topic.records == [], "only the owner writes"


@pytest.mark.parametrize(("path", "method"), SERVED)
def test_another_shops_token_gets_403_and_no_token_401_on_every_shop_route(
    spec: dict[str, Any], registry: Registry, shop: Shop, path: str, method: str
) -> None:
    """Every documented shop route and method, asked about the coffee roaster: with the tea
    shop's token 403, with none 401, and neither answer carries anything of the shop."""
    params = sample_params(path) | {"shop_id": shop.shop_id}
    for token, status, code in ((FOREIGN_TOKEN, 403, "forbidden"), (None, 401, "unauthorized")):
        reply = shop.worker.call(path, method, token=token, **params)
        assert reply.status == status and set(reply.body) == {"error", "detail"}, reply
        assert reply.body["error"] == code and shop.shop_id not in reply.body["detail"]
        assert_documented(spec, registry, path, reply, method)
    assert shop.worker.call(path, method, token=None, **params).headers["WWW-Authenticate"]
    assert shop.worker.topic.records == [], "a refused write writes nothing"


def test_a_shop_token_reads_its_own_shop_and_the_templates(shop: Shop) -> None:
    reply = shop.worker.get(SIZES, None, token=SHOP_TOKEN, shop_id=shop.shop_id)
    assert reply.status == 200 and reply.body["shop_id"] == shop.shop_id
    assert shop.worker.get("/templates", None, token=FOREIGN_TOKEN).status == 200
    assert shop.worker.get("/templates", None, token=None).status == 401
    assert shop.worker.get("/templates", None, token="made-up").status == 401


def test_a_token_beyond_its_rate_gets_429_with_retry_after(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, shop: Shop
) -> None:
    limited = SETTINGS.model_copy(update={"api_rate_per_s": 0.01, "api_burst": 3})
    worker = Worker.serving(shop.pipeline, runner, settings=limited)
    answers = [worker.get(SIZES, None, token=SHOP_TOKEN, shop_id=shop.shop_id) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) == 100  # one request per 100 s
    assert_documented(spec, registry, SIZES, answers[-1])
    other = worker.get(SIZES, None, token=PLATFORM_TOKEN, shop_id=shop.shop_id)
    assert other.status == 200, "each token has its own rate"


def test_health_and_readiness_match_their_schemas(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, shop: Shop
) -> None:
    health = shop.worker.get("/healthz")
    ready = shop.worker.get("/ready")
    recovering = Worker.serving(shop.pipeline, runner, recovering=True).get("/ready")
    stall = Stall("ValueError: every record fails", 1.7e9, 2, 0.0)
    stalled = Worker.serving(shop.pipeline, runner, stalls={3: stall}).get("/ready")
    assert (health.status, ready.status, recovering.status) == (200, 200, 503)
    assert stalled.status == 503
    assert stalled.body["stalled"] == [
        {"partition": 3, "reason": stall.reason, "since": 1.7e9, "attempts": 2}
    ]
    fenced = Worker.serving(shop.pipeline, runner, fenced={5, 1}).get("/ready")
    assert (fenced.status, fenced.body["fenced"]) == (503, [1, 5])
    for path, reply in [("/healthz", health)] + [
        ("/ready", r) for r in (ready, recovering, stalled, fenced)
    ]:
        assert_documented(spec, registry, path, reply)
    shop_view = Worker.serving(shop.pipeline, runner, stalls={3: stall}).get(
        SIZES, None, shop_id=shop.shop_id
    )
    assert shop_view.status == 200, "a stalled partition does not keep the others' shops unread"


def test_the_templates_match_their_schema_and_list_every_template(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    reply = shop.worker.get("/templates")
    assert reply.status == 200
    assert_documented(spec, registry, "/templates", reply)
    assert [t["template_id"] for t in reply.body["templates"]] == list(TEMPLATES)


def test_prometheus_metrics_have_the_documented_content_type(
    spec: dict[str, Any], shop: Shop
) -> None:
    reply = shop.worker.get("/metrics")
    documented = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert reply.status == 200 and "segstream_events_total" in reply.body
    assert set(documented) == {reply.content_type}


def test_an_experiment_and_its_read_out_match_their_schemas(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    """Started on the coffee roaster's at-risk customers: the enrolment pass puts every
    current member in an arm, and the read-out and listing answer as documented."""
    pipeline, shop_id = coffee_roaster()
    worker = Worker.serving(pipeline, runner)
    created = worker.call(EXPERIMENTS, "post", shop_id=shop_id)
    assert created.status == 201, created
    assert_documented(spec, registry, EXPERIMENTS, created, "post")
    while pipeline.reevaluate(shop_id, 25) is not None:
        pipeline.flush()
    at_risk = pipeline.shops[shop_id]["sizes"]["lifecycle"]["at_risk"]
    reply = worker.get(EXPERIMENT, None, shop_id=shop_id, experiment_id="winback-10")
    assert reply.status == 200, reply
    assert sum(arm["members"] for arm in reply.body["arms"].values()) == at_risk > 0
    assert_documented(spec, registry, EXPERIMENT, reply)
    listing = worker.get(EXPERIMENTS, None, shop_id=shop_id)
    assert [e["experiment"]["experiment_id"] for e in listing.body["experiments"]] == ["winback-10"]
    assert_documented(spec, registry, EXPERIMENTS, listing)
    ended = worker.request(
        "put",
        EXPERIMENT,
        json.dumps(
            {**json.loads(experiment_body("winback-10")), "ends_at": "2026-01-01T00:00:00Z"}
        ).encode(),
        None,
        shop_id=shop_id,
        experiment_id="winback-10",
    )
    assert ended.status == 200 and ended.body["experiment"]["version"] == 2, ended
    assert_documented(spec, registry, EXPERIMENT, ended, "put")
    reshared = worker.request(
        "put",
        EXPERIMENT,
        json.dumps(
            {
                **json.loads(experiment_body("winback-10")),
                "arms": [{"name": "holdout", "share": 0.5}, {"name": "treatment", "share": 0.5}],
            }
        ).encode(),
        None,
        shop_id=shop_id,
        experiment_id="winback-10",
    )
    assert reshared.status == 409 and reshared.body["detail"].startswith("arms: "), reshared
    assert_documented(spec, registry, EXPERIMENT, reshared, "put")
    deleted = worker.call(EXPERIMENT, "delete", shop_id=shop_id, experiment_id="winback-10")
    assert deleted.status == 200, deleted
    assert_documented(spec, registry, EXPERIMENT, deleted, "delete")


def experiment_on(model: str, segment: str, experiment_id: str = "typo") -> bytes:
    """An experiment (as a client writes it) on ``model``'s ``segment``."""
    return json.dumps(
        {**json.loads(experiment_body(experiment_id)), "model": model, "segment": segment}
    ).encode()


@pytest.mark.parametrize(
    ("model", "segment", "path", "mentions"),
    [
        ("nosuch", "at_risk", "model", "'nosuch'"),
        ("lifecycle", "at-risk", "segment", "'at-risk'"),
        ("rfm", "at_risk", "segment", "'at_risk'"),
        ("cluster", "cluster-1", "segment", "'cluster-1'"),
        ("defined:does-not-exist", "does-not-exist", "model", "'does-not-exist'"),
    ],
)
def test_an_experiment_on_a_segment_that_cannot_have_members_is_refused_naming_it(
    spec: dict[str, Any],
    registry: Registry,
    runner: asyncio.Runner,
    model: str,
    segment: str,
    path: str,
    mentions: str,
) -> None:
    pipeline, shop_id = coffee_roaster()
    worker = Worker.serving(pipeline, runner)
    reply = worker.post(EXPERIMENTS, experiment_on(model, segment), None, shop_id=shop_id)
    assert (reply.status, reply.body["error"], reply.body["path"]) == (
        422,
        "invalid_experiment",
        path,
    ), reply
    assert mentions in reply.body["detail"], reply
    assert_documented(spec, registry, EXPERIMENTS, reply, "post")
    assert worker.topic.records == [], "nothing is written"


def test_an_experiment_on_a_defined_segment_of_the_shop_is_accepted(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    pipeline, shop_id = coffee_roaster()
    worker = Worker.serving(pipeline, runner)
    defined = worker.post(DEFINED, written_body(segment_id="green"), None, shop_id=shop_id)
    assert defined.status == 201, defined
    wrong = worker.post(EXPERIMENTS, experiment_on("defined:green", "gren"), None, shop_id=shop_id)
    assert (wrong.status, wrong.body["path"]) == (422, "segment"), wrong
    reply = worker.post(EXPERIMENTS, experiment_on("defined:green", "green"), None, shop_id=shop_id)
    assert reply.status == 201, reply
    assert_documented(spec, registry, EXPERIMENTS, reply, "post")


@pytest.mark.parametrize("method", ["preview", "post", "put"])
def test_a_definition_comparing_with_a_segment_its_model_never_assigns_is_refused(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, method: str
) -> None:
    pipeline, shop_id = coffee_roaster()
    worker = Worker.serving(pipeline, runner)
    assert (
        worker.post(DEFINED, written_body(segment_id="risky"), None, shop_id=shop_id).status == 201
    )
    typo = {
        "all": [
            {"field": "behaviour.order_count", "op": "gte", "value": 1},
            {"field": "segments.lifecycle", "op": "in", "value": ["loyal", "at-risk"]},
        ]
    }
    body = written_body(segment_id="risky", rule=typo)
    path, params = {"preview": (PREVIEW, {}), "post": (DEFINED, {}), "put": (DEFINED_ONE, {})}[
        method
    ]
    if method == "put":
        params = {"segment_id": "risky"}
    verb = "put" if method == "put" else "post"
    reply = worker.request(verb, path, body, None, shop_id=shop_id, **params)
    if method == "post":
        assert reply.status == 409, reply  # it exists: the conflict is found first
        body = written_body(segment_id="risky-2", rule=typo)
        reply = worker.request(verb, path, body, None, shop_id=shop_id)
    assert (reply.status, reply.body["path"]) == (422, "rule/all/1/value/1"), reply
    assert "'at-risk'" in reply.body["detail"] and "at_risk" in reply.body["detail"]
    assert_documented(spec, registry, path, reply, verb)


def test_a_preview_takes_what_a_create_takes(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    """A bare definition (no version, shop or schema version) and a template use, as
    POST /definitions takes them; the version is the one a create would assign."""
    bare = shop.post(PREVIEW, written_body())
    assert bare.status == 200 and bare.body["version"] == 1, bare
    assert bare.body == shop.post(PREVIEW, definition_body(shop.shop_id, version=1)).body
    template = json.dumps({"template": "region", "parameters": {"region": "north"}}).encode()
    used = shop.post(PREVIEW, template)
    assert used.status == 200 and used.body["segment_id"] == "region", used
    for reply in (bare, used):
        assert_documented(spec, registry, PREVIEW, reply, "post")


BODY_ROUTES = [(PREVIEW, "post"), (DEFINED, "post"), (DEFINED_ONE, "put")]
BODY_ROUTES += [(EXPERIMENTS, "post"), (EXPERIMENT, "put")]


@pytest.mark.parametrize(("path", "method"), BODY_ROUTES)
def test_a_body_with_a_duplicate_key_is_refused_as_events_are(
    spec: dict[str, Any], registry: Registry, shop: Shop, path: str, method: str
) -> None:
    params = {name: "x" for name in TEMPLATE_VARIABLE.findall(path) if name != "shop_id"}
    body = request_body(path, method, {"shop_id": shop.shop_id, **params})
    doubled = body.replace(b'"name": ', b'"name": "first", "name": ', 1)
    assert doubled != body
    reply = shop.worker.request(method, path, doubled, None, shop_id=shop.shop_id, **params)
    assert reply.status == 400 and "duplicate key 'name'" in reply.body["detail"], reply
    assert_documented(spec, registry, path, reply, method)


@pytest.mark.parametrize(("path", "method"), BODY_ROUTES)
def test_a_body_not_sent_as_json_is_415(
    spec: dict[str, Any], registry: Registry, shop: Shop, path: str, method: str
) -> None:
    params = {name: "x" for name in TEMPLATE_VARIABLE.findall(path) if name != "shop_id"}
    body = request_body(path, method, {"shop_id": shop.shop_id, **params})
    headers = {"Authorization": f"Bearer {PLATFORM_TOKEN}", "Content-Type": "text/plain"}
    request = QueryRequest({}, body, method=method.upper(), headers=headers)
    handler = shop.worker.handler(path, method)
    reply = shop.worker.runner.run(
        handler(RecordingView(), request, shop_id=shop.shop_id, **params)
    )
    assert reply.status == 415 and "text/plain" in reply.body["detail"], reply
    assert_documented(spec, registry, path, reply, method)


def test_a_422_quotes_a_bounded_prefix_of_a_huge_field(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    """A 500 KB name (over its 120 characters) and a 500 KB property name: the answer
    names the problem in at most 500 characters."""
    huge = "x" * 500_000
    for body in (
        written_body(name=huge),
        json.dumps({**json.loads(written_body()), huge: 1}).encode(),
    ):
        reply = shop.post(PREVIEW, body)
        assert reply.status == 422, reply.status
        assert len(reply.body["detail"]) <= 500 and len(reply.body["path"]) <= 500
        assert len(json.dumps(reply.body)) < 1200
        assert_documented(spec, registry, PREVIEW, reply, "post")


@pytest.mark.parametrize("version", [None, "2", True, 1.5])
def test_a_written_version_of_the_wrong_type_is_refused(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner, version: Any
) -> None:
    pipeline, shop_id = coffee_roaster()
    worker = Worker.serving(pipeline, runner)
    reply = worker.post(DEFINED, written_body(version=version), None, shop_id=shop_id)
    assert (reply.status, reply.body.get("path")) == (422, "version"), reply
    assert_documented(spec, registry, DEFINED, reply, "post")
    assert worker.topic.records == []


def test_the_preview_route_is_not_a_segment_id(
    spec: dict[str, Any], registry: Registry, shop: Shop
) -> None:
    """``/definitions/preview`` is the preview route (OpenAPI reads a concrete path before
    ``/definitions/{segment_id}``): no segment may be called preview, and the methods of
    ``{segment_id}`` answer 405 there."""
    created = shop.worker.post(
        DEFINED, written_body(segment_id="preview"), None, shop_id=shop.shop_id
    )
    assert (created.status, created.body["path"]) == (422, "segment_id"), created
    assert_documented(spec, registry, DEFINED, created, "post")
    for method in ("get", "put", "delete"):
        reply = shop.worker.call(DEFINED_ONE, method, shop_id=shop.shop_id, segment_id="preview")
        assert (reply.status, reply.headers["Allow"]) == (405, "POST"), reply
    assert shop.worker.topic.records == []


def test_the_worker_serves_the_document_the_contract_tests_check(
    spec: dict[str, Any], shop: Shop
) -> None:
    reply = shop.worker.get("/openapi.json", None, token=None)
    assert reply.status == 200 and reply.content_type == "application/json"
    assert json.loads(reply.body) == spec


def test_a_webhook_is_registered_read_replaced_and_deleted_as_documented(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    """The secret is in the 201 only; listing and reading never show it; a replace keeps
    it and raises the version; a delete is gone; every answer matches its schema."""
    worker = Worker.serving(Pipeline(SETTINGS, {}, {}, {}, {}), runner)
    shop_id = "coffee-roaster-1"
    body = json.dumps({"url": "https://hooks.example.com/a", "models": ["lifecycle"]}).encode()
    created = worker.request("post", WEBHOOKS, body, None, shop_id=shop_id)
    assert created.status == 201 and created.body["secret"].startswith("whsec_"), created
    assert_documented(spec, registry, WEBHOOKS, created, "post")
    webhook_id = created.body["webhook_id"]
    listed = worker.get(WEBHOOKS, None, shop_id=shop_id)
    assert [w["webhook_id"] for w in listed.body["webhooks"]] == [webhook_id]
    assert "secret" not in json.dumps(listed.body) and created.body["secret"] not in str(listed)
    assert_documented(spec, registry, WEBHOOKS, listed)
    replaced_body = json.dumps({"url": "https://hooks.example.com/b"}).encode()
    ids = {"shop_id": shop_id, "webhook_id": webhook_id}
    replaced = worker.request("put", WEBHOOK, replaced_body, None, **ids)
    assert replaced.status == 200 and replaced.body["version"] == 2, replaced
    assert replaced.body["models"] == [] and "secret" not in replaced.body
    assert_documented(spec, registry, WEBHOOK, replaced, "put")
    [*_, (_, _, record)] = STAND_INS[-1].records  # the secret stays the first one
    assert record is not None and json.loads(record)["secret"] == created.body["secret"]
    deleted = worker.request("delete", WEBHOOK, b"", None, **ids)
    assert deleted.status == 200 and deleted.body["status"] == "deleted", deleted
    assert_documented(spec, registry, WEBHOOK, deleted, "delete")
    assert worker.get(WEBHOOK, None, **ids).status == 404


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"url": "ftp://hooks.example.com/a"}, 422, "url"),
        ({"url": "https://user:pw@hooks.example.com/a"}, 422, "url"),
        ({"url": "http://127.0.0.1:8080/a"}, 422, "url"),
        ({"url": "http://10.0.0.7/a"}, 422, "url"),
        ({"url": "https://hooks.example.com/a", "models": ["rfn"]}, 422, "models"),
        ({"url": "https://hooks.example.com/a", "segments": "at_risk"}, 422, "segments"),
        ({"url": "https://hooks.example.com/a", "secret": "whsec_abc"}, 422, "secret"),
        ({"models": ["rfm"]}, 422, "url"),
        ([1, 2], 400, None),
    ],
)
def test_a_bad_webhook_body_gets_the_documented_error_and_writes_nothing(
    spec: dict[str, Any],
    registry: Registry,
    runner: asyncio.Runner,
    body: Any,
    status: int,
    path: str | None,
) -> None:
    worker = Worker.serving(Pipeline(SETTINGS, {}, {}, {}, {}), runner)
    raw = json.dumps(body).encode()
    reply = worker.request("post", WEBHOOKS, raw, None, shop_id="coffee-roaster-1")
    assert reply.status == status, reply
    assert reply.body.get("path") == path, reply
    assert_documented(spec, registry, WEBHOOKS, reply, "post")
    assert STAND_INS[-1].records == []


def test_a_webhooks_topic_that_cannot_be_read_is_the_documented_503(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    worker = Worker.serving(Pipeline(SETTINGS, {}, {}, {}, {}), runner)

    async def unreadable() -> WebhookDirectory:
        raise webhook_views.WebhooksUnavailableError("the webhooks topic cannot be read now")

    STAND_INS[-1].read = unreadable  # type: ignore[method-assign]
    reply = worker.get(WEBHOOKS, None, shop_id="coffee-roaster-1")
    assert reply.status == 503 and reply.body["error"] == "unavailable", reply
    assert_documented(spec, registry, WEBHOOKS, reply)


def test_a_shop_with_the_most_webhooks_gets_the_documented_409(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    worker = Worker.serving(Pipeline(SETTINGS, {}, {}, {}, {}), runner)
    body = json.dumps({"url": "https://hooks.example.com/a"}).encode()
    for _ in range(webhook_views.MAX_WEBHOOKS):
        assert worker.request("post", WEBHOOKS, body, None, shop_id="tea-house-1").status == 201
    refused = worker.request("post", WEBHOOKS, body, None, shop_id="tea-house-1")
    assert refused.status == 409 and refused.body["error"] == "conflict", refused
    assert_documented(spec, registry, WEBHOOKS, refused, "post")
    assert len(STAND_INS[-1].records) == webhook_views.MAX_WEBHOOKS
    assert worker.request("post", WEBHOOKS, body, None, shop_id="soap-maker-1").status == 201
