"""The dashboard's recent history: one point a second, kept for the last few minutes.

A single task per scheduler process reads the metrics registry once a second and turns the
change since the previous reading into a :class:`Point` (dispatches per second, dispatch p50
and p99 of that second, answers that were errors), kept in a fixed-size ring.  Series are found
by their Prometheus names through ``registry.collect()`` (docs/metrics.md lists them), not
through attributes of :class:`switchboard.metrics.Metrics`: the names are the stable contract,
the Python attributes are not.  Nothing here runs per job; the hot path is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from switchboard.server.latency import Buckets, quantile

log = logging.getLogger("switchboard.server")

DISPATCH: Final = "switchboard_dispatch_latency_seconds"
ANSWERS: Final = "switchboard_answers"
FAILOVERS: Final = "switchboard_failovers"
GAUGES: Final = ("switchboard_sessions", "switchboard_nodes")
# The samples a reading takes: the registry is asked through a view of just these, so only the
# collectors that make them run (not the per-node ones: a reading with 200 nodes took ~8 ms of
# the dispatch loop when it collected everything).
SAMPLES: Final = (DISPATCH + "_bucket", ANSWERS + "_total", FAILOVERS + "_total", *GAUGES)
RESULT_KIND: Final = "result"  # the `kind` of answers that are not errors

PERIOD: Final = 1.0  # seconds between two readings
KEEP: Final = 300  # points kept: five minutes


@dataclass(frozen=True, slots=True)
class Reading:
    """The registry at one moment: cumulative counters and the gauges."""

    t: float
    dispatch_buckets: tuple[tuple[float, float], ...] = ()
    answers: Mapping[str, float] = field(default_factory=dict)
    failovers: Mapping[str, float] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)

    @property
    def dispatched(self) -> float:
        return self.dispatch_buckets[-1][1] if self.dispatch_buckets else 0.0


@dataclass(frozen=True, slots=True)
class Point:
    """What happened between two readings (one chart point)."""

    t: float  # unix seconds at the end of the interval
    rate: float  # dispatches per second
    p50_ms: float | None  # None: no dispatch in the interval
    p99_ms: float | None
    errors: int  # answers that were errors

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "t": round(self.t, 3),
            "rate": round(self.rate, 3),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
        }


def _by_label(metric: Metric, label: str) -> dict[str, float]:
    return {
        s.labels.get(label, ""): s.value for s in metric.samples if s.name == metric.name + "_total"
    }


def read(registry: CollectorRegistry, now: float) -> Reading:
    """Take a :class:`Reading` of ``registry`` (names as in docs/metrics.md)."""
    buckets: list[tuple[float, float]] = []
    answers: dict[str, float] = {}
    failovers: dict[str, float] = {}
    gauges: dict[str, float] = {}
    for metric in registry.restricted_registry(SAMPLES).collect():
        if metric.name == DISPATCH:
            buckets = sorted(
                (float(s.labels["le"]), s.value)
                for s in metric.samples
                if s.name == DISPATCH + "_bucket"
            )
        elif metric.name == ANSWERS:
            answers = _by_label(metric, "kind")
        elif metric.name == FAILOVERS:
            failovers = _by_label(metric, "reason")
        elif metric.name in GAUGES:
            gauges[metric.name] = sum(s.value for s in metric.samples if s.name == metric.name)
    return Reading(now, tuple(buckets), answers, failovers, gauges)


def _bucket_delta(new: Buckets, old: Buckets) -> list[tuple[float, float]]:
    before = dict(old)
    return [(bound, count - before.get(bound, 0.0)) for bound, count in new]


def _ms(buckets: Buckets, q: float) -> float | None:
    seconds = quantile(buckets, q)
    return None if seconds is None else round(seconds * 1000, 3)


def point(old: Reading, new: Reading) -> Point:
    """The chart point for the interval from ``old`` to ``new``."""
    delta = _bucket_delta(new.dispatch_buckets, old.dispatch_buckets)
    span = max(new.t - old.t, 1e-9)
    errors = sum(
        count - old.answers.get(kind, 0.0)
        for kind, count in new.answers.items()
        if kind != RESULT_KIND
    )
    return Point(
        t=new.t,
        rate=max(new.dispatched - old.dispatched, 0.0) / span,
        p50_ms=_ms(delta, 0.5),
        p99_ms=_ms(delta, 0.99),
        errors=int(errors),
    )


def _nonzero(counts: Mapping[str, float]) -> dict[str, int]:
    return {key: int(value) for key, value in sorted(counts.items()) if value}


class History:
    """The ring of points, and the newest reading's totals; :meth:`tick` adds one point.

    ``changed`` is set after every tick, and replaced by a fresh event, so each waiting
    stream wakes exactly once a tick (:meth:`next_tick`).
    """

    def __init__(self, registry: CollectorRegistry, *, keep: int = KEEP) -> None:
        self._registry = registry
        self.points: deque[Point] = deque(maxlen=keep)
        self.last: Reading | None = None
        self._changed = asyncio.Event()

    def tick(self, now: float | None = None) -> Point | None:
        reading = read(self._registry, time.time() if now is None else now)
        previous, self.last = self.last, reading
        if previous is None:
            return None
        new = point(previous, reading)
        self.points.append(new)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return new

    async def next_tick(self) -> None:
        await self._changed.wait()

    def totals(self) -> dict[str, object]:
        """Errors by code and failovers by reason since the start, and the gauges now."""
        last = self.last or Reading(0.0)
        return {
            "dispatched": int(last.dispatched),
            "errors": _nonzero({k: v for k, v in last.answers.items() if k != RESULT_KIND}),
            "failovers": _nonzero(last.failovers),
            "sessions": int(last.gauges.get("switchboard_sessions", 0)),
        }

    def series(self, points: Iterable[Point] | None = None) -> list[dict[str, float | int | None]]:
        return [p.to_json() for p in (self.points if points is None else points)]


HISTORY: Final = web.AppKey("history", History)


def sampling(
    registry_of: Callable[[web.Application], CollectorRegistry], *, period: float = PERIOD
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp ``cleanup_ctx`` that keeps ``app[HISTORY]`` ticking while the app runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        history = app[HISTORY] = History(registry_of(app))
        history.tick()  # the first reading: the baseline of the first point

        async def loop() -> None:
            failing = False
            while True:
                await asyncio.sleep(period)
                try:
                    history.tick()
                except Exception:  # a collector that fails must not end the history
                    if not failing:  # once a failing spell, not once a second
                        log.exception("dashboard history: reading the metrics failed")
                    failing = True
                else:
                    failing = False

        task = asyncio.create_task(loop(), name="dashboard-history")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
