"""E4 (issue 10): instances on one Redis, measured in one run.

(a) **Same against cross-instance latency.**  Two instances A and B on one Redis (a fresh
    namespace per run).  Sessions connect to A; the nodes connect to A (*same*) or to B
    (*cross*: every ``job_assign`` goes through B's inbox and every answer back through A's).
    E0's instant nodes at a speaking pace (open loop, no storm), nodes and sessions in two
    generator processes; the figure is the outside latency, session send → node receives
    ``job_assign``, on one monotonic clock.  Both runs have both instances up, so the presence
    rounds and stream readers cost the same in each.
(b) **Jobs/s of one and of two instances.**  A closed loop over instant nodes from two
    generator processes, each with half the nodes and half the sessions: both to A alone
    (*1 instance*), or one to A and one to B (*2 instances*: a session's job goes to either
    instance's nodes, so about half of them cross).
(c) **Redis commands per job.**  ``INFO commandstats`` just before the plans start and just
    after they end, every command but ``INFO`` summed, over the jobs answered in between;
    ``INFO cpu`` likewise gives Redis's CPU seconds per job.  Background traffic (presence
    rounds, the blocking stream reads, the waiting line's retries) is included: it is what a
    job costs in a cluster.
(d) **Failover.**  A and B with a short ``--instance-ttl``; ``switchboard node`` agents with
    ``--url A --url B`` registered on A; client sessions on B keep jobs in flight on A's nodes.
    A is SIGKILLed, then: the time until B's view drops A's nodes, until every agent is
    registered on B and ready, and until the first successful answer to an utterance that was
    in flight at the kill; and whether every utterance got exactly one answer.
(e) **On paper**: instances and Redis shards for 100,000 sessions at one utterance per 3 s,
    from (b) and (c) (:func:`sizing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from switchboard.bench.loadgen import GenSpec
from switchboard.bench.orchestrate import BenchError, ServerProc, run_load
from switchboard.bench.scenarios import (
    BenchConfig,
    churn_profiles,
    session_pairs,
    split_roles,
    topology,
)
from switchboard.store import admin
from switchboard.tools.procs import AgentProcess, ProcessFailed

if TYPE_CHECKING:
    from switchboard.bench.runs import Bench

Row = dict[str, Any]
TARGET_SESSIONS = 100_000
UTTERANCE_EVERY_S = 3.0
HEADROOM = 0.5  # size instances and shards to run at half of what was measured to saturate
MAX_SESSIONS_PER_INSTANCE = 10_000  # --max-sessions' default


def machine_busy_s() -> float:
    """CPU seconds every core of this machine has spent busy since boot (``/proc/stat``):
    with our processes' own CPU time it shows what else held the cores during a run."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class RunCounters:
    """``INFO commandstats`` and ``INFO cpu`` of the benchmark's redis-server, and the
    machine's busy time, by mark."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.marks: dict[str, tuple[dict[str, int], float]] = {}
        self.busy: dict[str, tuple[float, float]] = {}  # mark → (busy CPU s, monotonic)

    def mark(self, name: str) -> None:
        self.busy[name] = (machine_busy_s(), time.monotonic())
        with admin.sync_client(self.port, timeout=5) as client:
            stats = client.info("commandstats")
            cpu = client.info("cpu")
        calls = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in stats.items()
            if isinstance(value, dict)
        }
        self.marks[name] = (calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]))

    def per_job(self, jobs: int, first: str = "go", last: str = "done") -> Row:
        """Commands (all, and the five most called) and Redis CPU per job between the marks."""
        (before, cpu0), (after, cpu1) = self.marks[first], self.marks[last]
        delta = {k: v - before.get(k, 0) for k, v in after.items() if k != "info"}
        delta = {k: v for k, v in delta.items() if v > 0}
        total = sum(delta.values())
        top = sorted(delta.items(), key=lambda kv: -kv[1])[:5]
        per = max(jobs, 1)
        (busy0, t0), (busy1, t1) = self.busy[first], self.busy[last]
        return {
            "machine_busy_cores": round((busy1 - busy0) / max(t1 - t0, 1e-9), 2),
            "redis_commands": total,
            "redis_commands_per_job": round(total / per, 2),
            "redis_top_commands_per_job": {k: round(v / per, 2) for k, v in top},
            "redis_cpu_s": round(cpu1 - cpu0, 3),
            "redis_cpu_us_per_job": round((cpu1 - cpu0) / per * 1e6, 1),
        }


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise BenchError("E4 reads Redis's counters over loopback: use a local Redis")
    return parts.port or 6379


# --- the generator specs -------------------------------------------------------------------------


def latency_specs(config: BenchConfig, sessions_port: int, nodes_port: int) -> list[GenSpec]:
    """(a): nodes in one generator process to ``nodes_port``, sessions in another to
    ``sessions_port``, at a speaking pace; phases ``warmup`` then ``calm`` (measured)."""
    whole = GenSpec(
        host="127.0.0.1",
        port=sessions_port,
        index=0,
        nodes=tuple(topology(config.e4_nodes, max_concurrency=config.e4_slots)),
        session_pairs=tuple(session_pairs(config.e4_sessions, seed=config.seed)),
        plan="open",
        latency_median=0.0,
        latency_p99=0.0,
        seed=config.seed,
        audio_bytes=config.audio_bytes,
        rate=config.e4_rate,
        phases=(("warmup", config.e4_warmup_s), ("calm", config.e4_seconds)),
        storm=dataclasses.replace(config.storm, churn_per_s=0, flips_per_s=0),
        churn_profiles=churn_profiles(),
    )
    nodes, sessions = split_roles(whole)
    return [dataclasses.replace(nodes, port=nodes_port), sessions]


def throughput_specs(config: BenchConfig, ports: tuple[int, int]) -> list[GenSpec]:
    """(b): four generator processes, half the nodes and half the sessions to ``ports[0]``,
    the other halves to ``ports[1]`` (the same port for one instance).  Nodes and sessions
    are in processes of their own, so no node leaves while another process's session still
    waits for its answer (``split_roles``)."""
    whole = GenSpec(
        host="127.0.0.1",
        port=ports[0],
        index=0,
        nodes=tuple(topology(config.e4_nodes, max_concurrency=config.e4_slots)),
        session_pairs=tuple(session_pairs(config.e4_max_sessions, seed=config.seed)),
        plan="closed",
        latency_median=0.0,
        latency_p99=0.0,
        seed=config.seed,
        audio_bytes=config.audio_bytes,
        utterances=1_000_000,  # bounded by the duration
        window=config.e4_window,
        duration=config.e4_max_duration,
        storm=dataclasses.replace(config.storm, churn_per_s=0, flips_per_s=0),
        churn_profiles=churn_profiles(),
    )
    nodes, sessions = split_roles(whole)
    specs: list[GenSpec] = []
    for half, port in enumerate(ports):
        specs.append(dataclasses.replace(nodes, nodes=nodes.nodes[half::2], port=port))
        pairs = sessions.session_pairs[half::2]
        specs.append(dataclasses.replace(sessions, session_pairs=pairs, port=port))
    return [dataclasses.replace(spec, index=i) for i, spec in enumerate(specs)]


# --- the runs ------------------------------------------------------------------------------------


class E4:
    """Runs (a)–(d) for a :class:`Bench` and appends their rows to its result."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config
        assert bench.redis_url is not None
        self.redis = RunCounters(_port_of(bench.redis_url))

    def run(self) -> None:
        for placement in ("same", "cross"):
            self._latency(placement)
        for instances in (1, 2):
            self._throughput(instances)
        self._failover()
        self.bench.result.rows.append(sizing(self.bench.result.rows))

    def _flags(self, name: str, namespace: str) -> dict[str, object]:
        flags = self.bench._flags("snapshot", "redis", max_concurrency=self.config.e4_slots)
        # A fake node here carries hundreds of instant jobs a second, far beyond a real
        # node's frame rate: the per-connection limit would close it mid-run.
        flags.update(redis_namespace=namespace, instance_id=name, max_frames_per_second=0)
        return flags

    @contextlib.contextmanager
    def _instances(self, count: int, label: str, **extra: object) -> Iterator[list[ServerProc]]:
        """``count`` fresh instances (``e4-a``, ``e4-b``) on one fresh namespace, stopped on
        the way out unless a run stopped them first (:meth:`_load` stops the first for its
        latency samples)."""
        namespace = f"bench-e4-{uuid.uuid4().hex[:8]}"
        servers: list[ServerProc] = []
        try:
            for k in range(count):
                name = f"e4-{'ab'[k]}"
                flags = {**self._flags(name, namespace), **extra}
                server = ServerProc(flags, self.bench.workdir, f"{label}-{name}")
                server.start()
                servers.append(server)
            yield servers
        finally:
            for server in servers:
                if server.running:
                    server.stop()

    def _load(
        self, label: str, servers: list[ServerProc], specs: list[GenSpec], total_s: float
    ) -> tuple[Any, Any, Row]:
        with self.bench.progress(label, total_s) as progress:
            outcome = run_load(
                servers[0], specs, progress=progress, others=servers[1:], marks=self.redis.mark
            )
        samples = servers[0].stop()
        jobs = sum(r.tally.answered for r in outcome.results)
        counts = self.redis.per_job(jobs)
        # The cores this run's own processes used; the machine's busy cores less these are
        # what other work on the machine held meanwhile.
        ours = outcome.server_cpu_s + sum(r.cpu_s for r in outcome.results) + counts["redis_cpu_s"]
        counts["run_cores"] = round(ours / max(outcome.wall_s, 1e-9), 2)
        counts["other_cores"] = round(
            max(0.0, counts["machine_busy_cores"] - counts["run_cores"]), 2
        )
        return outcome, samples, counts

    def _latency(self, placement: str) -> None:
        from switchboard.bench.runs import _measured

        c = self.config
        with self._instances(2, f"e4-{placement}") as (a, b):
            nodes_on = a if placement == "same" else b
            specs = latency_specs(c, a.port, nodes_on.port)
            outcome, samples, redis = self._load(
                f"E4 latency, nodes on {'A' if placement == 'same' else 'B'}",
                [a, b],
                specs,
                c.e4_warmup_s + c.e4_seconds,
            )
        sessions = next(r for r in outcome.results if r.sessions)
        windows = [(s, e) for name, s, e in sessions.phases if name == "calm"]
        row = self.bench._row("E4", "snapshot", "redis", c.e4_sessions, c.storm.hz_calm, outcome)
        row.update(_measured(outcome, samples, windows))
        row.update(
            phase=placement,
            instances=2,
            nodes=c.e4_nodes,
            offered_per_s=c.e4_sessions * c.e4_rate,
            **redis,
        )
        self.bench.result.rows.append(row)

    def _throughput(self, instances: int) -> None:
        from switchboard.bench.runs import _measured

        c = self.config
        with self._instances(instances, f"e4-x{instances}") as servers:
            ports = (servers[0].port, servers[-1].port)
            outcome, samples, redis = self._load(
                f"E4 jobs/s, {instances} instance(s)",
                servers,
                throughput_specs(c, ports),
                c.e4_max_duration,
            )
        start = min(r.started for r in outcome.results) + c.warmup
        end = min(max(r.ended for r in outcome.results), start - c.warmup + c.e4_max_duration)
        row = self.bench._row(
            "E4", "snapshot", "redis", c.e4_max_sessions, c.storm.hz_calm, outcome
        )
        row.update(_measured(outcome, samples, [(start, end)]))
        row.update(
            phase=f"max x{instances}",
            instances=instances,
            nodes=c.e4_nodes,
            concurrency=c.e4_max_sessions * c.e4_window,
            **redis,
        )
        self.bench.result.rows.append(row)

    def _failover(self) -> None:
        c = self.config
        with (
            self.bench.progress("E4 failover: SIGKILL an instance", 0.0),
            self._instances(2, "e4-fail", instance_ttl=c.e4_instance_ttl) as (a, b),
        ):
            try:
                figures = asyncio.run(_failover(c, a, b, self.bench.workdir))
            finally:
                a.kill()
        self.bench.result.rows.append(
            {
                "scenario": "E4",
                "design": "snapshot",
                "store": "redis",
                "phase": "failover",
                "instances": 2,
                "sessions": c.e4_failover_sessions,
                "nodes": c.e4_failover_nodes,
                "heartbeat_hz": None,
                "latency_ms": None,
                "jobs_per_s": None,
                "rss_mib": None,
                "instance_ttl_s": c.e4_instance_ttl,
                **figures,
            }
        )


@dataclasses.dataclass(slots=True)
class _Ask:
    sent: float
    answered: float | None = None
    ok: bool = False
    code: str | None = None


async def _failover(config: BenchConfig, a: ServerProc, b: ServerProc, workdir: Path) -> Row:
    """(d), in this process's loop: the agents and A are processes; the sessions are ours."""
    from switchboard.client import ServerError, Session, sine_pcm16

    job = config.e4_job_s
    agents = [
        AgentProcess(
            [
                *("--url", a.ws_url, "--url", b.ws_url, "--node-id", f"e4-fail-{i}"),
                *("--reconnect-max", "0.5", "--heartbeat-interval", "0.5", "--pair", "en:de"),
                *("--latency-median", f"{job:g}", "--latency-p99", f"{job * 1.5:g}"),
                *("--max-concurrency", "4", "--log-level", "warning"),
            ],
            log_path=workdir / f"e4-fail-agent-{i}.log",
        )
        for i in range(config.e4_failover_nodes)
    ]
    node_ids = {f"e4-fail-{i}" for i in range(config.e4_failover_nodes)}
    asks: list[_Ask] = []
    stop = asyncio.Event()
    audio = sine_pcm16(0.2)
    try:
        for agent in agents:
            await asyncio.to_thread(agent.start, 30.0)
        await _until(lambda: _held(b, node_ids, "e4-a"), 30.0, "A's nodes ready on B")

        async def speak(session: Session) -> None:
            while not stop.is_set():
                ask = _Ask(time.perf_counter())
                asks.append(ask)
                try:
                    await session.translate(audio)
                    ask.ok = True
                except ServerError as exc:
                    ask.code = getattr(exc, "code", type(exc).__name__)
                ask.answered = time.perf_counter()

        async with contextlib.AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(
                    Session.connect(b.url, src_lang="en", tgt_lang="de")
                )
                for _ in range(config.e4_failover_sessions)
            ]
            speakers = [asyncio.create_task(speak(s)) for s in sessions]
            await asyncio.sleep(max(1.0, 4 * job))  # jobs in flight on A's nodes
            killed = time.perf_counter()
            await asyncio.to_thread(a.kill)
            in_flight = [ask for ask in asks if ask.answered is None]
            left = await _until_async(lambda: _gone(b, node_ids), 30.0 + 4 * config.e4_instance_ttl)
            moved = await _until_async(
                lambda: _held(b, node_ids, "e4-b"), 60.0 + 4 * config.e4_instance_ttl
            )
            await asyncio.sleep(max(1.0, 4 * job))  # a few answers from the moved nodes
            stop.set()
            await asyncio.wait_for(asyncio.gather(*speakers), 60.0)
    finally:
        for agent in agents:
            agent.terminate(timeout=10)
    first_ok = min((x.answered for x in in_flight if x.ok and x.answered), default=None)
    errors: dict[str, int] = {}
    for ask in asks:
        if not ask.ok:
            errors[str(ask.code)] = errors.get(str(ask.code), 0) + 1
    return {
        "sent": len(asks),
        "results": sum(1 for x in asks if x.ok),
        "errors": errors,
        "unanswered": sum(1 for x in asks if x.answered is None),
        "in_flight_at_kill": len(in_flight),
        "in_flight_answered_ok": sum(1 for x in in_flight if x.ok),
        "failover_nodes_left_view_s": _since(killed, left),
        "failover_nodes_reregistered_s": _since(killed, moved),
        "failover_first_answer_s": _since(killed, first_ok),
        "registrations": [agent.registrations for agent in agents],
    }


def _since(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 3)


def _nodes(server: ServerProc) -> list[Row]:
    with urllib.request.urlopen(server.url + "/api/v1/nodes", timeout=5) as reply:
        rows: list[Row] = json.loads(reply.read())
    return rows


def _held(server: ServerProc, node_ids: set[str], instance: str) -> bool:
    rows = {r["node_id"]: r for r in _nodes(server)}
    return all(
        n in rows and rows[n]["instance_id"] == instance and rows[n]["status"] == "ready"
        for n in node_ids
    )


def _gone(server: ServerProc, node_ids: set[str]) -> bool:
    rows = {r["node_id"]: r for r in _nodes(server)}
    return all(n not in rows or rows[n]["instance_id"] != "e4-a" for n in node_ids)


async def _until(probe: Callable[[], bool], limit: float, what: str) -> float:
    found = await _until_async(probe, limit)
    if found is None:
        raise BenchError(f"E4 failover: waited {limit:g} s for {what}")
    return found


async def _until_async(probe: Callable[[], bool], limit: float) -> float | None:
    """The time ``probe`` first held (polled every 20 ms off the loop), or None at ``limit``."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        try:
            if await asyncio.to_thread(probe):
                return time.perf_counter()
        except (OSError, ValueError, ProcessFailed):
            pass
        await asyncio.sleep(0.02)
    return None


# --- (e) on paper --------------------------------------------------------------------------------


def sizing(rows: list[Row]) -> Row:
    """Instances and Redis shards for 100,000 sessions at one utterance per 3 s, from the
    per-job costs measured here.  Conservative on every count: the lower of one instance's
    jobs/s and half of two instances', and the cross-instance run's Redis cost per job (in a
    cluster of many instances nearly every job crosses)."""

    def find(phase: str) -> Row | None:
        return next((r for r in rows if r["scenario"] == "E4" and r.get("phase") == phase), None)

    demand = TARGET_SESSIONS / UTTERANCE_EVERY_S
    one, two, cross = find("max x1"), find("max x2"), find("cross")
    one_rate = (one or {}).get("jobs_per_s")
    two_rate = (two or {}).get("jobs_per_s")
    rates = [float(one_rate)] if one_rate else []
    rates += [float(two_rate) / 2] if two_rate else []
    per_instance = round(min(rates), 1) if rates else None
    by_jobs = math.ceil(demand / (per_instance * HEADROOM)) if per_instance else None
    by_sessions = math.ceil(TARGET_SESSIONS / MAX_SESSIONS_PER_INSTANCE)
    same = find("same")
    # Redis per job at scale: the saturated one-instance run's cost (background traffic
    # spread over many jobs), plus what crossing adds to a job (the cross run less the same
    # run: equal load and duration, so their background cancels out).
    commands = _at_scale(one, same, cross, "redis_commands_per_job")
    cpu_us = _at_scale(one, same, cross, "redis_cpu_us_per_job")
    shards = math.ceil(demand * cpu_us / 1e6 / HEADROOM) if cpu_us else None
    return {
        "scenario": "E4",
        "phase": "sizing",
        "design": "snapshot",
        "store": "redis",
        "target_sessions": TARGET_SESSIONS,
        "jobs_per_s_needed": round(demand),
        "jobs_per_s_per_instance": per_instance,
        "instances_by_jobs": by_jobs,
        "instances_by_sessions": by_sessions,
        "instances": None if by_jobs is None else max(by_jobs, by_sessions),
        "redis_commands_per_s": None if commands is None else round(demand * commands),
        "redis_commands_per_job": commands,
        "redis_cpu_us_per_job": cpu_us,
        "redis_shards": shards,
        "headroom": HEADROOM,
    }


def _at_scale(one: Row | None, same: Row | None, cross: Row | None, key: str) -> float | None:
    if one is None or one.get(key) is None:
        return None
    extra = 0.0
    if same is not None and cross is not None and None not in (same.get(key), cross.get(key)):
        extra = max(0.0, float(cross[key]) - float(same[key]))
    return round(float(one[key]) + extra, 2)
