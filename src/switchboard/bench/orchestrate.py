"""The processes of one benchmark run: a private Redis, the scheduler, the load generators.

The processes are the tools' (``switchboard.tools.procs``).  Each run gets a fresh
scheduler process (``serverproc``) so that no run inherits another's
state, memory or JIT-less warm caches; Redis runs get a fresh key namespace on one private
``redis-server`` (loopback, free port, no persistence).  Load generators are separate processes
(multiprocessing, spawn), never the scheduler's: the figures are the scheduler's, and the
report says when a generator, not the scheduler, was the bottleneck.
"""

from __future__ import annotations

import json
import multiprocessing
import queue as queue_mod
import shutil
import time
import urllib.request
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from switchboard.bench import loadgen
from switchboard.bench.loadgen import GenResult, GenSpec
from switchboard.bench.sysutil import cpu_seconds, rss_bytes
from switchboard.tools.procs import ProcessFailed, RedisProcess, SchedulerProcess


class BenchError(RuntimeError):
    """A run could not be carried out (a process did not start, a generator died …)."""


class Progress(Protocol):
    """Where a run reports how far it got (the CLI shows a bar; tests ignore it)."""

    def update(self, *, elapsed: float, sent: int, answered: int) -> None: ...


class NoProgress:
    def update(self, *, elapsed: float, sent: int, answered: int) -> None:
        return None


# --- redis-server and the scheduler (the tools' one launcher, failing as BenchError) ---------


class RedisProc(RedisProcess):
    """A private ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        super().__init__(workdir, binary=found)

    def start(self) -> None:
        try:
            super().start()
        except ProcessFailed as exc:
            raise BenchError(str(exc)) from exc


class ServerProc(SchedulerProcess):
    """One scheduler process: ``python -m switchboard.bench.serverproc`` (with the latency
    tap), or with ``cli=True`` the plain ``switchboard serve`` (E3 replays use it, to check the
    real command's ``--record``)."""

    failure = BenchError

    def __init__(
        self, flags: Mapping[str, object], workdir: Path, name: str, *, cli: bool = False
    ) -> None:
        self.workdir = workdir
        self.samples_path = workdir / f"{name}.samples"
        if cli:
            super().__init__(flags=flags, log_path=workdir / f"{name}.log")
        else:
            super().__init__(
                ["--samples-out", str(self.samples_path)],
                flags=flags,
                log_path=workdir / f"{name}.log",
                module="switchboard.bench.serverproc",
                command=(),
            )

    @property
    def base_url(self) -> str:
        return self.url

    def start(self, timeout: float = 30.0) -> None:
        try:
            super().start(timeout)
        except BenchError:
            raise BenchError(f"the scheduler did not start; see {self.log_path}") from None

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as reply:
            text: str = reply.read().decode()
            return text

    def stop(self) -> array[float]:
        """SIGTERM, wait, and the exact latency samples it wrote."""
        self.terminate(timeout=30)
        samples: array[float] = array("d")
        if self.samples_path.exists():
            samples.frombytes(self.samples_path.read_bytes())
        return samples

    def counters(self) -> dict[str, object]:
        """The scheduler's own counters written at exit (``serverproc``), if any."""
        path = self.samples_path.with_suffix(".json")
        if not path.exists():
            return {}
        loaded: dict[str, object] = json.loads(path.read_text())
        return loaded


# --- load generators ---------------------------------------------------------------------------


@dataclass(slots=True)
class LoadOutcome:
    results: list[GenResult]
    server_cpu_s: float
    wall_s: float
    rss_before: int
    rss_ready: int  # after every generator connected, before the plan started
    rss_after: int


def run_load(
    server: ServerProc,
    specs: Sequence[GenSpec],
    *,
    progress: Progress,
    ready_timeout: float = 180.0,
    run_timeout: float = 600.0,
    others: Sequence[ServerProc] = (),
    marks: Callable[[str], None] | None = None,
) -> LoadOutcome:
    """One run of ``specs`` against ``server``.  ``others``: more instances of its cluster
    (E4): each must list every node ready before the load starts, and their CPU counts in
    ``server_cpu_s``.  ``marks`` is called with ``"go"`` just before the plans start and
    ``"done"`` once every generator is through (E4 reads Redis's counters there)."""
    servers = [server, *others]
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    go, release, sessions_done = ctx.Event(), ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(
            target=loadgen.main, args=(spec, messages, go, release, sessions_done), daemon=True
        )
        for spec in specs
    ]
    with_sessions = {spec.index for spec in specs if spec.role != "nodes"}
    if not with_sessions:
        sessions_done.set()
    rss_before = rss_bytes(server.pid)
    for proc in procs:
        proc.start()
    try:
        _await_ready(messages, len(procs), ready_timeout, procs)
        expected = sum(len(spec.nodes) for spec in specs)
        if others:
            for one in servers:
                _await_listed_ready(one, expected, ready_timeout)
        else:
            _await_nodes_ready(server, expected, ready_timeout)
        rss_ready = rss_bytes(server.pid)
        if marks is not None:
            marks("go")
        cpu0, t0 = sum(cpu_seconds(one.pid) for one in servers), time.perf_counter()
        go.set()
        release.set()
        results = _collect(messages, procs, progress, t0, run_timeout, with_sessions, sessions_done)
        cpu1, t1 = sum(cpu_seconds(one.pid) for one in servers), time.perf_counter()
        if marks is not None:
            marks("done")
        rss_after = rss_bytes(server.pid)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    results.sort(key=lambda r: r.index)
    return LoadOutcome(results, cpu1 - cpu0, t1 - t0, rss_before, rss_ready, rss_after)


def _await_ready(
    messages: multiprocessing.Queue[tuple[object, ...]],
    count: int,
    timeout: float,
    procs: Sequence[multiprocessing.process.BaseProcess],
) -> None:
    deadline = time.monotonic() + timeout
    ready = 0
    while ready < count:
        if time.monotonic() > deadline:
            raise BenchError("load generators did not connect in time")
        try:
            message = messages.get(timeout=0.5)
        except queue_mod.Empty:
            _check_alive(procs)
            continue
        if message[0] == "ready":
            ready += 1


def _await_nodes_ready(server: ServerProc, expected: int, timeout: float) -> None:
    """Every node past ``registering`` before the load starts (contract §1 "Status")."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = json.loads(server.get("/api/v1/stats"))["nodes"]
        if nodes["ready"] >= expected:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"only {nodes['ready']} of {expected} nodes became ready")
        time.sleep(0.05)


def _await_listed_ready(server: ServerProc, expected: int, timeout: float) -> None:
    """``server`` lists every node of the cluster ready (its own and the other instances')."""
    deadline = time.monotonic() + timeout
    while True:
        rows = json.loads(server.get("/api/v1/nodes"))
        ready = sum(1 for row in rows if row["status"] == "ready")
        if ready >= expected:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{server.url} lists only {ready} of {expected} nodes ready")
        time.sleep(0.05)


def _collect(
    messages: multiprocessing.Queue[tuple[object, ...]],
    procs: Sequence[multiprocessing.process.BaseProcess],
    progress: Progress,
    t0: float,
    timeout: float,
    with_sessions: set[int],
    sessions_done: Any,
) -> list[GenResult]:
    """Every generator's result; ``sessions_done`` is set once each process holding sessions
    is through (a nodes-only process waits for it before its nodes leave)."""
    results: list[GenResult] = []
    owing = set(with_sessions)
    counts: dict[object, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while len(results) < len(procs):
        if time.monotonic() > deadline:
            raise BenchError("load generators did not finish in time")
        try:
            message = messages.get(timeout=0.5)
        except queue_mod.Empty:
            _check_alive(procs)
            continue
        if message[0] == "progress":
            _, index, sent, answered = message
            counts[index] = (int(str(sent)), int(str(answered)))
            total_sent = sum(c[0] for c in counts.values())
            total_answered = sum(c[1] for c in counts.values())
            progress.update(
                elapsed=time.perf_counter() - t0, sent=total_sent, answered=total_answered
            )
        elif message[0] == "done":
            result = message[2]
            assert isinstance(result, GenResult)
            results.append(result)
            owing.discard(result.index)
            if not owing:
                sessions_done.set()
    return results


def _check_alive(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
    if dead:
        raise BenchError(f"a load generator died (exit code {dead[0].exitcode})")
