"""Carry out the scenarios of a ``BenchConfig`` and turn each run into report rows.

A row is one JSON object of ``--json``'s ``runs``: ``scenario``, ``design``, ``store``,
``sessions``, ``nodes``, ``heartbeat_hz``, ``latency_ms`` (the scheduler's own exact samples:
utterance read off the session socket → ``job_assign`` written), ``jobs_per_s`` and
``rss_mib``, plus what explains them (the same latency measured from outside, the histogram's
estimate, CPU of scheduler and generator, answers by kind …).  Figures a run did not measure
are ``null``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from switchboard.bench import replay, stats, trace, tracegen
from switchboard.bench.loadgen import GenResult, GenSpec, merged_samples
from switchboard.bench.orchestrate import (
    BenchError,
    LoadOutcome,
    Progress,
    RedisProc,
    ServerProc,
    run_load,
)
from switchboard.bench.scenarios import (
    BenchConfig,
    e1_spec,
    e2_spec,
    hot_max_spec,
    hot_spec,
    rss_spec,
)

MIB = 1024 * 1024
HISTOGRAM = "switchboard_dispatch_latency_seconds"
GENERATOR_BOUND_PCT = 85.0  # a generator busier than this may be what limits the run

Row = dict[str, Any]


class ProgressFactory(Protocol):
    def __call__(
        self, label: str, total_s: float
    ) -> contextlib.AbstractContextManager[Progress]: ...


@contextlib.contextmanager
def no_progress(label: str, total_s: float) -> Iterator[Progress]:
    from switchboard.bench.orchestrate import NoProgress

    yield NoProgress()


@dataclass(slots=True)
class Series:
    """Raw samples of one E2 run, for the plots."""

    design: str
    store: str
    server: Any  # array of (received_at, seconds)
    phases: list[tuple[str, float, float]]


@dataclass(slots=True)
class BenchResult:
    rows: list[Row] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    e1_samples: dict[tuple[str, str], Any] = field(default_factory=dict)


class Bench:
    def __init__(
        self, config: BenchConfig, *, workdir: Path, progress: ProgressFactory = no_progress
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.progress = progress
        self.redis_url: str | None = config.redis_url
        self.result = BenchResult()
        self._names = itertools.count(1)
        self._extra: Row = {}

    def run(self) -> BenchResult:
        with contextlib.ExitStack() as stack:
            needs_redis = "redis" in self.config.stores or "e4" in self.config.scenarios
            if needs_redis and self.redis_url is None:
                redis = RedisProc(self.workdir)
                redis.start()
                stack.callback(redis.stop)
                self.redis_url = redis.url
            for scenario in self.config.scenarios:
                self._scenario(scenario)()
        return self.result

    def _scenario(self, name: str) -> Callable[[], None]:
        """The run of one scenario; ``suite.Suite`` adds those kept in their own modules."""
        runs: dict[str, Callable[[], None]] = {
            "hot": self._hot,
            "e1": self._e1,
            "e2": self._e2,
            "e3": self._e3,
            "rss": self._rss,
        }
        if name not in runs:
            raise BenchError(f"scenario {name} runs from suite.Suite, not runs.Bench")
        return runs[name]

    # --- one scheduler process per run --------------------------------------------------------

    def _flags(
        self, design: str, store: str, *, max_concurrency: int, shedding: bool = False
    ) -> dict[str, object]:
        """The scheduler's flags for one run.  Saturation shedding (``--overload-*``) is off
        unless ``shedding``: the scenarios measure what scheduling costs and how much it
        completes (E0's and E4's closed loops, capacity), and the old design's model would
        shed behind its global lock; E5 turns it on, since shedding is what E5 measures."""
        flags: dict[str, object] = {
            "design": design,
            "store": store,
            "log_level": "warning",
            "heartbeat_interval": 30,  # the storm's 10 Hz is far above what keeps a node alive
            "default_max_concurrency": max_concurrency,
            "max_pending_per_session": 64,
            # Every benchmark peer connects from 127.0.0.1: the per-address guard would refuse
            # all but 256 of them, and the session cap must not bind before the RSS figure.
            "max_connections_per_address": 0,
            "max_sessions": max(10_000, self.config.rss_sessions),
        }
        if not shedding:
            flags.update(overload_loop_lag=0, overload_store_backlog=0, overload_queue_age=0)
        flags.update(self.config.serve_flags)  # the caller's own bounds win (--serve-flag)
        if store == "redis":
            assert self.redis_url is not None
            flags["redis_url"] = self.redis_url
            flags["redis_namespace"] = f"bench-{uuid.uuid4().hex[:10]}"
        return flags

    def _load(
        self,
        label: str,
        flags: dict[str, object],
        specs: Callable[[str, int], list[GenSpec]],
        total_s: float,
    ) -> tuple[LoadOutcome, Any, str]:
        server = ServerProc(flags, self.workdir, f"run{next(self._names):02d}")
        server.start()
        try:
            with self.progress(label, total_s) as progress:
                outcome = run_load(server, specs(server.host, server.port), progress=progress)
            try:
                metrics = server.get("/metrics")
            except OSError:  # E5: a swamped scheduler may still be reading its backlog
                metrics = ""
        finally:
            samples = server.stop()
        counters = server.counters()
        build_s = stats.counter_value(metrics, "switchboard_snapshot_build_seconds_sum")
        self._extra = {
            "snapshot_rebuilds": stats.counter_value(
                metrics, "switchboard_snapshot_rebuilds_total"
            ),
            "snapshot_build_cpu_s": None if build_s is None else round(build_s, 2),
            "global_lock_waited_s": counters.get("global_lock_waited_s"),
            "gc": _gc_summary(counters.get("gc")),
            # Whole run, from /metrics: utterances that entered the waiting line (every
            # candidate full, none left, or others already waiting for the same nodes), and
            # reservations that found every candidate full.  E0 gives the nodes enough slots
            # that both should be 0; a wait without a full reservation was not for want of one.
            "slot_waits": stats.counter_value(metrics, "switchboard_queue_wait_seconds_count"),
            "reservations_full": _labelled(
                metrics, "switchboard_reservations_total", 'outcome="full"'
            ),
        }
        return outcome, samples, metrics

    # --- E1 ---------------------------------------------------------------------------------

    def _e1(self) -> None:
        c = self.config
        for store, sessions, design in itertools.product(c.stores, c.e1_sessions, c.designs):
            flags = self._flags(design, store, max_concurrency=c.e1_max_concurrency)
            outcome, samples, metrics = self._load(
                f"E1 {design}/{store} S={sessions}",
                flags,
                functools.partial(e1_spec, c, sessions=sessions),
                c.e1_duration,
            )
            start = min(r.started for r in outcome.results) + c.warmup
            end = min(max(r.ended for r in outcome.results), start - c.warmup + c.e1_duration)
            row = self._row("E1", design, store, sessions, c.storm.hz_calm, outcome)
            row.update(_measured(outcome, samples, [(start, end)]))
            row.update(concurrency=sessions * c.e1_window, phase="load")
            row["histogram_latency_ms"] = stats.histogram_summary_ms(
                stats.histogram_buckets(metrics, HISTOGRAM)
            )
            self.result.rows.append(row)
            if sessions == max(c.e1_sessions):
                self.result.e1_samples[(design, store)] = samples

    # --- E2 ---------------------------------------------------------------------------------

    def _e2(self) -> None:
        c = self.config
        total = sum(seconds for _, seconds in c.phases)
        for store, design in itertools.product(c.stores, c.designs):
            flags = self._flags(design, store, max_concurrency=c.e2_max_concurrency)
            outcome, samples, _metrics = self._load(
                f"E2 {design}/{store} storm on/off",
                flags,
                functools.partial(e2_spec, c),
                total,
            )
            phases = outcome.results[0].phases
            self.result.series.append(Series(design, store, samples, phases))
            for kind, hz in (("calm", c.storm.hz_calm), ("storm", c.storm.hz_storm)):
                # Whole phases: a storm's onset is part of its effect (the warm-up phase
                # before the first calm one is what keeps start-up out of the figures).
                windows = [(s, e) for name, s, e in phases if name == kind]
                row = self._row("E2", design, store, c.e2_sessions, hz, outcome)
                row.update(_measured(outcome, samples, windows))
                row.update(phase=kind, offered_per_s=c.e2_sessions * c.e2_rate)
                if kind == "storm":
                    row["storm"] = _storm_counts(outcome.results)
                self.result.rows.append(row)

    # --- E0 (hot): the scheduler's own cost ---------------------------------------------------

    def _hot(self) -> None:
        c = self.config
        total = sum(seconds for _, seconds in c.hot_phases)
        for store, design in itertools.product(c.stores, c.designs):
            flags = self._flags(design, store, max_concurrency=c.hot_max_concurrency)
            outcome, samples, _metrics = self._load(
                f"E0 {design}/{store} instant nodes",
                flags,
                functools.partial(hot_spec, c),
                total,
            )
            phases = outcome.results[0].phases
            for kind, hz in (("calm", c.storm.hz_calm), ("storm", c.storm.hz_storm)):
                windows = [(s, e) for name, s, e in phases if name == kind]
                row = self._row("E0", design, store, c.hot_sessions, hz, outcome)
                row.update(_measured(outcome, samples, windows))
                row.update(phase=kind, offered_per_s=c.hot_sessions * c.hot_rate)
                if kind == "storm":
                    row["storm"] = _storm_counts(outcome.results)
                self.result.rows.append(row)
        if c.hot_max_sessions <= 0:
            return
        for store, design in itertools.product(c.stores, c.designs):
            flags = self._flags(design, store, max_concurrency=c.hot_max_concurrency)
            outcome, samples, _metrics = self._load(
                f"E0 max {design}/{store} S={c.hot_max_sessions}",
                flags,
                functools.partial(hot_max_spec, c),
                c.hot_max_duration,
            )
            start = min(r.started for r in outcome.results) + c.warmup
            end = min(max(r.ended for r in outcome.results), start - c.warmup + c.hot_max_duration)
            row = self._row("E0", design, store, c.hot_max_sessions, c.storm.hz_calm, outcome)
            row.update(_measured(outcome, samples, [(start, end)]))
            row.update(phase="max", concurrency=c.hot_max_sessions * c.hot_max_window)
            self.result.rows.append(row)

    # --- RSS --------------------------------------------------------------------------------

    def _rss(self) -> None:
        c = self.config
        store = c.stores[0]
        flags = self._flags("snapshot", store, max_concurrency=4)
        outcome, _samples, _metrics = self._load(
            f"RSS {c.rss_sessions} idle sessions", flags, functools.partial(rss_spec, c), 1.0
        )
        connected = sum(r.sessions for r in outcome.results)
        row = self._row("RSS", "snapshot", store, connected, 0.0, outcome)
        grown = outcome.rss_ready - outcome.rss_before
        row.update(
            rss_mib=round(outcome.rss_ready / MIB, 1),
            rss_before_mib=round(outcome.rss_before / MIB, 1),
            rss_per_session_kib=round(grown / max(connected, 1) / 1024, 2),
            latency_ms=None,
            jobs_per_s=None,
        )
        self.result.rows.append(row)

    # --- E3 ---------------------------------------------------------------------------------

    def _e3(self) -> None:
        c = self.config
        path = c.e3_trace
        if path is None:
            path = self.workdir / "sample-trace.jsonl"
            trace.write_trace(path, tracegen.generate())
        for design in c.designs:
            store = c.stores[0]
            flags = self._flags(design, store, max_concurrency=4)
            with self.progress(f"E3 replay {design}/{store} x{c.e3_speed:g}", 0.0):
                report = replay.run_replay(
                    path, speed=c.e3_speed, workdir=self.workdir, server_flags=flags
                )
            self.result.rows.append(_e3_row(design, store, report))

    # --- rows -------------------------------------------------------------------------------

    def _row(
        self, scenario: str, design: str, store: str, sessions: int, hz: float, outcome: LoadOutcome
    ) -> Row:
        results = outcome.results
        tallies = [r.tally for r in results]
        gen_cpu = max((r.cpu_s / max(r.ended - r.started, 1e-9) * 100 for r in results), default=0)
        return {
            "scenario": scenario,
            "design": design,
            "store": store,
            "sessions": sessions,
            "nodes": self.config.nodes if scenario != "RSS" else 0,
            "heartbeat_hz": hz,
            "latency_ms": None,
            "jobs_per_s": None,
            "rss_mib": round(outcome.rss_after / MIB, 1),
            "sent": sum(t.sent for t in tallies),
            "results": sum(t.results for t in tallies),
            "errors": _merged(t.errors for t in tallies),
            "rejected": _merged(t.rejected for t in tallies),
            "out_of_order": sum(t.out_of_order for t in tallies),
            "unanswered": sum(r.unanswered for r in results),
            "connect_failures": sum(sum(r.connect_failures.values()) for r in results),
            "server_cpu_pct": round(outcome.server_cpu_s / max(outcome.wall_s, 1e-9) * 100, 1),
            "generator_cpu_pct": round(gen_cpu, 1),
            "generator_bound": gen_cpu >= GENERATOR_BOUND_PCT,
            "wall_s": round(outcome.wall_s, 2),
            **self._extra,
        }


def _measured(outcome: LoadOutcome, samples: Any, windows: list[tuple[float, float]]) -> Row:
    """Latency and throughput inside the measured windows (warm-up excluded)."""
    server: list[float] = []
    for start, end in windows:
        server += stats.values_between(samples, start, end)
    ext_all = merged_samples(outcome.results, "ext")
    rtt_all = merged_samples(outcome.results, "rtt")
    failed = [t for r in outcome.results for t in r.tally.failed]
    external: list[float] = []
    done = errors = 0
    for start, end in windows:
        external += stats.values_between(ext_all, start, end)
        done += stats.completions_between(rtt_all, start, end)
        errors += sum(1 for t in failed if start <= t < end)
    seconds = sum(max(end - start, 0.0) for start, end in windows)
    return {
        "latency_ms": stats.summary_ms(server),
        "external_latency_ms": stats.summary_ms(external),
        "dispatches_measured": len(server),
        "error_answers": errors,  # answered with an error, sent inside the windows
        "jobs_per_s": round(done / seconds, 1) if seconds > 0 else None,
        "measured_s": round(seconds, 2),
    }


def _labelled(metrics_text: str, name: str, label: str) -> float | None:
    """One labelled child of a Prometheus counter (``name{label}``): 0 when the family is
    exported without that child (prometheus_client shows a child only once it is used),
    None when the family itself is absent."""
    prefix = f"{name}{{{label}}} "
    family = False
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
        family = family or line.startswith(name + "{")
    return 0.0 if family else None


def _gc_summary(raw: object) -> Row | None:
    """Collections per generation, their total time, and the longest pause."""
    if not isinstance(raw, dict):
        return None
    pauses = raw.get("pauses_over_5ms") or []
    return {
        "collections": raw.get("collections"),
        "total_ms": raw.get("total_ms"),
        "pauses_over_5ms": len(pauses),
        "longest_ms": max((p[2] for p in pauses), default=None),
    }


def _merged(counters: Iterable[Counter[str]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(total)


def _storm_counts(results: list[GenResult]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for key in ("heartbeats", "joins", "leaves", "flips", "join_failures"):
            total[key] = total.get(key, 0) + int(getattr(r.storm, key))
    return total


def _e3_row(design: str, store: str, report: replay.ReplayReport) -> Row:
    return {
        "scenario": "E3",
        "design": design,
        "store": store,
        "sessions": report.sessions,
        "nodes": report.nodes,
        "heartbeat_hz": None,
        "latency_ms": None,
        "jobs_per_s": None,
        "rss_mib": None,
        "sent": report.utterances,
        "answered": report.answered,
        "violations": report.violations,
        "violations_by_view": {
            "input": len(report.input),
            "client": len(report.client),
            "server": len(report.server or []),
        },
        "wall_s": round(report.duration_s, 2),
    }


def temporary_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="switchboard-bench-")
