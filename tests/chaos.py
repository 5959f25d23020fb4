"""The chaos run: real workers on a real broker, faults at random moments, then the books.

``python -m tests.chaos --seed 7`` (``make chaos``) streams a simulated history of many
shops (duplicates and bad records mixed in) into several worker processes while it
SIGKILLs workers (some come back on an empty data directory: a fresh worker takes over
from the changelogs alone), lets workers join and leave (rebalances), and stops and
starts the broker. When everything is consumed it checks, against an uninterrupted
in-process run over the same records and an independent pandas computation:

- **facts**: every field of every customer's state in the committed customers table;
- **changes**: read with ``read_committed``, each customer's changes per model form an
  unbroken chain (``previous`` is the last ``current``) ending at the table's segment,
  and no change appears twice;
- **accounting**: per input topic, records in = processed + duplicates + dead-lettered
  (from the partitions' committed progress records), and the dead-letter topic holds
  exactly the bad records, byte for byte;
- **metrics**: every month window of every shop equals the pandas oracle;
- **defined segments**: each shop defines a segment a third into the run and replaces it
  two thirds in (both re-evaluations meet the faults); at the end each customer is in it
  exactly when its rule holds for their committed facts; each shop also defines "no
  purchase for 30 days", and each customer is in it exactly when that holds at the shop's
  stream time (its own reviews, not only events, moved them);
- **experiments**: each shop runs an experiment on its active customers from the start;
  at the end each arm's figures (members, churned, orders, revenue and its squares) in
  the shops table equal the sums of the enrolments its customers' states hold (two tables
  written in one transaction: a replay that counted twice, or half a write, shows here);
- **journey**: the history has touchpoints and prospects; each shop's journey funnel in
  the shops table equals the funnel recounted from its customers' committed states.

It ends with one line (``chaos: 12 kills, 3 rebalances, 1 broker restart; 24,000 events;
lost 0, duplicated 0, facts 0 diff, ...``) and exits 1 when any figure is not zero. The
seed decides the history and every fault's kind and moment: ``--seed N`` with the same
options runs the same history with the same faults again (the workers' timing varies).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from harness.broker import Broker, BrokerCluster, fresh_broker, fresh_cluster
from harness.faultproxy import CutMode
from harness.kafka_io import consume_all, produce_json, read_table
from harness.network import WorkerNetwork, worker_network
from harness.releases import extract_release
from harness.stores import feed
from harness.workers import SESSION_TIMEOUT_S, WorkerProcess, isolated_settings
from segstream.domain.contracts import EVENT_TYPES
from segstream.engine.pipeline import DEFINITION, Pipeline
from segstream.experiments import Arm, arm_of
from segstream.metrics.journey import ShopFunnel, recount
from segstream.metrics.ledger import MetricsLedger
from segstream.settings import DEFINITIONS_ROLE, Settings
from segstream.state.keyspace import (
    definitions_key,
    experiments_key,
    funnel_key,
    progress_key,
    shop_of,
    shop_partition,
)
from segstream.stream.lag import LagProbe
from segstream.stream.topics import ensure_topics, input_topics
from segstream.tools.publish import Partitioner, Record, librdkafka_partitioner, publish
from segstream.tools.simulation.generator import Simulation, SimulationConfig, generate
from tests.metrics_oracle import MetricsOracle

WORKER_ENV = {
    # A replay delivers months of event time in seconds over three independently consumed
    # topics: allow the whole span as lateness, as a backfill should.
    "SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS": "400",
    "SEGSTREAM_METRICS_RETENTION_DAYS": "800",
    "SEGSTREAM_METRICS_SNAPSHOT_INTERVAL_S": "5",
}
EVENTS_PER_CUSTOMER_YEAR = 11.0
"""About how many records the simulator makes per customer and simulated year."""


@dataclass(frozen=True)
class ChaosConfig:
    """How big the history is and which faults hit it."""

    seed: int = 1
    events: int = 20_000
    workers: int = 3
    kills: int = 10
    fresh_takeovers: int = 2
    """Of the kills, how many restart the worker on an empty data directory."""
    rebalances: int = 3
    broker_restarts: int = 1
    rate: float = 200.0
    """Records per second published (the faults are spread over the publishing time)."""
    port: int = 29392
    partitions: int = 8
    standby_replicas: int = 0
    work_dir: Path = Path("var/chaos")
    timeout_s: float = 900.0
    cluster: bool = False
    """Three brokers (replication 3, min.insync.replicas 2); a broker restart is then one
    node SIGKILLed mid-stream and started again."""
    librdkafka_share: float = 0.5
    """Share of the shops whose events are published with librdkafka's default partitioner
    (CRC32, as kcat and confluent-kafka do): those outside their shop's partition take the
    repartition topic's detour, under the same faults."""
    upgrade_from: str = ""
    """A release's git tag (``v0.1.0``): the workers start on that release's code and are
    upgraded one at a time mid-run (a rolling upgrade: old and new side by side, then
    only new); empty: every worker runs this checkout."""
    latency_spikes: int = 0
    """Network faults (any of these four puts every worker behind a fault proxy of its
    own, single broker only): a few seconds of added latency with jitter on every worker's
    connections."""
    bandwidth_limits: int = 0
    """A few seconds of every worker's connections paced to tens of kB/s."""
    resets: int = 0
    """Every worker's broker connections reset (TCP RST) at once."""
    cutoffs: int = 0
    """One worker cut off from the broker for longer than its session timeout, then back:
    the group goes on without it, and what it sends late must never land."""

    @property
    def networked(self) -> bool:
        """Whether the workers reach the broker through fault proxies."""
        return bool(self.latency_spikes or self.bandwidth_limits or self.resets or self.cutoffs)

    def command(self) -> str:
        """The ``make chaos`` command that runs this configuration again (same history,
        same faults at the same moments)."""
        options = {name: getattr(self, name) for name in CLI_OPTIONS}
        flags = " ".join(
            f"--{name.replace('_', '-')} {value}" for name, value in options.items() if value != ""
        )
        return f'make chaos CHAOS_ARGS="{flags}{" --cluster" if self.cluster else ""}"'


CLI_OPTIONS = (
    "seed",
    "events",
    "workers",
    "kills",
    "fresh_takeovers",
    "rebalances",
    "broker_restarts",
    "rate",
    "port",
    "standby_replicas",
    "librdkafka_share",
    "upgrade_from",
    "latency_spikes",
    "bandwidth_limits",
    "resets",
    "cutoffs",
)
"""The configuration's fields the command line sets (``--cluster`` aside)."""


@dataclass
class Faults:
    """What was done to the system, as it happened."""

    kills: int = 0
    fresh_takeovers: int = 0
    joins: int = 0
    leaves: int = 0
    broker_restarts: int = 0
    upgrades: int = 0
    upgrade_from: str = ""
    not_old: int = 0
    """Workers of the old release that served another API document than the release's:
    they were not running its code."""
    latency_spikes: int = 0
    bandwidth_limits: int = 0
    resets: int = 0
    cutoffs: int = 0
    dropped: int = 0
    """Cut-off workers whose log shows they lost their group session (see
    :data:`DROPPED`): the cut did what it is for."""
    networked: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def rebalances(self) -> int:
        return self.joins + self.leaves


@dataclass
class Report:
    """The figures the run ends with (every count but ``events`` must be zero)."""

    events: int
    faults: Faults
    lost: int = 0
    duplicated: int = 0
    facts_diff: int = 0
    accounting_diff: int = 0
    dead_letters_diff: int = 0
    metrics_diff: int = 0
    defined_diff: int = 0
    experiments_diff: int = 0
    journey_diff: int = 0
    old_left: int = 0
    """Workers still on the old release at the end of a rolling upgrade."""
    rerouted: int = 0
    """Records that landed outside their shop's partition and took the detour (not a fault)."""
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.facts_diff
            or self.accounting_diff
            or self.dead_letters_diff
            or self.metrics_diff
            or self.defined_diff
            or self.experiments_diff
            or self.journey_diff
            or self.old_left
            or self.faults.not_old
            or self.faults.dropped != self.faults.cutoffs
        )

    def line(self) -> str:
        f = self.faults
        return (
            f"chaos: {f.kills} kills ({f.fresh_takeovers} on an empty store), "
            f"{f.rebalances} rebalances, {f.broker_restarts} broker restart"
            f"{'' if f.broker_restarts == 1 else 's'}{self._upgrades()}{self._network()}; "
            f"{self.events:,} events "
            f"({self.rerouted:,} rerouted); "
            f"lost {self.lost}, duplicated {self.duplicated}, facts {self.facts_diff} diff, "
            f"accounting {self.accounting_diff} diff, dead letters {self.dead_letters_diff} "
            f"diff, metrics {self.metrics_diff} diff, defined segments {self.defined_diff} "
            f"diff, experiments {self.experiments_diff} diff, journey {self.journey_diff} diff "
            f"({self.seconds:.0f} s)"
        )

    def _network(self) -> str:
        """The network faults' part of the line (none without a proxied network)."""
        f = self.faults
        if not f.networked:
            return ""
        return (
            f", {f.latency_spikes} latency spikes, {f.bandwidth_limits} bandwidth limits, "
            f"{f.resets} connection resets, {f.cutoffs} workers cut off ({f.dropped} lost their "
            f"session)"
        )

    def _upgrades(self) -> str:
        """The rolling upgrade's part of the line (none without one)."""
        f = self.faults
        if not f.upgrade_from:
            return ""
        return (
            f", {f.upgrades} upgraded from {f.upgrade_from} ({f.not_old} not running it, "
            f"{self.old_left} left on it)"
        )


def simulation(config: ChaosConfig) -> Simulation:
    """A history of about ``config.events`` records over twelve shops and half a year."""
    customers = max(10, round(config.events / (12 * EVENTS_PER_CUSTOMER_YEAR * 0.5)))
    return generate(
        SimulationConfig(
            seed=config.seed,
            shops_per_kind=2,
            customers_per_shop=customers,
            start=date(2025, 3, 1),
            days=182,
            duplicate_ratio=0.02,
            out_of_order_ratio=0.02,
            invalid_ratio=0.01,
            touchpoints=True,
        )
    )


class Cluster:
    """The running workers of one app, and the faults done to them and the broker."""

    def __init__(
        self,
        config: ChaosConfig,
        settings: Settings,
        broker: Broker | BrokerCluster,
        network: WorkerNetwork | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.broker = broker
        self.network = network
        self.rng = random.Random(config.seed)
        self.workers: list[WorkerProcess] = []
        self.faults = Faults(upgrade_from=config.upgrade_from, networked=network is not None)
        self.spared: dict[str, float] = {}
        """Workers not to kill or stop until a moment (a cut-off one, until the group has
        dropped it and it is back: killed mid-cut, it would prove nothing)."""
        self._names = 0
        self.release: Path | None = None
        """The old release's ``service/`` folder during a rolling upgrade."""
        self.upgrading = False
        """Whether the rolling upgrade began: workers that join run the new code."""

    def _new(
        self, fresh: bool = False, name: str | None = None, old: bool | None = None
    ) -> WorkerProcess:
        """A worker started on ``name``'s data directory (a new one when None or
        ``fresh``), on the old release when ``old`` (None: while the upgrade has not
        begun and there is an old release)."""
        if name is None or fresh:
            self._names += 1
            name = f"w{self._names}"
        env = {**WORKER_ENV, "SEGSTREAM_TABLE_STANDBY_REPLICAS": str(self.config.standby_replicas)}
        if old is None:
            old = not self.upgrading
        if old and self.release is not None:
            env["PYTHONPATH"] = str(self.release)
        if self.network is not None:
            env["SEGSTREAM_KAFKA_BOOTSTRAP"] = self.network.take(name)
        worker = WorkerProcess.for_settings(self.settings, self.config.work_dir / name, env)
        worker.start()
        return worker

    def is_old(self, worker: WorkerProcess) -> bool:
        """Whether ``worker`` runs the old release."""
        return "PYTHONPATH" in worker.extra_env

    def upgrade(self, every: bool) -> None:
        """Stop one worker of the old release (all of them when ``every``), as a rolling
        restart does (SIGTERM), and start the new code on its data directory."""
        self.upgrading = True
        old = [worker for worker in self.workers if self.is_old(worker)]
        if old and not every:
            old = [self.rng.choice(old)]
        for worker in old:
            served = self.served_api(worker)
            self.retire(worker, kill=False)
            self.workers.append(self._new(name=worker.data_dir.name, old=False))
            self.faults.upgrades += 1
            self.faults.not_old += served == "another"
            self.note(f"upgraded {worker.data_dir.name} (it served {served} API) to this checkout")

    def served_api(self, worker: WorkerProcess) -> str:
        """Which API document the worker serves: ``the old release's`` (the proof that it
        runs the old code, when the documents differ), ``another``, or ``no`` (it did
        not answer: still starting)."""
        assert self.release is not None
        try:
            status, _, body = worker.request("GET", "/openapi.json", token=None)
        except OSError:  # refused, reset or timed out: not serving yet
            return "no"
        wanted = (self.release.parent / "deploy" / "openapi.json").read_bytes()
        return "the old release's" if status == 200 and body == wanted else "another"

    def start(self) -> None:
        self.workers = [self._new() for _ in range(self.config.workers)]
        for worker in self.workers:
            worker.wait_ready(timeout_s=180)

    def note(self, what: str) -> None:
        self.faults.log.append(f"{time.strftime('%H:%M:%S')} {what}")
        print(f"chaos: {what}", file=sys.stderr, flush=True)

    async def kill(self, fresh: bool) -> None:
        """SIGKILL a worker; start a replacement (same data directory, or an empty one)."""
        victim = await self.pick()
        self.retire(victim, kill=True)
        self.faults.kills += 1
        self.faults.fresh_takeovers += int(fresh)
        self.note(
            f"killed {victim.data_dir.name}{' (replaced on an empty store)' if fresh else ''}"
        )
        await asyncio.sleep(self.rng.uniform(0.0, 3.0))
        name = None if fresh else victim.data_dir.name
        self.workers.append(self._new(fresh, name, old=self.is_old(victim)))

    def join(self) -> None:
        self.workers.append(self._new(fresh=True))
        self.faults.joins += 1
        self.note(f"joined {self.workers[-1].data_dir.name}")

    async def leave(self) -> None:
        leaver = await self.pick()
        self.retire(leaver, kill=False)
        self.faults.leaves += 1
        self.note(f"left {leaver.data_dir.name}")

    def expendable(self) -> list[WorkerProcess]:
        """The workers a kill, a leave or a cut may pick: those not spared."""
        now = time.monotonic()
        return [w for w in self.workers if self.spared.get(w.data_dir.name, 0.0) < now]

    async def pick(self) -> WorkerProcess:
        """A worker a kill or a leave may take; when every one is spared, the fault waits
        until one is not (a cut-off worker killed mid-cut would prove nothing)."""
        while not (free := self.expendable()):
            await asyncio.sleep(0.5)
        return self.rng.choice(free)

    async def unspared(self) -> None:
        """Until no worker is spared (see :attr:`spared`)."""
        while any(until > time.monotonic() for until in self.spared.values()):
            await asyncio.sleep(0.5)

    def retire(self, worker: WorkerProcess, kill: bool) -> None:
        """SIGKILL or stop ``worker``, forget it and free its network slot."""
        if kill:
            worker.kill()
        else:
            worker.stop()
        self.workers.remove(worker)
        if self.network is not None:
            self.network.give_back(worker.data_dir.name)

    async def restart_broker(self) -> None:
        if isinstance(self.broker, BrokerCluster):
            node = self.rng.choice(self.broker.brokers)
            node.kill()
            self.note(f"broker {node.port} killed")
            await asyncio.sleep(self.rng.uniform(2.0, 6.0))
            await asyncio.to_thread(node.start)
            self.faults.broker_restarts += 1
            self.note(f"broker {node.port} started")
            return
        self.broker.stop()
        self.note("broker stopped")
        await asyncio.sleep(self.rng.uniform(2.0, 6.0))
        self.broker.start()
        self.faults.broker_restarts += 1
        self.note("broker started")

    def stop(self) -> None:
        for worker in list(self.workers):
            self.retire(worker, kill=False)

    def check_running(self) -> None:
        for worker in self.workers:
            worker.assert_running()


DROPPED = (
    "Heartbeat session expired",
    "member_id was not recognized",
    "generation id is not",
    "partition_fenced",
    "ProducerFenced",
)
"""What a worker's log shows when it lost its group session: it saw none of its heartbeats
answered for a session timeout (aiokafka's own words), the group went on without it
(heartbeat refused) or its producer was fenced."""


class NetworkChaos:
    """The network faults of one run, on the cluster's :class:`WorkerNetwork`."""

    def __init__(self, cluster: Cluster, network: WorkerNetwork) -> None:
        self.cluster = cluster
        self.network = network
        self.rng = cluster.rng
        self.endings: list[asyncio.Task[None]] = []
        """The tasks ending timed faults and watching cut-off workers (the run awaits them)."""
        self.latest: Counter[str] = Counter()
        """The number of the latest latency and bandwidth fault: an earlier one's end does
        not lift a later one still due to run."""

    def later(self, seconds: float, kind: str, what: str, end: Callable[[], None]) -> None:
        """End the latest fault of ``kind`` after ``seconds``, unless a newer one began."""
        self.latest[kind] += 1
        number = self.latest[kind]

        async def ending() -> None:
            await asyncio.sleep(seconds)
            if self.latest[kind] == number:
                end()
                self.cluster.note(what)

        self.endings.append(asyncio.create_task(ending()))

    def latency_spike(self) -> None:
        fixed, jitter = self.rng.uniform(0.1, 0.6), self.rng.uniform(0.0, 0.3)
        seconds = self.rng.uniform(3.0, 10.0)
        self.network.latency(fixed, jitter)
        self.cluster.faults.latency_spikes += 1
        self.cluster.note(f"latency {fixed:.2f} s + up to {jitter:.2f} s for {seconds:.0f} s")
        self.later(seconds, "latency", "latency over", lambda: self.network.latency(0.0))

    def bandwidth_limit(self) -> None:
        rate, seconds = self.rng.uniform(20_000, 100_000), self.rng.uniform(3.0, 10.0)
        self.network.bandwidth(rate)
        self.cluster.faults.bandwidth_limits += 1
        self.cluster.note(f"bandwidth {rate / 1000:.0f} kB/s for {seconds:.0f} s")
        end = lambda: self.network.bandwidth(None)  # noqa: E731
        self.later(seconds, "bandwidth", "bandwidth unlimited", end)

    def reset(self) -> None:
        self.network.reset()
        self.cluster.faults.resets += 1
        self.cluster.note("every worker connection reset")

    async def cut_off(self) -> None:
        """One worker cut off (its bytes held, or its connections refused) for 3 to 8 s
        longer than its session timeout. The victim is a member of the group (ready: a
        worker still starting has no session to lose); no kill, leave, upgrade or broker
        restart touches it until :data:`DROP_WAIT_S` after it is back, and only what its log
        says in that window counts (:meth:`watch`). No member within
        :data:`MEMBER_WAIT_S`: no cut (the line's count says so)."""
        members = await self.members()
        if not members:
            self.cluster.note("no worker in the group to cut off")
            return
        victim = self.rng.choice(members)
        name = victim.data_dir.name
        mode: CutMode = "stall" if self.cluster.faults.cutoffs % 2 == 0 else "refuse"
        seconds = SESSION_TIMEOUT_S + self.rng.uniform(3.0, 8.0)
        size = victim.log_path.stat().st_size if victim.log_path.exists() else 0
        self.network.cut(name, seconds, mode)
        until = time.monotonic() + seconds + DROP_WAIT_S
        self.cluster.spared[name] = until
        self.cluster.faults.cutoffs += 1
        self.cluster.note(f"cut {name} off ({mode}) for {seconds:.0f} s")
        self.endings.append(asyncio.create_task(self.watch(victim, size, until)))

    async def members(self) -> list[WorkerProcess]:
        """The workers a cut may take: not spared, and ready."""
        deadline = time.monotonic() + MEMBER_WAIT_S
        while time.monotonic() < deadline:
            free = self.cluster.expendable()
            ready = [w for w in free if await asyncio.to_thread(w.ready)]
            if ready:
                return ready
            await asyncio.sleep(0.5)
        return []

    async def watch(self, worker: WorkerProcess, since: int, until: float) -> None:
        """Count the cut-off ``worker`` as dropped when its log, from the cut on, shows it
        lost its session before ``until`` (later lines belong to other faults)."""
        while time.monotonic() < until:
            if _dropped(worker, since):
                self.cluster.faults.dropped += 1
                return
            await asyncio.sleep(0.5)
        self.cluster.note(f"{worker.data_dir.name}'s log shows no lost session after its cut")

    async def settle(self) -> None:
        """Every timed fault ended and every cut-off worker watched."""
        await asyncio.gather(*self.endings)


DROP_WAIT_S = 20.0
"""Seconds after a cut heals within which the worker's log must show its lost session."""
MEMBER_WAIT_S = 60.0


def _dropped(worker: WorkerProcess, since: int) -> bool:
    """Whether ``worker``'s log shows a drop from its group after byte ``since``."""
    with worker.log_path.open("rb") as log:
        log.seek(since)
        after = log.read().decode(errors="replace")
    return any(mark in after for mark in DROPPED)


NETWORK_KINDS = ("latency", "bandwidth", "reset", "cutoff")


def fault_plan(config: ChaosConfig, span_s: float, rng: random.Random) -> list[tuple[float, str]]:
    """Every fault with its moment in seconds after publishing starts (sorted)."""
    kinds = ["kill"] * (config.kills - config.fresh_takeovers) + ["fresh"] * config.fresh_takeovers
    kinds += ["join" if n % 2 == 0 else "leave" for n in range(config.rebalances)]
    kinds += ["broker"] * config.broker_restarts
    kinds += ["latency"] * config.latency_spikes + ["bandwidth"] * config.bandwidth_limits
    kinds += ["reset"] * config.resets + ["cutoff"] * config.cutoffs
    plan = [(rng.uniform(0.05, 0.95) * span_s, kind) for kind in kinds]
    return sorted(plan + upgrade_plan(config, span_s))


def upgrade_plan(config: ChaosConfig, span_s: float) -> list[tuple[float, str]]:
    """A rolling upgrade's steps (none without ``upgrade_from``), one per worker, evenly
    from 30 % to 70 % of the publishing time, the last one upgrading every worker still
    old: old and new side by side, then only new for the last third. No random draw, so
    the other faults keep their moments."""
    if not config.upgrade_from:
        return []
    steps = max(1, config.workers)
    moments = [0.3 + 0.4 * n / max(1, steps - 1) for n in range(steps)]
    kinds = ["upgrade"] * (steps - 1) + ["upgrade-all"]
    return [(moment * span_s, kind) for moment, kind in zip(moments, kinds, strict=True)]


async def inject(cluster: Cluster, plan: list[tuple[float, str]], started: float) -> None:
    network = None if cluster.network is None else NetworkChaos(cluster, cluster.network)
    for moment, kind in plan:
        await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
        if kind in NETWORK_KINDS:
            assert network is not None, "network faults need a proxied network"
            await network_fault(network, kind)
        elif kind in ("kill", "fresh"):
            await cluster.kill(fresh=kind == "fresh")
        elif kind == "join":
            cluster.join()
        elif kind == "leave" and len(cluster.workers) > 1:
            await cluster.leave()
        elif kind == "broker":
            await cluster.unspared()  # a cut's window is the cut's alone
            await cluster.restart_broker()
        elif kind in ("upgrade", "upgrade-all"):
            cluster.upgrade(every=kind == "upgrade-all")
    if network is not None:
        await network.settle()


async def network_fault(network: NetworkChaos, kind: str) -> None:
    if kind == "latency":
        network.latency_spike()
    elif kind == "bandwidth":
        network.bandwidth_limit()
    elif kind == "reset":
        network.reset()
    else:
        await network.cut_off()


async def drained(settings: Settings, cluster: Cluster, timeout_s: float) -> None:
    """Until the group's committed offsets reach the end of every input topic."""
    probe = LagProbe.from_settings(settings, input_topics(settings))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            cluster.check_running()
            try:
                lag = await probe.measure()
            except Exception as error:  # the broker may still be coming back
                lag = {("?", -1): 1}
                print(f"chaos: lag probe failed: {error!r}", file=sys.stderr)
            if lag and sum(lag.values()) == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(stuck(cluster, lag, timeout_s))
            await asyncio.sleep(1.0)
    finally:
        await probe.stop()


def stuck(cluster: Cluster, lag: Mapping[tuple[str, int], int], timeout_s: float) -> str:
    """Why the input did not drain: the partitions behind and every worker's last warnings."""
    behind = ", ".join(f"{topic}[{partition}] {n}" for (topic, partition), n in lag.items() if n)
    tails = [f"--- {w.data_dir.name} {readiness(w)}\n{w.log_notable(60)}" for w in cluster.workers]
    return "\n".join([f"lag {sum(lag.values())} after {timeout_s} s: {behind}", *tails])


def readiness(worker: WorkerProcess) -> str:
    """What the worker's ``/ready`` says (its partitions, recovery, stalls), or why not."""
    try:
        return json.dumps(worker.get_json("/ready"))
    except Exception as error:  # the diagnosis of a stuck run must not fail itself
        return f"/ready unanswered: {error!r}"


# ---------------------------------------------------------------- shop-defined segments

DEFINED = "urban-repeat"
"""Each shop defines "urban customers with at least N orders" a third into the run (N = 2)
and replaces it two thirds in (N = 3): both re-evaluations meet the faults."""


def definition(shop_id: str, version: int, orders: int) -> bytes:
    rule = {
        "all": [
            {"field": "attributes.location_type", "op": "eq", "value": "urban"},
            {"field": "behaviour.order_count", "op": "gte", "value": orders},
        ]
    }
    payload = {
        "schema_version": 1,
        "shop_id": shop_id,
        "segment_id": DEFINED,
        "name": "Urban repeat buyers",
        "version": version,
        "rule": rule,
    }
    return json.dumps(payload).encode()


QUIET = "quiet-30"
QUIET_DAYS = 30
"""Each shop also defines "no purchase for 30 days" a third into the run: a rule over time,
which moves quiet customers by its own reviews while workers die and partitions move."""


def quiet_definition(shop_id: str) -> bytes:
    rule = {"field": "behaviour.days_since_last_purchase", "op": "gte", "value": QUIET_DAYS}
    payload = {
        "schema_version": 1,
        "shop_id": shop_id,
        "segment_id": QUIET,
        "name": "No purchase for 30 days",
        "version": 1,
        "rule": rule,
    }
    return json.dumps(payload).encode()


async def define_during(settings: Settings, shops: Sequence[str], span_s: float) -> None:
    """Publish each shop's definitions a third into the run, the replacement at two thirds."""
    for version, orders in ((1, 2), (2, 3)):
        await asyncio.sleep(span_s / 3)
        for shop_id in shops:
            records = [(f"{shop_id}|{DEFINED}", definition(shop_id, version, orders))]
            if version == 1:
                records.append((f"{shop_id}|{QUIET}", quiet_definition(shop_id)))
            await produce_json(
                settings.kafka_bootstrap,
                settings.topic(DEFINITIONS_ROLE),
                records,
                partition=shop_partition(shop_id, settings.topic_partitions),
            )


async def reevaluated(settings: Settings, shops: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """The shops table once every shop's definition is at version 2 and re-evaluated."""
    deadline = time.monotonic() + timeout_s
    while True:
        table = await read_table(settings, "shops", timeout_s=120)
        records = [table.get(definitions_key(shop_id)) for shop_id in shops]
        if all(r is not None and not r["pending"] and _version(r) == 2 for r in records):
            return table
        if time.monotonic() > deadline:
            raise TimeoutError(f"definitions not re-evaluated after {timeout_s} s: {records}")
        await asyncio.sleep(1.0)


def _version(record: dict[str, Any]) -> int | None:
    found = record["definitions"].get(DEFINED)
    return None if found is None else int(found["version"])


def check_defined(report: Report, table: dict[str, Any], shops: dict[str, Any]) -> None:
    """Membership of the replaced definition equals its rule over each customer's facts,
    and membership of the quiet one its rule at the shop's stream time: a quiet customer
    was reviewed when their rule turned, not only when they sent something."""
    model, quiet = f"defined:{DEFINED}", f"defined:{QUIET}"
    if not any(quiet in state["segments"] for state in table.values()):
        report.defined_diff += 1  # a check of nobody checks nothing
        report.details.append(f"no customer is in {quiet}")
    for name, state in table.items():
        inside = state["attributes"].get("location_type") == "urban" and state["order_count"] >= 3
        _compare(report, name, state, model, DEFINED if inside else None)
        today = datetime.fromtimestamp(shops[shop_of(name)]["stream_time"], UTC).date()
        bought = [date.fromisoformat(day) for day in state.get("purchase_days", {})]
        still = not bought or (today - max(bought)).days < QUIET_DAYS
        _compare(report, name, state, quiet, None if still else QUIET)


def _compare(
    report: Report, name: str, state: dict[str, Any], model: str, wanted: str | None
) -> None:
    if state["segments"].get(model) != wanted:
        report.defined_diff += 1
        if len(report.details) < 20:
            report.details.append(f"{name} {model}: {state['segments'].get(model)}")


# ---------------------------------------------------------------- experiments

EXPERIMENT = "chaos-split"
EXPERIMENT_ARMS = (Arm("holdout", 0.25), Arm("treatment", 0.75))


async def start_experiments(settings: Settings, shops: Sequence[str]) -> None:
    """Each shop's experiment on its active customers, before any event."""
    for shop_id in shops:
        payload = {
            "schema_version": 1,
            "shop_id": shop_id,
            "experiment_id": EXPERIMENT,
            "name": "Chaos split",
            "version": 1,
            "model": "lifecycle",
            "segment": "active",
            "arms": [{"name": arm.name, "share": arm.share} for arm in EXPERIMENT_ARMS],
            "starts_at": "2000-01-01T00:00:00Z",
        }
        await produce_json(
            settings.kafka_bootstrap,
            settings.topic(DEFINITIONS_ROLE),
            [(f"{shop_id}|experiment:{EXPERIMENT}", json.dumps(payload).encode())],
            partition=shop_partition(shop_id, settings.topic_partitions),
        )


def check_experiments(report: Report, shops: dict[str, Any], states: dict[str, Any]) -> None:
    """Each arm's figures equal the sums of its customers' enrolments."""
    summed: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
    for state in states.values():
        row = state.enrolments.get(EXPERIMENT)
        if row is None:
            continue
        arm = arm_of(state.shop_id, EXPERIMENT, state.customer_id, EXPERIMENT_ARMS)
        sums = summed[(state.shop_id, arm)]
        for n, value in enumerate((1, int(row[3]), row[1], row[2], row[2] * row[2])):
            sums[n] += value
    for shop_id in sorted({shop for shop, _ in summed}):
        figures = shops[experiments_key(shop_id)]["figures"][EXPERIMENT]
        for split in EXPERIMENT_ARMS:
            stored = figures.get(split.name, [0, 0, 0, 0.0, 0.0])
            expected = summed.get((shop_id, split.name), [0, 0, 0, 0.0, 0.0])
            if any(
                abs(a - b) > 1e-6 * max(1.0, abs(b)) for a, b in zip(stored, expected, strict=True)
            ):
                report.experiments_diff += 1
                report.details.append(f"{shop_id} {split.name}: {stored} stored, {expected} summed")
    if not summed:
        report.experiments_diff += 1
        report.details.append("nobody was enrolled in any experiment")


def check_journey(report: Report, shops: dict[str, Any], states: dict[str, Any]) -> None:
    """Each shop's booked funnel equals the one recounted from its customers' states."""
    by_shop: dict[str, list[Any]] = defaultdict(list)
    for state in states.values():
        by_shop[state.shop_id].append(state)
    for shop_id, customers in sorted(by_shop.items()):
        booked = ShopFunnel.load(shops.get(funnel_key(shop_id))).months
        counted = recount(customers).months
        if booked != counted:
            report.journey_diff += 1
            report.details.append(f"{shop_id} funnel: {booked} booked, {counted} recounted")
    if not any(state.is_prospect for state in states.values()):
        report.journey_diff += 1
        report.details.append("no prospect reached the customers table")


# ---------------------------------------------------------------- checks


def reference(settings: Settings, records: Sequence[Record]) -> dict[str, Any]:
    """The customers table of one uninterrupted in-process run over the same records."""
    customers: dict[str, Any] = {}
    feed(Pipeline(settings, customers, {}, {}, {}), records)
    return {key: state.to_json() for key, state in customers.items()}


def facts(state: dict[str, Any]) -> dict[str, Any]:
    """Every field but the segments (learned and ranked segments depend on the order the
    input topics were consumed in; the chain check ties them to the change topic)."""
    return {**state, "segments": None, "recent_event_ids": sorted(state["recent_event_ids"])}


def check_facts(report: Report, got: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in sorted(set(got) | set(expected)):
        if key not in got or key not in expected:
            report.facts_diff += 1
            report.details.append(f"{key}: only in {'the table' if key in got else 'the run'}")
        elif facts(got[key]) != facts(expected[key]):
            report.facts_diff += 1
            found, wanted = facts(got[key]), facts(expected[key])
            fields = {
                name: (found[name], wanted[name]) for name in wanted if found[name] != wanted[name]
            }
            report.details.append(f"{key}: (table, uninterrupted run) {str(fields)[:600]}")


def check_changes(report: Report, changes: list[dict[str, Any]], table: dict[str, Any]) -> None:
    """Chains per customer and model, in topic order (a shop's changes share a partition)."""
    seen: set[str] = set()
    current: dict[tuple[str, str, str], str | None] = {}
    for change in changes:
        if change["kind"] != "segment_changed":
            continue
        if change["event_id"] in seen:
            report.duplicated += 1
            continue
        seen.add(change["event_id"])
        key = (change["shop_id"], change["customer_id"], change["model"])
        if change["previous"] != current.get(key):
            report.lost += 1
            if len(report.details) < 20:
                report.details.append(f"chain broken at {key}: {change}")
        current[key] = change["current"]
    for name, state in table.items():
        shop_id, _, customer_id = name.partition("/")
        models = {m for s, c, m in current if (s, c) == (shop_id, customer_id)}
        for model in models | set(state["segments"]):
            if current.get((shop_id, customer_id, model)) != state["segments"].get(model):
                report.lost += 1
                if len(report.details) < 20:
                    report.details.append(f"chain of {name} {model} ends elsewhere")


def expected_counts(sim: Simulation) -> dict[str, Counter[str]]:
    """Per event type of the topic: processed, duplicate and dead_lettered records sent."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    seen: set[str] = set()
    for role, value in sim.outbox():
        kind = EVENT_TYPES[role].type_name
        if isinstance(value, bytes):
            counts[kind]["dead_lettered"] += 1
        elif value["event_id"] in seen:
            counts[kind]["duplicate"] += 1
        else:
            seen.add(value["event_id"])
            counts[kind]["processed"] += 1
    return counts


def check_accounting(report: Report, shops: dict[str, Any], sim: Simulation) -> None:
    got: dict[str, Counter[str]] = defaultdict(Counter)
    for key, value in shops.items():
        if key.startswith(progress_key(0)[:-1]):
            for kind, outcomes in value["counts"].items():
                got[kind].update(outcomes)
    expected = expected_counts(sim)
    shop_ids = {event["shop_id"] for event in sim.events}
    # per shop: the rule and its replacement, the quiet rule, the experiment
    expected[DEFINITION]["processed"] = 4 * len(shop_ids)
    report.rerouted = sum(outcomes["rerouted"] for outcomes in got.values())
    for kind in set(got) | set(expected):
        for outcome in ("processed", "duplicate", "dead_lettered"):
            difference = abs(got[kind][outcome] - expected[kind][outcome])
            if difference:
                report.accounting_diff += difference
                report.details.append(
                    f"{kind} {outcome}: {got[kind][outcome]} counted, "
                    f"{expected[kind][outcome]} sent"
                )


def check_dead_letters(report: Report, letters: list[dict[str, Any]], sim: Simulation) -> None:
    originals = Counter(base64.b64decode(letter["original_value_b64"]) for letter in letters)
    sent = Counter(raw for _, raw in sim.invalid)
    report.dead_letters_diff = sum(((originals - sent) + (sent - originals)).values())


def check_metrics(
    report: Report, buckets: dict[str, Any], sim: Simulation, settings: Settings
) -> None:
    ledger = MetricsLedger(buckets, allowed_lateness_days=400, retention_days=800)
    unique = {event["event_id"]: event for event in reversed(sim.events)}
    oracle = MetricsOracle(list(unique.values()))  # duplicates count once
    for shop_id in sorted({event["shop_id"] for event in sim.events}):
        for month in ("2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01"):
            window = ledger.window(shop_id, "month", date.fromisoformat(month))
            expected = oracle.window(shop_id, window.start, window.end, "all")
            for name in ("subscribers_start", "subscribers_end", "signups", "orders"):
                if getattr(window, name) != expected[name]:
                    report.metrics_diff += 1
                    report.details.append(f"{shop_id} {month} {name}")
            for name in ("mrr_start", "mrr_end", "revenue"):
                if abs(getattr(window, name) - expected[name]) > 1e-4:
                    report.metrics_diff += 1
                    report.details.append(f"{shop_id} {month} {name}")


async def verify(report: Report, settings: Settings, sim: Simulation) -> None:
    outbox = sim.outbox()
    table = await read_table(settings, "customers", timeout_s=120)
    check_facts(report, table, reference(settings, outbox))
    records = await consume_all(
        settings.kafka_bootstrap, settings.topic("segment_changes"), timeout_s=180
    )
    check_changes(report, [json.loads(r.value) for r in records], table)
    check_accounting(report, await read_table(settings, "shops"), sim)
    letters = await consume_all(
        settings.kafka_bootstrap, settings.topic("dead_letters"), timeout_s=60
    )
    check_dead_letters(report, [json.loads(r.value) for r in letters], sim)
    check_metrics(report, await read_table(settings, "metrics", timeout_s=120), sim, settings)
    shops = await read_table(settings, "shops", timeout_s=120)
    check_defined(report, table, shops)
    states = await read_table(settings, "customers", timeout_s=120, readable=False)
    check_experiments(report, shops, states)
    check_journey(report, shops, states)


def mixed(crc32_shops: set[str]) -> Partitioner:
    """Two platforms' producers: librdkafka's partitioner for the events of ``crc32_shops``
    (and for unkeyed records), Kafka's murmur2 for the others."""
    murmur2 = DefaultPartitioner()

    def partition(key: bytes | None, partitions: list[int], available: list[int]) -> int:
        if key is None or key.decode(errors="replace") in crc32_shops:
            return librdkafka_partitioner(key, partitions, available)
        return int(murmur2(key, partitions, available))

    return partition


async def run(
    config: ChaosConfig, broker: Broker | BrokerCluster, network: WorkerNetwork | None = None
) -> Report:
    """One chaos run on ``broker`` (which it stops and starts; of a cluster, one node), the
    workers reaching it through ``network`` when given (see :func:`chaos_broker`)."""
    started = time.monotonic()
    replication = len(broker.brokers) if isinstance(broker, BrokerCluster) else 1
    settings = isolated_settings(
        broker.bootstrap,
        f"chaos{config.seed}",
        topic_partitions=config.partitions,
        topic_replication=replication,
    )
    settings = replace_settings(settings)
    await ensure_topics(settings, changelogs=True)
    sim = simulation(config)
    outbox = sim.outbox()
    report = Report(len(outbox), Faults())
    cluster = Cluster(config, settings, broker, network)
    report.faults = cluster.faults
    if config.upgrade_from:
        cluster.release = extract_release(config.upgrade_from, config.work_dir / "release")
    cluster.start()
    try:
        span = len(outbox) / config.rate
        plan = fault_plan(config, span, cluster.rng)
        publishing = time.monotonic()
        faults = asyncio.create_task(inject(cluster, plan, publishing))
        shops = sorted({event["shop_id"] for event in sim.events})
        await start_experiments(settings, shops)
        defining = asyncio.create_task(define_during(settings, shops, span))
        crc32_shops = set(shops[: round(config.librdkafka_share * len(shops))])
        await publish(outbox, settings, rate=config.rate, partitioner=mixed(crc32_shops))
        await faults
        await defining
        await drained(settings, cluster, config.timeout_s)
        await reevaluated(settings, shops, config.timeout_s)
        await verify(report, settings, sim)
        report.old_left = sum(cluster.is_old(worker) for worker in cluster.workers)
    finally:
        cluster.stop()
    report.seconds = time.monotonic() - started
    return report


def replace_settings(settings: Settings) -> Settings:
    """The worker settings the checks need to know (lateness as the workers run it)."""
    return settings.model_copy(
        update={"metrics_allowed_lateness_days": 400, "metrics_retention_days": 800}
    )


def refusal(config: ChaosConfig) -> str:
    """Why this combination of faults does not run ("" when it does)."""
    if config.networked and config.upgrade_from:
        return "network faults and a rolling upgrade are separate runs"
    if config.networked and config.cluster:
        return "network faults run on a single broker (not with --cluster)"
    return ""


@contextmanager
def chaos_broker(
    config: ChaosConfig, stem: str
) -> Iterator[tuple[Broker | BrokerCluster, WorkerNetwork | None]]:
    """A fresh broker (three with ``cluster``) on ``config.port`` and, for a run with network
    faults, the proxied network its workers reach it through (a slot for every worker
    that can run at once)."""
    refused = refusal(config)
    if refused:
        raise ValueError(refused)
    if config.cluster:
        with fresh_cluster(config.port, f"{stem}-cluster") as cluster:
            yield cluster, None
        return
    if not config.networked:
        with fresh_broker(config.port, f"{stem}-broker") as broker:
            yield broker, None
        return
    slots = config.workers + config.rebalances + config.kills + 1
    directory = config.work_dir / "network"
    with (
        worker_network(config.port, slots, directory, config.seed) as network,
        fresh_broker(config.port, f"{stem}-broker", network.broker_env()) as broker,
    ):
        yield broker, network


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    defaults = ChaosConfig()
    for name in CLI_OPTIONS:
        default = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--cluster", action="store_true", help="three brokers, one killed")
    args = parser.parse_args(argv)
    config = ChaosConfig(**{k: v for k, v in vars(args).items()})
    config = replace(config, work_dir=defaults.work_dir / f"seed-{config.seed}-{int(time.time())}")
    refused = refusal(config)
    if refused:
        parser.exit(2, f"chaos: {refused}\n")
    print(f"chaos: seed {config.seed}; again: {config.command()}", file=sys.stderr, flush=True)
    with chaos_broker(config, "chaos") as (broker, network):
        report = asyncio.run(run(config, broker, network))
    for detail in report.details:
        print(f"chaos: {detail}", file=sys.stderr)
    print(report.line())
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
