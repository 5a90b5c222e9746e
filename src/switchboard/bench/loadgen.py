"""One load-generator process: its share of the fake nodes and sessions, and a plan to run.

Plans:

``closed``  (E1) each session keeps ``window`` utterances outstanding, sending the next when an
            answer arrives, until it has sent ``utterances`` or ``duration`` has passed.
``open``    (E2) each session speaks in bursts of 1–3 utterances at ``rate`` utterances per
            second on average (Poisson bursts), whatever the scheduler does; the storm is
            switched on and off by ``phases``.
``idle``    (memory) sessions connect, say nothing, and wait for the orchestrator.
``paced``   (E5) each group of sessions (``groups``: a tenant, a priority class, or everyone)
            offers its ``rate`` utterances/s for ``duration`` on a fixed schedule, round robin
            over its sessions, whatever the scheduler answers (``clients="open"``), or backing
            off after ``OVERLOADED`` as the SDK does (``clients="hint"``: fakes.py); then the
            answers owed, held utterances included (they were offered: they are still sent),
            are awaited for ``drain_timeout`` and what is still owed is counted.

A process holds nodes, sessions or both (``role``).  E0 can put the nodes and the sessions in
two processes (``split_roles`` in scenarios.py), as they are different machines in a
deployment: then neither generator's loop queues the other's frames, and the node process
stays until every session process is through (``sessions_done``), so no answer owed is lost.

The orchestrator (``orchestrate.py``) starts every generator process, waits until each reports
``ready`` (all connected), then sets ``go`` so that every process starts its plan at once.
Progress and the final :class:`GenResult` travel back on a multiprocessing queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from switchboard.agent.pseudo import LatencyModel
from switchboard.bench.fakes import FakeNode, FakeSession, Pair, Tally, audio_b64
from switchboard.bench.storm import Storm, StormCounts, StormSpec
from switchboard.bench.sysutil import raise_open_files_limit, yield_to_the_scheduler
from switchboard.server.runner import loop_factory

Phase = tuple[str, float, float]  # (name, start, end) on perf_counter


@dataclass(frozen=True, slots=True)
class NodeSpec:
    node_id: str
    pairs: tuple[Pair, ...]
    max_concurrency: int


@dataclass(frozen=True, slots=True)
class SessionGroup:
    """E5: sessions that offer ``rate`` utterances/s together, as one tenant or one priority
    class (their ``session_init`` carries ``tenant_id`` and ``features.priority`` when set)."""

    name: str
    pairs: tuple[Pair, ...]  # one session per pair
    rate: float
    tenant_id: str | None = None
    priority: str | None = None

    def init(self, pair: Pair) -> dict[str, Any]:
        fields: dict[str, Any] = {"src_lang": pair[0], "tgt_lang": pair[1]}
        if self.tenant_id is not None:
            fields["tenant_id"] = self.tenant_id
        if self.priority is not None:
            fields["features"] = {"priority": self.priority}
        return fields


@dataclass(frozen=True, slots=True, kw_only=True)
class GenSpec:
    host: str
    port: int
    index: int
    nodes: tuple[NodeSpec, ...]
    session_pairs: tuple[Pair, ...]
    plan: str  # "closed", "open" or "idle"
    latency_median: float = 0.15
    latency_p99: float = 0.6
    seed: int = 1
    audio_bytes: int = 1024
    utterances: int = 100  # closed
    window: int = 1  # closed
    duration: float = 10.0  # closed: send no new utterance after this
    rate: float = 0.5  # open: utterances per second per session
    phases: tuple[tuple[str, float], ...] = ()  # open: ("warmup" | "calm" | "storm", s)
    storm: StormSpec = field(default_factory=StormSpec)
    churn_profiles: tuple[tuple[Pair, ...], ...] = ()
    drain_timeout: float = 20.0
    connect_concurrency: int = 100
    role: str = "both"  # "both", "nodes" (none of the sessions) or "sessions" (none of the nodes)
    groups: tuple[SessionGroup, ...] = ()  # paced: sessions beyond ``session_pairs``, by group
    clients: str = "open"  # paced: "open" ignores OVERLOADED's hint, "hint" backs off on it


@dataclass(slots=True)
class GenResult:
    index: int
    tally: Tally
    phases: list[Phase]
    started: float
    ended: float
    cpu_s: float
    sessions: int
    nodes: int
    unanswered: int
    connect_failures: Counter[str]
    storm: StormCounts
    groups: dict[str, Tally] = field(default_factory=dict)  # paced: what each group's sessions saw


Queue = Any  # multiprocessing queue / event: untyped in the standard library


def main(spec: GenSpec, queue: Queue, go: Any, release: Any, sessions_done: Any) -> None:
    """Process entry point (multiprocessing, spawn)."""
    raise_open_files_limit()
    yield_to_the_scheduler()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        result = runner.run(_run(spec, queue, go, release, sessions_done))
    queue.put(("done", spec.index, result))


class _Run:
    """The state of one generator process while it runs its plan."""

    def __init__(self, spec: GenSpec, queue: Queue) -> None:
        self.spec = spec
        self.queue = queue
        self.tally = Tally()
        self.rng = random.Random(spec.seed * 7919 + spec.index)
        self.latency = LatencyModel(spec.latency_median, spec.latency_p99)
        self.audio = audio_b64(spec.audio_bytes, seed=spec.seed)
        self.failures: Counter[str] = Counter()
        self.nodes = [self._node(n) for n in spec.nodes]
        self.sessions = [
            FakeSession(p, tally=self.tally, audio=self.audio) for p in spec.session_pairs
        ]
        self.inits: dict[int, dict[str, Any]] = {}  # id(session) → its session_init fields
        self.group_tallies: dict[str, Tally] = {}
        self.groups: list[tuple[SessionGroup, list[FakeSession]]] = []
        for group in spec.groups:
            tally = self.group_tallies.setdefault(group.name, Tally())
            members = [
                FakeSession(p, tally=tally, audio=self.audio, hint=self._hint())
                for p in group.pairs
            ]
            for session, pair in zip(members, group.pairs, strict=True):
                self.inits[id(session)] = group.init(pair)
            self.groups.append((group, members))
            self.sessions += members
        self.phases: list[Phase] = []
        self.storm = Storm(
            self.nodes, spec.storm, make_node=self._churn_node, connect=self._join, rng=self.rng
        )

    def _hint(self) -> random.Random | None:
        """A group session's jitter source when it follows OVERLOADED's hint."""
        return random.Random(self.rng.random()) if self.spec.clients == "hint" else None

    def _node(self, spec: NodeSpec) -> FakeNode:
        return FakeNode(
            spec.node_id,
            spec.pairs,
            max_concurrency=spec.max_concurrency,
            latency=self.latency,
            tally=self.tally,
            rng=random.Random(self.rng.random()),
        )

    def _churn_node(self, serial: int) -> FakeNode:
        pairs = self.rng.choice(self.spec.churn_profiles) if self.spec.churn_profiles else ()
        max_conc = self.spec.nodes[0].max_concurrency if self.spec.nodes else 4
        node_id = f"churn-{self.spec.index}-{serial}"
        return self._node(NodeSpec(node_id, pairs or (("en", "de"),), max_conc))

    def _join(self, node: FakeNode) -> asyncio.Task[None]:
        return asyncio.ensure_future(node.connect(self.spec.host, self.spec.port))

    async def connect_all(self) -> None:
        limit = asyncio.Semaphore(self.spec.connect_concurrency)

        async def one(connect: Awaitable[None], what: str) -> None:
            async with limit:
                try:
                    await connect
                except (OSError, TimeoutError) as exc:
                    self.failures[f"{what}: {type(exc).__name__}"] += 1

        host, port = self.spec.host, self.spec.port
        await asyncio.gather(*(one(n.connect(host, port), "node") for n in self.nodes))
        await asyncio.gather(
            *(one(s.connect(host, port, self.inits.get(id(s))), "session") for s in self.sessions)
        )
        self.sessions = [s for s in self.sessions if s.session_id]

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            tallies = [self.tally, *self.group_tallies.values()]
            sent = sum(t.sent for t in tallies)
            answered = sum(t.answered for t in tallies)
            self.queue.put(("progress", self.spec.index, sent, answered))

    def unanswered(self) -> int:
        return sum(s.owed for s in self.sessions)

    async def drain(self) -> None:
        """Wait for the answers still owed, up to ``drain_timeout``."""
        deadline = time.perf_counter() + self.spec.drain_timeout
        while self.unanswered() and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polls counters spread over every session


async def _run(spec: GenSpec, queue: Queue, go: Any, release: Any, sessions_done: Any) -> GenResult:
    run = _Run(spec, queue)
    await run.connect_all()
    queue.put(("ready", spec.index, len(run.sessions), len(run.nodes)))
    await asyncio.to_thread(go.wait)
    cpu0, started = _cpu(), time.perf_counter()
    progress = asyncio.create_task(run.report_progress())
    run.storm.start()
    try:
        if spec.plan == "closed":
            await _closed(run)
        elif spec.plan == "open":
            await _open(run)
        elif spec.plan == "paced":
            await _paced(run)
        else:
            await asyncio.to_thread(release.wait)
        if spec.role == "nodes":  # answers may still be owed to another process's sessions
            await asyncio.to_thread(sessions_done.wait, spec.drain_timeout + 60.0)
    finally:
        progress.cancel()
        await run.storm.stop()
    ended = time.perf_counter()
    result = GenResult(
        index=spec.index,
        tally=run.tally,
        phases=run.phases,
        started=started,
        ended=ended,
        cpu_s=_cpu() - cpu0,
        sessions=len(run.sessions),
        nodes=len(run.nodes),
        unanswered=run.unanswered(),
        connect_failures=run.failures,
        storm=run.storm.counts,
        groups=run.group_tallies,
    )
    for session in run.sessions:
        session.close()
    for node in run.nodes:
        node.leave()
    await asyncio.sleep(0.1)
    return result


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def _closed(run: _Run) -> None:
    spec = run.spec
    deadline = time.perf_counter() + spec.duration
    finished: set[FakeSession] = set()
    done = asyncio.Event()

    def answered(session: FakeSession) -> None:
        if session.next_index < spec.utterances and time.perf_counter() < deadline:
            session.send()
        elif not session.pending and session not in finished:
            finished.add(session)
            if len(finished) == len(run.sessions):
                done.set()

    for session in run.sessions:
        session.on_answer = answered
        for _ in range(min(spec.window, spec.utterances)):
            session.send()
    if not run.sessions:
        return
    run.phases.append(("load", time.perf_counter(), deadline))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), spec.duration + spec.drain_timeout)


async def _open(run: _Run) -> None:
    spec = run.spec
    total = sum(seconds for _, seconds in spec.phases)
    end_at = time.perf_counter() + total
    speakers = [
        asyncio.create_task(_speak(s, spec.rate, random.Random(run.rng.random()), end_at))
        for s in run.sessions
    ]
    for name, seconds in spec.phases:
        run.storm.set(storm=name == "storm")
        start = time.perf_counter()
        await asyncio.sleep(max(0.0, start + seconds - time.perf_counter()))
        run.phases.append((name, start, time.perf_counter()))
    run.storm.set(storm=False)
    await asyncio.gather(*speakers, return_exceptions=True)
    await run.drain()


async def _speak(session: FakeSession, rate: float, rng: random.Random, end_at: float) -> None:
    """Bursts of 1–3 utterances (mean 2) at ``rate`` utterances per second on average."""
    burst_rate = rate / 2.0
    pause = rng.uniform(0, 1 / burst_rate)
    while True:
        # Never sleep past the end: the run must not wait for a speaker's long pause.
        await asyncio.sleep(min(pause, max(0.0, end_at - time.perf_counter())))
        if time.perf_counter() >= end_at:
            return
        for _ in range(rng.randint(1, 3)):
            session.send()
        pause = rng.expovariate(burst_rate)


# A generator that falls behind its schedule sends at most this much of it at once and skips
# the rest (counted in ``Tally.unsent``), so its loop still reads the answers in between.
_MAX_BATCH_S = 0.02


async def _paced(run: _Run) -> None:
    spec = run.spec
    lines = [
        (g.rate, [s for s in members if s.session_id], run.group_tallies[g.name])
        for g, members in run.groups
    ]
    lines = [line for line in lines if line[0] > 0 and line[1]]
    if not lines:  # a nodes-only process: nothing to offer, no ticks to spend
        return
    start = time.perf_counter()
    end = start + spec.duration
    due_before = [0] * len(lines)
    turn = [0] * len(lines)
    while (now := time.perf_counter()) < end:
        for i, (rate, members, tally) in enumerate(lines):
            due = int(rate * (now - start))
            owed, due_before[i] = due - due_before[i], due
            batch = min(owed, max(1, int(rate * _MAX_BATCH_S)))
            tally.unsent += owed - batch
            for _ in range(batch):
                members[turn[i] % len(members)].send()
                turn[i] += 1
        await asyncio.sleep(0.001)
    run.phases.append(("load", start, time.perf_counter()))
    await run.drain()


def merged_samples(results: Sequence[GenResult], which: str) -> array[float]:
    """The (time, latency) pairs of every process, concatenated."""
    merged: array[float] = array("d")
    for result in results:
        merged.extend(getattr(result.tally, which))
    return merged
