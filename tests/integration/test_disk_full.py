"""A full disk under RocksDB: a real worker's state directory is a small tmpfs, a file
fills it mid-stream, and RocksDB's writes fail with ``No space left on device``.

The worker must stop the partitions whose store refused a committed batch (``/ready``
names ``state_store_full`` with the path and free bytes, a gauge and a counter say so),
keep running, lose nothing, and once the file is gone write the held batches, go on by
itself, and end where a run that never filled up ends: in the changelogs, in the change
topic (one unbroken chain per customer and model) and in its own local stores.

A real ``ENOSPC`` needs a filesystem that fills: the test mounts a tmpfs, which needs
root (the CI here runs as root; elsewhere it is skipped, saying so)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import rocksdict

from harness.kafka_io import settled
from harness.workers import WorkerProcess, isolated_settings, until
from segstream.domain.events import parse_time
from segstream.settings import Settings
from segstream.stream.tables import CODECS
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate
from tests.integration.test_recovery import comparable, reference_tables, wait_until_equal
from tests.integration.ticks import tick_orders

pytestmark = pytest.mark.asyncio(loop_scope="session")
TMPFS_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` (unmounted at the end)."""
    if os.geteuid() != 0:
        pytest.skip("a real ENOSPC needs a tmpfs, and mounting one needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of ``directory``'s filesystem."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 4096, 1):  # down to the last byte of the last page
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free == 0
    return filler


def ready_state(worker: WorkerProcess) -> dict[str, Any]:
    worker.assert_running()
    status, body = worker.get_json("/ready")
    assert isinstance(body, dict), (status, body)
    return body


def full_stalls(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in state["stalled"] if s["reason"].startswith("state_store_full: ")]


def local_customers(data_dir: Path) -> dict[str, Any]:
    """The customers table as the worker's own RocksDB stores hold it (read-only)."""
    found: dict[str, Any] = {}
    databases = sorted(data_dir.glob("**/*customers*.db"))
    assert databases, f"no customers store under {data_dir}"
    for path in databases:
        options = rocksdict.Options(raw_mode=True)
        db = rocksdict.Rdict(str(path), options, access_type=rocksdict.AccessType.read_only())
        try:
            for key, raw in db.items():
                assert isinstance(key, bytes) and isinstance(raw, bytes)  # raw mode
                if not key.startswith(b"__faust"):
                    name = key.decode()
                    found[name] = CODECS["customers"].decode(name, raw).to_json()
        finally:
            db.close()
    return found


async def fill_mid_stream(
    settings: Settings, worker: WorkerProcess, outbox: list[Any], state_dir: Path
) -> tuple[Path, dict[str, Any]]:
    """Start ``worker``, fold the first half of ``outbox``, fill its disk, send the rest:
    the filler file and the ``/ready`` state once a partition stalled on it."""
    worker.start()
    worker.wait_ready()
    half = len(outbox) // 2
    await publish(outbox[:half], settings)
    facts = reference_tables(outbox[:half], settings)
    await wait_until_equal(settings, facts, worker, facts_only=True, timeout_s=40)
    filler = fill(state_dir)
    await publish(outbox[half:], settings)
    stopped = until(
        lambda: ready_state(worker),
        lambda state: not state["ready"] and bool(full_stalls(state)),
        "a partition stalled with state_store_full",
        limit=20,
    )
    return filler, stopped


async def heals(
    settings: Settings,
    worker: WorkerProcess,
    filler: Path,
    outbox: list[Any],
    ticks: list[Any],
    within_s: tuple[float, float],
) -> dict[str, Any]:
    """Free the disk: ``worker`` is ready again by itself (within the first limit), and
    after the ``ticks`` ends where an uninterrupted run ends (within the second), every
    change chain unbroken. The expected tables."""
    filler.unlink()
    until(lambda: ready_state(worker), lambda state: state["ready"], "ready again", within_s[0])
    await publish(ticks, settings)
    expected = reference_tables(outbox + ticks, settings)
    table = await wait_until_equal(settings, expected, worker, timeout_s=within_s[1])
    await assert_changes_chain(settings, table)
    return expected


async def assert_changes_chain(settings: Settings, table: dict[str, Any]) -> None:
    """Every customer's changes per model follow each other (a batch committed twice would
    repeat one) and end at the table's segment."""
    records = await settled(settings.kafka_bootstrap, settings.topic("segment_changes"))
    history: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        change = json.loads(record.value)
        if change["kind"] == "segment_changed":
            history[(change["shop_id"], change["customer_id"], change["model"])].append(change)
    assert history
    for (shop_id, customer_id, model), chain in history.items():
        chain.sort(key=lambda c: parse_time(c["changed_at"]))
        for before, after in itertools.pairwise(chain):
            assert after["previous"] == before["current"], (shop_id, customer_id, model)
        assert chain[-1]["current"] == table[f"{shop_id}/{customer_id}"]["segments"].get(model)


async def test_a_full_state_directory_stops_partitions_and_recovers_once_space_is_back(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, "diskfull")
    await ensure_topics(settings)
    simulation = generate(
        SimulationConfig(seed=29, shops_per_kind=1, customers_per_shop=15, days=200)
    )
    outbox = simulation.outbox()
    ticks = tick_orders(outbox, timedelta(days=2), "last")
    with tmpfs(tmp_path / "state", TMPFS_BYTES) as state_dir:
        worker = WorkerProcess.for_settings(
            settings, state_dir, extra_env={"SEGSTREAM_STALL_RETRY_MAX_S": "5"}
        )
        try:
            filler, stopped = await fill_mid_stream(settings, worker, outbox, state_dir)
            reason = full_stalls(stopped)[0]["reason"]
            assert str(state_dir) in reason and " bytes free: " in reason, reason
            assert worker.metric("segstream_state_store_behind_partitions") >= 1
            assert worker.metric("segstream_state_store_write_failures_total") >= 1
            assert "Traceback" not in worker.log_path.read_text(errors="replace")

            expected = await heals(settings, worker, filler, outbox, ticks, (25, 30))
            assert worker.metric("segstream_state_store_behind_partitions") == 0
        finally:
            worker.stop()
        assert "Traceback" not in worker.log_path.read_text(errors="replace")
        local = local_customers(state_dir)
        assert {k: comparable(v) for k, v in local.items()} == {
            k: comparable(v) for k, v in expected.items()
        }


async def test_a_rebalance_while_the_disk_is_full_stops_partitions_not_the_worker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A second worker joins and leaves while the first one's disk is full: the first one
    gives partitions away, keeps some (whose recovery writes into the full store) and takes
    back partitions whose stores it cannot even open. Faust let either end the worker. Now
    those partitions stop (unrecovered), and once the disk has room the worker rejoins
    its group, recovers them from the changelog and ends where an uninterrupted run ends."""
    settings = isolated_settings(kafka_bootstrap, "diskfullrb")
    await ensure_topics(settings)
    config = SimulationConfig(seed=31, shops_per_kind=1, customers_per_shop=15, days=200)
    simulation = generate(config)
    outbox = simulation.outbox()
    ticks = tick_orders(outbox, timedelta(days=2), "last")
    env = {"SEGSTREAM_STALL_RETRY_MAX_S": "5"}
    with tmpfs(tmp_path / "state", TMPFS_BYTES) as state_dir:
        full = WorkerProcess.for_settings(settings, state_dir, extra_env=env)
        other = WorkerProcess.for_settings(settings, tmp_path / "other", extra_env=env)
        try:
            filler, _ = await fill_mid_stream(settings, full, outbox, state_dir)
            other.start()
            other.wait_ready()
            other.stop()  # every partition goes back to the worker on the full disk
            # The partitions it took back cannot be opened: their recovery stops them.
            until(
                lambda: full.log_path.read_text(),
                lambda log: "state_store_unopened" in log,
                "a store that cannot be opened",
                limit=40,
            )
            stopped = until(
                lambda: ready_state(full),
                lambda state: (
                    not state["rebalancing"]
                    and not state["recovering"]
                    and len(full_stalls(state)) >= 2
                ),
                "partitions stopped, none processed on a store behind its changelog",
                limit=40,
            )
            assert not stopped["ready"] and len(stopped["stalled"]) == len(full_stalls(stopped))
            assert full.metric("segstream_state_store_behind_partitions") >= 2
            answers = [
                full.get_json(f"/shops/{shop.shop_id}/segments") for shop in config.shop_list()
            ]
            assert {status for status, _ in answers} <= {200, 503}, answers
            refused = [body for status, body in answers if status == 503]
            assert refused and all("disk refused" in body["detail"] for body in refused), answers
            assert "Traceback" not in full.log_path.read_text(errors="replace")

            expected = await heals(settings, full, filler, outbox, ticks, (60, 60))
        finally:
            other.stop()
            full.stop()
        assert "Traceback" not in full.log_path.read_text(errors="replace")
        log = full.log_path.read_text(errors="replace")
        assert '"state_store_recovering"' in log and '"rejoining_group"' in log
        local = local_customers(state_dir)
        assert {k: comparable(v) for k, v in local.items()} == {
            k: comparable(v) for k, v in expected.items()
        }
