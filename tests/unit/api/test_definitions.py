"""Managing shop-defined segments over HTTP: create, replace, delete, list and read, through
the views a worker registers, every answer checked against deploy/openapi.json for its
method and status.

The definitions topic is a stand-in (``DefinitionsTopic``) whose records the owning worker
applies at once to a pipeline over plain dicts (define, then flush), as its next batch
would, so the handlers' polling of the tables finds them; a topic that does not apply, and
one where a concurrent writer gets in first, give the 202 and 409 answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry

from segstream.api import definitions
from segstream.engine.pipeline import MAX_DEFINITIONS, Pipeline
from segstream.segments.defined.live import model_name
from segstream.segments.defined.templates import TEMPLATES
from tests.unit.api.test_openapi import (
    CUSTOMER,
    DEFINED,
    DEFINED_ONE,
    DEFINITIONS,
    MEMBERS,
    METRICS,
    PREVIEW,
    SETTINGS,
    SIZES,
    SPEC_URI,
    DefinitionsTopic,
    Reply,
    Worker,
    coffee_roaster,
    load_spec,
    schema_errors,
    spec_registry,
)

BIG = "big-spenders-365d"
MODEL = model_name(BIG)
INVALID = sorted((DEFINITIONS / "segment_definition" / "invalid").glob("*.json"))


def written(segment_id: str = BIG, at_least: float = 150, **changes: Any) -> dict[str, Any]:
    """A definition as a client writes it: customers who spent ``at_least`` in a year."""
    rule = {"sum": "purchase_days.amount", "within_days": 365, "op": "gte", "value": at_least}
    name = f"Spent {at_least:g} or more in the last year"
    return {"segment_id": segment_id, "name": name, "rule": rule, **changes}


def encoded(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def stored(shop_id: str, version: int, **changes: Any) -> bytes:
    """A complete definition record of the topic, as the API would write it."""
    return encoded(
        {"schema_version": 1, "shop_id": shop_id, **written(**changes), "version": version}
    )


def settle(pipeline: Pipeline, shop_id: str) -> None:
    """Run the shop's pending re-evaluations to the end, committing each step, as the
    worker's re-evaluation timer does."""
    while pipeline.reevaluate(shop_id, 1_000_000) is not None:
        pipeline.flush()


@dataclass(frozen=True, slots=True)
class Client:
    """A shop's client of one worker: every answer is checked against the document."""

    worker: Worker
    shop_id: str
    spec: dict[str, Any]
    registry: Registry

    @property
    def topic(self) -> DefinitionsTopic:
        return self.worker.topic

    @property
    def pipeline(self) -> Pipeline:
        return self.worker.topic.pipeline

    def __call__(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        query: Mapping[str, str] | None = None,
        /,
        **params: str,
    ) -> Reply:
        reply = self.worker.request(method, path, body, query, shop_id=self.shop_id, **params)
        errors = schema_errors(self.spec, self.registry, path, reply.status, reply.body, method)
        assert not errors, (errors, reply)
        return reply

    def listing(self) -> Reply:
        return self("get", DEFINED)

    def one(self, segment_id: str = BIG) -> Reply:
        return self("get", DEFINED_ONE, segment_id=segment_id)

    def create(self, payload: Any) -> Reply:
        return self("post", DEFINED, encoded(payload))

    def replace(self, payload: Any, segment_id: str = BIG) -> Reply:
        return self("put", DEFINED_ONE, encoded(payload), segment_id=segment_id)

    def delete(self, segment_id: str = BIG) -> Reply:
        return self("delete", DEFINED_ONE, segment_id=segment_id)

    def sending_to(self, topic: DefinitionsTopic) -> Client:
        """The same shop on a worker whose writer sends to ``topic``."""
        worker = Worker.serving(self.pipeline, self.worker.runner, topic)
        return Client(worker, self.shop_id, self.spec, self.registry)

    def matching(self, definition: dict[str, Any]) -> int:
        """How many customers the definition matches now, by the preview (a recount that
        does not read the stream's memberships)."""
        reply = self("post", PREVIEW, encoded(definition), {"limit": "0"})
        assert reply.status == 200, reply
        return int(reply.body["matching"])


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture(scope="module")
def registry(spec: dict[str, Any]) -> Registry:
    return spec_registry(spec)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture
def client(spec: dict[str, Any], registry: Registry, runner: asyncio.Runner) -> Client:
    """The coffee roaster, fed anew, served by a worker whose topic applies every write."""
    pipeline, shop_id = coffee_roaster()
    return Client(Worker.serving(pipeline, runner), shop_id, spec, registry)


@pytest.fixture
def slow_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes give up waiting for the worker after a few milliseconds (not 10 s)."""
    monkeypatch.setattr(definitions, "APPLY_WAIT_S", 0.02)
    monkeypatch.setattr(definitions, "POLL_S", 0.005)


def test_a_created_segment_goes_live_and_lists_its_members(client: Client) -> None:
    created = client.create(written())
    assert created.status == 201, created
    definition = {"schema_version": 1, "shop_id": client.shop_id, **written(), "version": 1}
    assert created.body == {"definition": definition, "status": "live", "reevaluating": True}
    assert [o.status for o in client.topic.outcomes] == ["processed"]
    assert client.listing().body == {
        "shop_id": client.shop_id,
        "definitions": [{"definition": definition, "members": 0, "reevaluating": True}],
    }
    settle(client.pipeline, client.shop_id)
    members = client.matching(definition)
    assert members > 0, "the simulation should have big spenders"
    settled = {"definition": definition, "members": members, "reevaluating": False}
    assert client.listing().body == {"shop_id": client.shop_id, "definitions": [settled]}
    assert client.one().body == settled


def test_a_defined_segment_shows_in_sizes_customers_and_metrics_as_documented(
    client: Client,
) -> None:
    """Under the model name defined:<segment_id>; of a customer's answer the part checked
    is what a defined segment adds, their segments."""
    assert client.create(written()).status == 201
    settle(client.pipeline, client.shop_id)
    members = client.one().body["members"]
    assert client("get", SIZES).body["models"][MODEL] == {BIG: members}
    customers = client.pipeline.shop_customers(client.shop_id)
    inside = [state.customer_id for state in customers if MODEL in state.segments]
    assert len(inside) == members
    segments = Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/Segments"}, registry=client.registry
    )
    for customer_id in inside:
        reply = client.worker.get(CUSTOMER, shop_id=client.shop_id, customer_id=customer_id)
        assert reply.body["segments"][MODEL] == BIG
        assert not list(segments.iter_errors(reply.body["segments"])), reply.body["segments"]
    dimension = f"segment:{MODEL}={BIG}"
    metrics = client("get", METRICS, b"", {"dimension": dimension})
    assert metrics.status == 200 and metrics.body["dimension"] == dimension
    assert metrics.body["subscribers"]["moved_in"] > 0


def test_creating_a_segment_the_shop_defines_is_409(client: Client) -> None:
    assert client.create(written()).status == 201
    again = client.create(written(at_least=200))
    assert again.status == 409 and again.body["error"] == "conflict", again
    assert "PUT" in again.body["detail"]
    assert len(client.topic.records) == 1, "nothing more is written"


def test_a_replace_goes_live_as_the_next_version(client: Client) -> None:
    assert client.create(written()).status == 201
    settle(client.pipeline, client.shop_id)
    before = client.one().body["members"]
    replaced = client.replace(written(at_least=250))
    assert replaced.status == 200 and replaced.body["status"] == "live", replaced
    definition = replaced.body["definition"]
    assert definition["version"] == 2 and definition["rule"]["value"] == 250
    assert client.one().body["definition"] == definition
    assert client.one().body["reevaluating"] is True
    settle(client.pipeline, client.shop_id)
    after = client.one().body
    assert after["members"] == client.matching(definition) < before
    assert after["reevaluating"] is False


def test_the_body_of_a_replace_may_leave_out_the_segment_id(client: Client) -> None:
    assert client.create(written()).status == 201
    bare = {k: v for k, v in written(at_least=200).items() if k != "segment_id"}
    replaced = client.replace(bare)
    assert replaced.status == 200 and replaced.body["definition"]["segment_id"] == BIG


def test_replacing_a_segment_the_shop_does_not_define_is_404(client: Client) -> None:
    reply = client.replace(written("nope"), "nope")
    assert reply.status == 404 and "'nope'" in reply.body["detail"], reply
    assert "POST" in reply.body["detail"]
    assert client.topic.records == []


def test_a_body_naming_another_than_the_next_version_is_409(client: Client) -> None:
    early = client.create(written(version=2))
    assert early.status == 409 and "next version is 1" in early.body["detail"], early
    assert client.create(written(version=1)).status == 201
    stale = client.replace(written(at_least=200, version=1))
    assert stale.status == 409 and "next version is 2" in stale.body["detail"], stale
    assert len(client.topic.records) == 1, "a conflict writes nothing"
    current = client.replace(written(at_least=200, version=2))
    assert current.status == 200 and current.body["definition"]["version"] == 2


BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("post", encoded(written(shop_id="tea-house-1")), "'tea-house-1'"),
    ("put", encoded(written(shop_id="tea-house-1")), "'tea-house-1'"),
    ("put", encoded(written("loyal-subscribers")), "'loyal-subscribers'"),
    ("post", b"", "empty"),
    ("put", b"segment: loyal", "not JSON"),
    ("post", b"[]", "JSON object"),
    ("post", b'{"name": "x", "version": NaN}', "NaN"),
]


@pytest.mark.parametrize(("method", "body", "mentions"), BAD_REQUESTS)
def test_a_body_that_is_not_a_definition_of_the_path_is_400(
    client: Client, method: str, body: bytes, mentions: str
) -> None:
    assert client.create(written()).status == 201
    params = {"segment_id": BIG} if method == "put" else {}
    reply = client(method, DEFINED_ONE if params else DEFINED, body, **params)
    assert reply.status == 400 and mentions in reply.body["detail"], reply
    assert len(client.topic.records) == 1


@pytest.mark.parametrize("method", ["post", "put"])
def test_an_invalid_definition_is_422_naming_the_offending_part(
    client: Client, method: str
) -> None:
    if method == "put":
        assert client.create(written()).status == 201
    wrong = written(rule={"field": "plan.interval", "op": "eq", "value": 1})
    params = {"segment_id": BIG} if method == "put" else {}
    reply = client(method, DEFINED_ONE if params else DEFINED, encoded(wrong), **params)
    assert reply.status == 422 and reply.body["path"] == "rule/value", reply
    assert reply.body["detail"].startswith("rule/value: ")
    assert len(client.topic.records) == (1 if method == "put" else 0)


@pytest.mark.parametrize("example", INVALID, ids=[path.stem for path in INVALID])
def test_every_invalid_example_definition_is_refused_on_create(
    client: Client, example: Path
) -> None:
    """422 naming the part, except a version other than the next one: the server assigns
    versions, so that is a conflict (409) whatever the version is."""
    payload = {**json.loads(example.read_text()), "shop_id": client.shop_id}
    reply = client.create(payload)
    if payload.get("version") != 1:
        assert reply.status == 409 and "next version is 1" in reply.body["detail"], reply
    else:
        assert reply.status == 422, reply
        assert reply.body["detail"].startswith(f"{reply.body['path']}: "), reply
    assert client.topic.records == []


def test_a_deleted_segment_is_gone_and_its_versions_never_repeat(client: Client) -> None:
    assert client.create(written()).status == 201
    assert client.replace(written(at_least=200)).status == 200
    settle(client.pipeline, client.shop_id)
    assert client("get", SIZES).body["models"][MODEL]
    deleted = client.delete()
    assert deleted.body == {
        "shop_id": client.shop_id,
        "segment_id": BIG,
        "version": 2,
        "status": "deleted",
    }
    assert deleted.status == 200 and client.topic.records[-1] == (client.shop_id, BIG, None)
    gone = client.one()
    assert gone.status == 404 and f"'{BIG}'" in gone.body["detail"], gone
    assert client.listing().body["definitions"] == []
    settle(client.pipeline, client.shop_id)
    assert MODEL not in client("get", SIZES).body["models"], "every member left"
    assert client.delete().status == 404
    assert client.replace(written()).status == 404
    again = client.create(written())
    assert again.status == 201 and again.body["definition"]["version"] == 3


@pytest.mark.usefixtures("slow_worker")
def test_a_write_the_worker_does_not_apply_in_time_is_202(client: Client) -> None:
    client.topic.applying = False
    accepted = client.create(written())
    assert accepted.status == 202 and accepted.body["status"] == "accepted", accepted
    assert accepted.body["definition"]["version"] == 1
    assert client.one().status == 404, "not applied yet"
    client.topic.apply(*client.topic.records[-1])
    assert client.one().body["definition"] == accepted.body["definition"]
    replaced = client.replace(written(at_least=200))
    assert replaced.status == 202 and replaced.body["definition"]["version"] == 2, replaced
    client.topic.apply(*client.topic.records[-1])
    assert client.one().body["definition"]["version"] == 2
    deleted = client.delete()
    assert deleted.status == 202 and deleted.body["version"] == 2, deleted
    assert deleted.body["status"] == "accepted"
    client.topic.apply(*client.topic.records[-1])
    assert client.one().status == 404


@dataclass
class RacingTopic(DefinitionsTopic):
    """Another request's write of the same segment and version lands just before each of
    ours: the worker applies it, and refuses ours (its version is no longer above the
    last)."""

    rival_name: str | None = "Someone else's big spenders"
    """The other write's name (None: it wrote the very same definition)."""

    async def send(self, shop_id: str, segment_id: str, value: bytes | None) -> None:
        assert value is not None
        rival = json.loads(value)
        rival["name"] = rival["name"] if self.rival_name is None else self.rival_name
        self.apply(shop_id, segment_id, encoded(rival))
        await super().send(shop_id, segment_id, value)


@pytest.mark.parametrize("method", ["post", "put"])
def test_a_write_that_loses_a_race_is_409(client: Client, method: str) -> None:
    topic = RacingTopic(client.pipeline)
    racing = client.sending_to(topic)
    if method == "put":
        topic.apply(client.shop_id, BIG, stored(client.shop_id, 1))
    params = {"segment_id": BIG} if method == "put" else {}
    reply = racing(method, DEFINED_ONE if params else DEFINED, encoded(written()), **params)
    assert reply.status == 409 and "at the same time" in reply.body["detail"], reply
    ours = topic.outcomes[-1]
    assert ours.dead_letter is not None and ours.dead_letter.reason == "stale_definition"
    assert racing.one().body["definition"]["name"] == topic.rival_name


def test_a_race_with_the_very_same_write_is_no_conflict(client: Client) -> None:
    topic = RacingTopic(client.pipeline, rival_name=None)
    racing = client.sending_to(topic)
    reply = racing.create(written())
    assert reply.status == 201 and reply.body["definition"]["version"] == 1, reply
    assert [o.status for o in topic.outcomes] == ["processed", "dead_lettered"]


def test_one_more_segment_than_a_shop_may_define_is_409(client: Client) -> None:
    """The worker would refuse it: answered at once, not 202 after waiting in vain."""
    for index in range(MAX_DEFINITIONS):
        segment_id = f"s-{index}"
        client.topic.apply(
            client.shop_id, segment_id, stored(client.shop_id, 1, segment_id=segment_id)
        )
    assert len(client.listing().body["definitions"]) == MAX_DEFINITIONS
    reply = client.create(written())
    assert reply.status == 409 and f"{MAX_DEFINITIONS} segments" in reply.body["detail"], reply
    assert len(client.topic.records) == 0
    assert client.replace(written("s-0", at_least=200), "s-0").status == 200


def test_a_shop_without_events_may_define_segments(
    spec: dict[str, Any], registry: Registry, runner: asyncio.Runner
) -> None:
    """They apply from its first event; there is nobody to re-evaluate yet."""
    pipeline = Pipeline(SETTINGS, {}, {}, {}, {})
    newcomer = Client(Worker.serving(pipeline, runner), "new-shop-1", spec, registry)
    assert newcomer.listing().body == {"shop_id": "new-shop-1", "definitions": []}
    assert newcomer.create(written()).status == 201
    settle(pipeline, "new-shop-1")
    [listed] = newcomer.listing().body["definitions"]
    assert (listed["members"], listed["reevaluating"]) == (0, False)


def test_a_segment_from_a_template_takes_its_rule_with_the_parameters_filled_in(
    client: Client,
) -> None:
    use = {"template": "big-spenders-365d", "parameters": {"amount": 150}, "segment_id": BIG}
    created = client.create(use)
    assert created.status == 201, created
    definition = created.body["definition"]
    assert definition["rule"] == written()["rule"] and definition["version"] == 1
    assert definition["name"] == TEMPLATES["big-spenders-365d"].name
    named = client.create({"template": "urban", "name": "City folk"})
    assert named.status == 201 and named.body["definition"]["segment_id"] == "urban"
    assert named.body["definition"]["name"] == "City folk"


@pytest.mark.parametrize(
    ("use", "status", "path"),
    [
        ({"template": "region"}, 422, "parameters/region"),
        ({"template": "region", "parameters": {"region": 3}}, 422, "parameters/region"),
        ({"template": "nope"}, 422, "template"),
        ({"template": "urban", "rule": written()["rule"]}, 400, None),
        ({"template": ["urban"]}, 400, None),
    ],
)
def test_a_bad_use_of_a_template_is_refused_and_nothing_is_written(
    client: Client, use: dict[str, Any], status: int, path: str | None
) -> None:
    reply = client.create(use)
    assert reply.status == status, reply
    assert reply.body.get("path") == path
    assert client.topic.records == []


def test_the_members_of_a_defined_segment_are_listed_like_a_models(client: Client) -> None:
    assert client.create(written()).status == 201
    settle(client.pipeline, client.shop_id)
    page = client("get", MEMBERS, b"", None, model=MODEL, segment=BIG)
    assert page.status == 200, page
    inside = sorted(
        s.customer_id for s in client.pipeline.shop_customers(client.shop_id) if MODEL in s.segments
    )
    assert page.body["total"] == len(inside) > 0 and page.body["customers"] == inside[:50]
