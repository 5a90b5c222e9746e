"""Prometheus metrics, one registry per scheduler (so tests can run several in one process).

Two kinds of series live here (every one is listed in docs/metrics.md):

* **Per-job series** are plain integer and float attributes of :class:`DispatchStats`, which
  the dispatch core and driver update with ``+=`` (issue 9): ``Counter.inc()`` and
  ``Histogram.observe()`` take a lock on every call, which the hot path cannot afford.  The
  dispatch loop is single-threaded, so nothing else writes these attributes; a scrape reads
  them from the same loop (``/metrics`` is an aiohttp handler), so it never sees half an
  update.  :class:`_DispatchCollector` turns them into metric families at scrape time.
* **Everything else** (per structural change, per session, per process) keeps
  ``prometheus_client``'s own types: they are not on the per-utterance path.

Series describing the live cluster (nodes by status, GPU use) are read from the scheduler at
scrape time by ``server/scrape.py``'s collector, which the scheduler registers here.

**Per-node families** (a node's job count and time, its GPU use) have one sample or two per
connected node, and ``generate_latest`` costs ~5 µs a sample: at 10,000 nodes a scrape held
the loop for over 100 ms, every dispatch waiting behind it.  They are written here as text
instead (:class:`NodeFamily`, a formatted line per sample), and parse exactly as
``prometheus_client``'s own output would (tests/unit/test_metrics.py).

``DispatchStats.answered`` reads ``perf_counter`` for the utterance latency: the dispatch core
itself still reads no clock, and nothing it decides depends on the reading.
"""

from __future__ import annotations

import asyncio
import platform
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from switchboard import __version__
from switchboard.protocol.codes import ErrorCode, ShedReason

# Dispatch latencies are sub-millisecond: buckets from 25 µs up.
_FAST = (25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 0.25, 1.0)
_WAIT = (1e-3, 5e-3, 25e-3, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# An utterance's life and a node's job time are model time: tens of milliseconds to seconds.
_SLOW = (5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_INF = float("inf")
# Nodes written between two returns to the loop by a scrape (~1–2 µs a node).
_NODE_SLICE = 500
RESERVATION_OUTCOMES = ("reserved", "full", "store_down")
# Label values known in advance start at 0, so each has a series from the first scrape on: a
# counter series born at its first increment loses that increment in rate() and increase()
# (Prometheus sees no earlier sample), and the error-rate panel and alert would miss the first
# errors after a quiet spell.
ANSWER_KINDS = (
    "result",
    "node_error",
    ErrorCode.NO_AVAILABLE_NODE.value,
    ErrorCode.NODE_UNAVAILABLE.value,
    ErrorCode.JOB_TIMEOUT.value,
    ErrorCode.NODE_ERROR.value,
    ErrorCode.SCHEDULER_DEPENDENCY_DOWN.value,
    ErrorCode.OVERLOADED.value,
    ErrorCode.SESSION_CLOSED.value,
    ErrorCode.INTERNAL_ERROR.value,
)
FAILOVER_REASONS = ("timeout", "node_offline", "send_failed")


class FastHistogram:
    """A histogram without a lock: ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs in that bound's bucket (le="bound").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, float]]:
        """The ``_bucket`` samples: ``(le, cumulative count)``, ascending, ``+Inf`` last."""
        out: list[tuple[float, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, _INF), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str] = ()) -> None:
        buckets = [("+Inf" if le == _INF else repr(le), count) for le, count in self.cumulative()]
        family.add_metric(list(labels), buckets, self.total)


class DispatchStats:
    """The per-job counters of the dispatch core and driver: plain attributes (see above).

    ``node_jobs`` holds a count and a sum per connected node (``[count, seconds]``), and
    ``job_time`` the histogram of every node's job times together: per-node histograms cost
    ~27 µs each to export (13 buckets of samples), 5 ms a scrape at 200 nodes and far more at
    10,000, all of it on the dispatch loop.  The core drops a node's entry when the node
    leaves, so the label set is bounded by the nodes connected now.
    """

    __slots__ = (
        "answers",
        "dispatch_latency",
        "failovers",
        "full",
        "job_time",
        "node_jobs",
        "queue_wait",
        "refusals",
        "rejections",
        "reserved",
        "shed",
        "store_down",
        "utterance_error",
        "utterance_result",
    )

    def __init__(self) -> None:
        self.dispatch_latency = FastHistogram(_FAST)
        self.queue_wait = FastHistogram(_WAIT)
        self.utterance_result = FastHistogram(_SLOW)
        self.utterance_error = FastHistogram(_SLOW)
        self.reserved = 0
        self.full = 0
        self.store_down = 0
        self.answers = dict.fromkeys(ANSWER_KINDS, 0)  # by kind: "result" or an error code
        self.failovers = dict.fromkeys(FAILOVER_REASONS, 0)  # by reason
        self.rejections: dict[str, int] = {}  # by error code
        self.refusals: dict[str, int] = {}  # connections refused or cut, by error code
        self.shed = dict.fromkeys(
            (r.value for r in ShedReason), 0
        )  # utterances refused OVERLOADED, by reason
        self.job_time = FastHistogram(_SLOW)
        self.node_jobs: dict[str, list[float]] = {}  # node_id → [count, seconds]

    def answered(self, kind: str, received_at: float) -> None:
        """One answer decided: counted by kind, its utterance's life observed by outcome.
        ``received_at`` is the ``perf_counter()`` at which the utterance was read."""
        answers = self.answers
        answers[kind] = answers.get(kind, 0) + 1
        latency = self.utterance_result if kind == "result" else self.utterance_error
        latency.observe(time.perf_counter() - received_at)

    def failover(self, reason: str) -> None:
        self.failovers[reason] = self.failovers.get(reason, 0) + 1

    def rejected(self, code: str) -> None:
        self.rejections[code] = self.rejections.get(code, 0) + 1

    def shed_one(self, reason: str) -> None:
        """A new utterance refused ``OVERLOADED`` (dispatch/overload.py says why)."""
        self.shed[reason] += 1
        self.rejected("OVERLOADED")

    def refused(self, code: str) -> None:
        """A connection refused at its handshake, or cut for its frame rate."""
        self.refusals[code] = self.refusals.get(code, 0) + 1

    def node_job(self, node_id: str, seconds: float) -> None:
        """A node answered a job ``seconds`` after its ``job_assign`` was sent."""
        self.job_time.observe(seconds)
        entry = self.node_jobs.get(node_id)
        if entry is None:
            self.node_jobs[node_id] = [1, seconds]
        else:
            entry[0] += 1
            entry[1] += seconds

    def node_left(self, node_id: str) -> None:
        """Its series goes with it: nodes come and go, the label set must not grow."""
        self.node_jobs.pop(node_id, None)


class _DispatchCollector(Collector):
    """``DispatchStats`` as metric families, built at scrape time."""

    def __init__(self, stats: DispatchStats) -> None:
        self._stats = stats
        # Held from the start: the benchmark swaps in a tap that forwards to this one.
        self._dispatch_latency = stats.dispatch_latency

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        yield _histogram(
            "switchboard_dispatch_latency_seconds",
            "Utterance read off the session socket to job_assign written to the node",
            self._dispatch_latency,
        )
        yield _histogram(
            "switchboard_queue_wait_seconds",
            "Time utterances waited for a free slot",
            s.queue_wait,
        )
        reservations = CounterMetricFamily(
            "switchboard_reservations", "Reservation attempts by outcome", labels=["outcome"]
        )
        for outcome, value in zip(
            RESERVATION_OUTCOMES, (s.reserved, s.full, s.store_down), strict=True
        ):
            reservations.add_metric([outcome], value)
        yield reservations
        yield _counter(
            "switchboard_failovers",
            "Jobs retried on another attempt, by reason",
            "reason",
            s.failovers,
        )
        yield _counter(
            "switchboard_answers",
            "Answers sent to clients, by kind (result or error code)",
            "kind",
            s.answers,
        )
        yield _counter(
            "switchboard_rejections",
            "Utterances refused at once (never accepted), by error code",
            "code",
            s.rejections,
        )
        yield _counter(
            "switchboard_shed",
            "New utterances refused OVERLOADED because the scheduler was saturated, by reason",
            "reason",
            s.shed,
        )
        yield _counter(
            "switchboard_refused_connections",
            "WebSocket connections refused at the handshake or cut for their frame rate, by code",
            "code",
            s.refusals,
        )
        utterance = HistogramMetricFamily(
            "switchboard_utterance_latency_seconds",
            "Utterance read off the session socket to its answer decided, by outcome",
            labels=["outcome"],
        )
        s.utterance_result.add_to(utterance, ["result"])
        s.utterance_error.add_to(utterance, ["error"])
        yield utterance
        yield _histogram(
            "switchboard_job_time_seconds",
            "job_assign sent to the node's job_result, every node together",
            s.job_time,
        )


@dataclass(frozen=True, slots=True)
class NodeFamily:
    """A family with a ``node_id`` label, written as exposition text (format 0.0.4) line by
    line: what ``generate_latest`` would write, at a tenth of its cost."""

    name: str
    doc: str
    kind: str  # "gauge": one value per node; "summary": (count, sum), no quantiles
    rows: Callable[[], Iterable[tuple[str, Sequence[float]]]]  # (node_id, values), read now

    def head(self) -> str:
        doc = self.doc.replace("\\", "\\\\").replace("\n", "\\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n"

    def lines(self, rows: Iterable[tuple[str, Sequence[float]]]) -> str:
        name = self.name
        if self.kind == "summary":
            count, total = f"{name}_count{{node_id=", f"{name}_sum{{node_id="
            return "".join(
                f'{count}"{_label(n)}"}} {_number(c)}\n{total}"{_label(n)}"}} {_number(t)}\n'
                for n, (c, t) in rows
            )
        gauge = f"{name}{{node_id="
        return "".join(f'{gauge}"{_label(n)}"}} {_number(v)}\n' for n, (v,) in rows)

    def render(self) -> str:
        return self.head() + self.lines(self.rows())


def _label(value: str) -> str:
    """A label value escaped as the text format wants (node ids rarely need it)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _number(value: float) -> str:
    text = repr(float(value))  # Python's "inf" and "nan" are the format's "+Inf" and "NaN"
    return text if text[-1].isdigit() else _SPECIAL.get(text, text)


_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def _histogram(name: str, doc: str, hist: FastHistogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    hist.add_to(family)
    return family


def _counter(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class FastCounter:
    """A counter without a lock, read at scrape time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class _ManagementCollector(Collector):
    """The management lock's and the snapshot builder's figures, built at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        yield _histogram(
            "switchboard_management_lock_hold_seconds",
            "Time the management lock was held per change",
            m.lock_hold,
        )
        yield _histogram(
            "switchboard_snapshot_build_seconds",
            "Time to build one snapshot (outside the lock)",
            m.snapshot_build,
        )
        rebuilds = CounterMetricFamily(
            "switchboard_snapshot_rebuilds", "Runtime snapshots published"
        )
        rebuilds.add_metric([], m.snapshot_rebuilds.value)
        yield rebuilds


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.dispatch = DispatchStats()
        r.register(_DispatchCollector(self.dispatch))
        node_jobs = self.dispatch.node_jobs
        self._node_families: list[NodeFamily] = [
            NodeFamily(
                "switchboard_node_job_seconds",
                "job_assign sent to the node's job_result, by connected node",
                "summary",
                lambda: list(node_jobs.items()),  # node_id → [count, seconds]
            )
        ]
        # The dashboard and the benchmark's tap read this one by name.
        self.dispatch_latency = self.dispatch.dispatch_latency
        # Observed at every structural change (a join, a flip): lock-free, as the dispatch
        # figures are (prometheus_client's Histogram takes a lock and walks its buckets,
        # ~3 µs an observation, a tenth of what a change may cost at all).
        self.lock_hold = FastHistogram(_FAST)
        self.snapshot_build = FastHistogram(_FAST)
        self.snapshot_rebuilds = FastCounter()
        r.register(_ManagementCollector(self))
        self.nodes = Gauge("switchboard_nodes", "Connected nodes", registry=r)
        self.sessions = Gauge("switchboard_sessions", "Open sessions", registry=r)
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds, start time, …
        ProcessCollector(registry=r)
        Info("switchboard_build", "Version of this scheduler and of its Python", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )

    def register(self, collector: Collector) -> None:
        """Add series read at scrape time (``server/scrape.py``)."""
        self.registry.register(collector)

    def register_nodes(self, family: NodeFamily) -> None:
        """Add a per-node family, read at scrape time and written as text (see above)."""
        self._node_families.append(family)

    def render(self) -> bytes:
        text = "".join(family.render() for family in self._node_families)
        return generate_latest(self.registry) + text.encode()

    async def render_in_slices(self) -> bytes:
        """``render``, giving the loop back between slices of nodes (``/metrics``): each
        family's rows are read at once, so the page is one moment's, but no dispatch waits
        behind more than one slice of them."""
        parts = [generate_latest(self.registry)]
        for family in self._node_families:
            rows = list(family.rows())
            parts.append(family.head().encode())
            for start in range(0, len(rows), _NODE_SLICE):
                await asyncio.sleep(0)
                parts.append(family.lines(rows[start : start + _NODE_SLICE]).encode())
        return b"".join(parts)
