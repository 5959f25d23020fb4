"""The query API and the metrics topic on two real workers sharing the partitions.

Any worker answers for any shop (requests are routed to the partition's owner), the
window metrics equal an independent pandas computation over the same events, and bad
requests get clear 4xx answers.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from harness.kafka_io import consume_all
from harness.workers import SHOP_TOKENS, WorkerProcess, isolated_settings
from segstream.domain.contracts import validate_output
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.topics import ensure_topics
from segstream.tools.follow import Follower, bootstrap, ends, follow
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import Simulation, SimulationConfig, generate
from tests.metrics_oracle import MetricsOracle

REPLAY_ENV = {
    # A replay delivers months of event time in seconds, and the input topics are
    # consumed independently: allow the whole span as lateness, as a backfill should.
    "SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS": "400",
    "SEGSTREAM_METRICS_RETENTION_DAYS": "800",
    "SEGSTREAM_METRICS_SNAPSHOT_INTERVAL_S": "2",
    "SEGSTREAM_GAUGES_INTERVAL_S": "2",
}


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return generate(
        SimulationConfig(
            seed=5, shops_per_kind=1, customers_per_shop=30, start=date(2025, 6, 1), days=150
        )
    )


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "api")


@pytest.fixture(scope="module")
def workers(
    settings: Settings, simulation: Simulation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    asyncio.run(ensure_topics(settings))
    started = [
        WorkerProcess.for_settings(settings, tmp_path_factory.mktemp("api") / name, REPLAY_ENV)
        for name in ("a", "b")
    ]
    try:
        for worker in started:
            worker.start()
        for worker in started:
            worker.wait_ready(timeout_s=120)
        asyncio.run(publish(simulation.outbox(), settings))
        wait_for_all(started, len(simulation.events))
        yield started
    finally:
        for worker in started:
            worker.stop()


def wait_for_all(workers: list[WorkerProcess], expected: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        handled = sum(w.events_handled() or 0 for w in workers)
        if handled >= expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"handled {handled} of {expected}\n{workers[0].log_tail()}")


def shops(simulation: Simulation) -> list[str]:
    return sorted({event["shop_id"] for event in simulation.events})


def test_both_workers_share_the_partitions(workers: list[WorkerProcess]) -> None:
    assert all(w.metric("segstream_events_total") > 0 for w in workers)


def test_any_worker_answers_for_any_shop(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    for shop_id in shops(simulation):
        answers = [w.get_json(f"/shops/{shop_id}/segments") for w in workers]
        assert answers[0] == answers[1]
        status, body = answers[0]
        assert status == 200
        assert set(body["models"]) >= {"rfm", "lifecycle"}
        customers = {e["customer_id"] for e in simulation.events if e["shop_id"] == shop_id}
        assert sum(body["models"]["lifecycle"].values()) == len(customers)


def test_tokens_are_checked_on_any_worker_and_forwarded_to_the_owner(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    """Over real HTTP, on both workers (one of them forwards to the owner): the coffee
    roaster's token reads its shop and nothing of another; no token is 401 with a
    challenge; the operations routes stay open."""
    (shop_token,) = SHOP_TOKENS
    other = next(s for s in shops(simulation) if s != SHOP_TOKENS[shop_token].removeprefix("shop:"))
    for worker in workers:
        status, body = worker.get_json("/shops/coffee-roaster-1/segments", token=shop_token)
        assert status == 200 and body["shop_id"] == "coffee-roaster-1"
        assert worker.get_json(f"/shops/{other}/segments", token=shop_token) == (
            403,
            {"error": "forbidden", "detail": "this token may not read this shop"},
        )
        assert worker.get_json(f"/shops/{other}/customers/c-0001", token="sst_made-up")[0] == 401
        request = urllib.request.Request(worker.url(f"/shops/{other}/segments"))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"] == 'Bearer realm="segstream"'
        assert worker.get_json("/healthz", token=None)[0] == 200
        assert "segstream_events_total" in worker.get_text("/metrics")


def test_window_metrics_equal_an_independent_computation(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    oracle = MetricsOracle(simulation.events)
    compared = 0
    for shop_id in shops(simulation):
        for month in ("2025-07-01", "2025-08-01", "2025-09-01", "2025-10-01"):
            status, got = workers[compared % 2].get_json(
                f"/shops/{shop_id}/metrics?grain=month&start={month}"
            )
            assert status == 200, got
            expected = oracle.window(
                shop_id, date.fromisoformat(got["start"]), date.fromisoformat(got["end"]), "all"
            )
            fields = {
                "subscribers_start": got["subscribers"]["start"],
                "subscribers_end": got["subscribers"]["end"],
                "reactivations": got["subscribers"]["reactivated"],
                "churned_subscribers": got["subscribers"]["churned"],
                "signups": got["signups"],
                "orders": got["orders"]["count"],
            }
            for name, value in fields.items():
                assert value == expected[name], (shop_id, month, name)
            amounts = {
                "mrr_start": got["mrr"]["start"],
                "mrr_end": got["mrr"]["end"],
                "new_mrr": got["mrr"]["new"],
                "churn_mrr": got["mrr"]["churn"],
                "revenue": got["orders"]["revenue"],
            }
            for name, value in amounts.items():
                assert value == pytest.approx(expected[name], abs=1e-4), (shop_id, month, name)
            compared += 1
    assert compared == 4 * len(shops(simulation))


def test_customer_view_and_paged_segment_members(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    shop_id = shops(simulation)[0]
    _, sizes = workers[1].get_json(f"/shops/{shop_id}/segments")
    segment, size = max(sizes["models"]["lifecycle"].items(), key=lambda item: item[1])
    pages: list[str] = []
    for offset in range(0, size, 7):
        status, page = workers[0].get_json(
            f"/shops/{shop_id}/segments/lifecycle/{segment}?limit=7&offset={offset}"
        )
        assert status == 200 and page["total"] == size
        pages += page["customers"]
    assert len(pages) == len(set(pages)) == size
    status, customer = workers[1].get_json(f"/shops/{shop_id}/customers/{pages[0]}")
    assert status == 200
    assert customer["segments"]["lifecycle"] == segment
    assert {"frequency", "recency", "T", "monetary_value"} <= set(customer["features"])


@pytest.mark.asyncio(loop_scope="session")
async def test_membership_topic_read_from_the_start_equals_the_api(
    workers: list[WorkerProcess], settings: Settings, simulation: Simulation
) -> None:
    """What a consumer that starts today does: fold the compacted membership topic (last
    record per key, tombstones remove) and it knows everyone's segment, as the API says."""
    records = await consume_all(
        settings.kafka_bootstrap, settings.topic("segment_membership"), timeout_s=60
    )
    current: dict[bytes, dict[str, Any]] = {}
    for record in records:
        shop_id = record.key.decode().split("|")[0]
        assert record.partition == shop_partition(shop_id, settings.topic_partitions)
        if record.value is None:
            current.pop(record.key, None)
            continue
        member = json.loads(record.value)
        validate_output("segment_membership", member)
        assert record.key.decode() == f"{shop_id}|{member['customer_id']}|{member['model']}"
        current[record.key] = member
    sizes: dict[str, dict[str, dict[str, int]]] = {}
    for member in current.values():
        by_model = sizes.setdefault(member["shop_id"], {}).setdefault(member["model"], {})
        by_model[member["segment"]] = by_model.get(member["segment"], 0) + 1
    for shop_id in shops(simulation):
        status, body = workers[0].get_json(f"/shops/{shop_id}/segments")
        assert status == 200
        api = {
            model: {s: n for s, n in counts.items() if n}
            for model, counts in body["models"].items()
        }
        assert sizes[shop_id] == {model: counts for model, counts in api.items() if counts}
    sample = sorted(current.values(), key=lambda m: (m["shop_id"], m["customer_id"]))[::25]
    for member in sample:
        _, customer = workers[1].get_json(
            f"/shops/{member['shop_id']}/customers/{member['customer_id']}"
        )
        assert customer["segments"][member["model"]] == member["segment"]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_reference_consumer_gets_the_same_membership_both_ways(
    workers: list[WorkerProcess], settings: Settings
) -> None:
    """Bootstrapping from the membership topic and replaying every change from the start
    of the change topic (de-duplicated by id) give the same segments."""
    booted = Follower()
    assert await bootstrap(settings, booted) > 0
    end = await ends(settings, settings.topic("segment_changes"))
    replayed = Follower()
    await follow(settings, replayed, dict.fromkeys(end, 0), seconds=120, until=end)
    segments = {key: member["segment"] for key, member in booted.members.items()}
    got = {key: member["segment"] for key, member in replayed.members.items()}
    assert got == segments


def test_cohort_table_counts_each_paying_customer_once(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    shop_id = shops(simulation)[0]
    status, body = workers[0].get_json(f"/shops/{shop_id}/cohorts?months=6")
    assert status == 200
    assert body["cohorts"], body
    for row in body["cohorts"]:
        assert row["cohort"] <= "2025-10"


@pytest.mark.parametrize(
    ("path", "status", "mentions"),
    [
        ("/shops/no-such-shop/segments", 404, "no-such-shop"),
        ("/shops/{shop}/customers/nobody", 404, "nobody"),
        ("/shops/{shop}/metrics?grain=fortnight", 400, "grain"),
        ("/shops/{shop}/metrics?start=yesterday", 400, "start"),
        ("/shops/{shop}/segments/lifecycle/new?limit=0", 400, "limit"),
        ("/shops/{shop}/segments/lifecycle/new?offset=-1", 400, "offset"),
        ("/shops/{shop}/segments/no-model/x", 400, "no-model"),  # not a model name
        ("/shops/{shop}/segments/nomodel/x", 404, "nomodel"),  # a name, but no model's
        ("/shops/{shop}/segments/lifecycle/nosuch", 404, "nosuch"),
        ("/shops/{shop}/cohorts?months=many", 400, "months"),
    ],
)
def test_bad_requests_get_clear_errors(
    workers: list[WorkerProcess], simulation: Simulation, path: str, status: int, mentions: str
) -> None:
    for worker in workers:
        got, body = worker.get_json(path.format(shop=shops(simulation)[0]))
        assert got == status, body
        assert mentions in body["detail"]


def definition(shop_id: str, rule: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "shop_id": shop_id,
            "segment_id": "preview",
            "name": "Preview",
            "version": 1,
            "rule": rule,
        }
    ).encode()


def test_any_worker_previews_a_definition_as_the_segment_routes_count(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    """Every shop (so each worker both answers and forwards): a rule on a segment matches
    what the segment routes say, and the customers are the shop's."""
    for shop_id in shops(simulation):
        _, sizes = workers[0].get_json(f"/shops/{shop_id}/segments")
        segment, size = max(sizes["models"]["lifecycle"].items(), key=lambda item: item[1])
        _, page = workers[1].get_json(f"/shops/{shop_id}/segments/lifecycle/{segment}?limit=7")
        body = definition(shop_id, {"field": "segments.lifecycle", "op": "eq", "value": segment})
        path = f"/shops/{shop_id}/definitions/preview?limit=7"
        answers = [w.post_json(path, body) for w in workers]
        assert answers[0] == answers[1]
        status, preview = answers[0]
        assert status == 200, preview
        customers = {e["customer_id"] for e in simulation.events if e["shop_id"] == shop_id}
        assert preview["customers"] == len(customers)
        assert preview["matching"] == size
        assert preview["sample"] == page["customers"]
        assert preview["as_of"] == sizes["as_of"]


def test_bad_previews_get_clear_errors_from_any_worker(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    shop_id = shops(simulation)[0]
    path = f"/shops/{shop_id}/definitions/preview"
    wrong = {"all": [{"field": "plan.interval", "op": "eq", "value": 1}]}
    loyal = {"field": "segments.lifecycle", "op": "eq", "value": "loyal"}
    for worker in workers:
        status, body = worker.post_json(path, definition(shop_id, wrong))
        assert (status, body["error"], body["path"]) == (
            422,
            "invalid_definition",
            "rule/all/0/value",
        )
        assert body["detail"].startswith("rule/all/0/value: ")
        status, body = worker.post_json(path, b"segment: loyal")
        assert (status, body["error"]) == (400, "bad_request") and "not JSON" in body["detail"]
        status, body = worker.post_json(path, definition("another-shop", loyal))
        assert status == 400 and "another-shop" in body["detail"]
        status, body = worker.post_json(path + "?limit=101", definition(shop_id, loyal))
        assert status == 400 and "limit" in body["detail"]
        status, body = worker.post_json(
            "/shops/no-such-shop/definitions/preview", definition("no-such-shop", loyal)
        )
        assert status == 404 and "no-such-shop" in body["detail"]
        status, kind, _ = worker.post(path, b" " * (1024**2 + 1))
        assert (status, kind) == (413, "application/json")  # every error answer is JSON


@pytest.mark.asyncio(loop_scope="session")
async def test_metric_snapshots_arrive_on_the_metrics_topic(
    workers: list[WorkerProcess], settings: Settings, simulation: Simulation
) -> None:
    expected = set(shops(simulation))
    records = await consume_all(
        settings.kafka_bootstrap,
        settings.topic("metrics"),
        until=lambda got: {json.loads(r.value)["shop_id"] for r in got} >= expected,
        timeout_s=30,
    )
    payloads: list[dict[str, Any]] = [json.loads(r.value) for r in records]
    assert {p["shop_id"] for p in payloads} >= expected
    for payload in payloads:
        validate_output("metrics_snapshot", payload)


def test_prometheus_gauges_cover_segments_and_tables(workers: list[WorkerProcess]) -> None:
    time.sleep(3)
    total = sum(w.metric("segstream_segment_customers", model="lifecycle") for w in workers)
    assert total > 0
    assert all(w.metric("segstream_table_entries", table="customers") > 0 for w in workers)


@pytest.mark.asyncio(loop_scope="session")
async def test_segment_flows_equal_a_recount_of_the_change_topic(
    workers: list[WorkerProcess], settings: Settings, simulation: Simulation
) -> None:
    """Every month's flows of every model, from either worker, equal the change topic's
    changes of those days counted by (previous, current)."""
    records = await consume_all(
        settings.kafka_bootstrap, settings.topic("segment_changes"), timeout_s=60
    )
    counted: dict[tuple[str, str, str], dict[tuple[Any, Any], int]] = {}
    seen: set[str] = set()
    for record in records:
        change = json.loads(record.value)
        if change.get("kind") != "segment_changed" or change["event_id"] in seen:
            continue
        seen.add(change["event_id"])
        month = change["changed_at"][:7]
        pairs = counted.setdefault((change["shop_id"], change["model"], month), {})
        pair = (change["previous"], change["current"])
        pairs[pair] = pairs.get(pair, 0) + 1
    assert len(counted) >= 20
    for number, ((shop_id, model, month), pairs) in enumerate(sorted(counted.items())):
        path = f"/shops/{shop_id}/flows?model={model}&grain=month&start={month}-01"
        status, body = workers[number % 2].get_json(path)
        assert status == 200, body
        assert {(f["from"], f["to"]): f["customers"] for f in body["flows"]} == pairs, path


def test_shops_list_every_shop_from_any_worker_and_a_shop_token_its_own(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    expected = shops(simulation)
    answers = [w.get_json("/shops") for w in workers]
    assert answers[0] == answers[1] and answers[0][0] == 200
    listed = answers[0][1]["shops"]
    assert [row["shop_id"] for row in listed] == expected
    for row in listed:
        status, found = workers[1].get_json(f"/shops/{row['shop_id']}/customers?limit=500")
        assert status == 200 and not found["more"]
        assert row["customers"] == len(found["customers"]) > 0
    (shop_token,) = SHOP_TOKENS
    for worker in workers:
        status, own = worker.get_json("/shops", token=shop_token)
        assert status == 200 and [row["shop_id"] for row in own["shops"]] == ["coffee-roaster-1"]
        assert worker.get_json("/shops", token=None)[0] == 401


def test_a_segments_csv_export_holds_every_member_from_any_worker(
    workers: list[WorkerProcess], simulation: Simulation
) -> None:
    shop_id = shops(simulation)[0]
    _, sizes = workers[1].get_json(f"/shops/{shop_id}/segments")
    segment, size = max(sizes["models"]["lifecycle"].items(), key=lambda item: item[1])
    _, page = workers[0].get_json(f"/shops/{shop_id}/segments/lifecycle/{segment}?limit=500")
    path = f"/shops/{shop_id}/segments/lifecycle/{segment}/members.csv?fields=since,p_alive"
    bodies = []
    for worker in workers:  # one answers, the other forwards the stream
        status, kind, body = worker.request("GET", path)
        assert (status, kind) == (200, "text/csv"), body[:200]
        bodies.append(body)
    assert bodies[0] == bodies[1]
    lines = bodies[0].decode().split("\r\n")
    assert lines[0] == "customer_id,since,p_alive" and lines[-1] == ""
    assert [line.split(",")[0] for line in lines[1:-1]] == page["customers"]
    assert len(page["customers"]) == size
    status, kind, refused = workers[0].request("GET", path.replace("p_alive", "nope"))
    assert (status, kind) == (400, "application/json") and b"unknown field" in refused
