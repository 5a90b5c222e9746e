"""The dashboard's history (server/history.py): points from a real Prometheus registry, read by
series name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from switchboard.metrics import Metrics
from switchboard.server.history import History, point, read


def test_a_point_is_what_happened_between_two_readings() -> None:
    """Rate is dispatches per second of the interval, p50/p99 are of that interval's
    dispatches only (not since the start), and errors count error answers only."""
    metrics = Metrics()
    for _ in range(10):
        metrics.dispatch_latency.observe(5.0)  # before the interval: must not show
    before = read(metrics.registry, now=100.0)
    for _ in range(8):
        metrics.dispatch_latency.observe(0.0004)
    metrics.dispatch.answers["result"] += 8
    metrics.dispatch.answers["NO_AVAILABLE_NODE"] += 2
    after = read(metrics.registry, now=102.0)

    p = point(before, after)
    assert p.t == 102.0
    assert p.rate == pytest.approx(4.0)
    assert p.p50_ms is not None and 0.3 < p.p50_ms <= 0.5
    assert p.p99_ms is not None and p.p50_ms <= p.p99_ms <= 0.5
    assert p.errors == 2


def test_an_idle_interval_has_no_latency() -> None:
    """No dispatch in the interval: rate 0 and no percentile (a gap in the chart, not 0 ms)."""
    metrics = Metrics()
    metrics.dispatch_latency.observe(0.001)
    first = read(metrics.registry, now=1.0)
    p = point(first, read(metrics.registry, now=2.0))
    assert (p.rate, p.p50_ms, p.p99_ms, p.errors) == (0.0, None, None, 0)


def test_history_ring_and_totals() -> None:
    """The first tick is the baseline; each tick after adds one point, the ring keeps the
    newest; totals give errors by code, failovers by reason and the gauges."""
    metrics = Metrics()
    history = History(metrics.registry, keep=3)
    assert history.tick(now=0.0) is None
    for second in range(1, 6):
        metrics.dispatch_latency.observe(0.0002)
        history.tick(now=float(second))
    assert [p["t"] for p in history.series()] == [3.0, 4.0, 5.0]
    metrics.dispatch.answers["JOB_TIMEOUT"] += 1
    metrics.dispatch.failovers["node_gone"] = 2
    metrics.sessions.set(7)
    history.tick(now=6.0)
    assert history.totals() == {
        "dispatched": 5,
        "errors": {"JOB_TIMEOUT": 1},
        "failovers": {"node_gone": 2},
        "sessions": 7,
    }


def test_a_reading_runs_only_the_collectors_of_its_series() -> None:
    """A reading (once a second, on the dispatch loop) asks the registry for its own series
    only: a collector of other series (the per-node ones, whose cost grows with the fleet) is
    not run."""
    metrics = Metrics()
    calls: list[int] = []

    class PerNode(Collector):
        def collect(self) -> Iterator[Metric]:
            calls.append(1)
            yield GaugeMetricFamily("test_per_node", "one sample per node", value=1)

    metrics.register(PerNode())
    registered = len(calls)  # auto_describe collects once at registration
    read(metrics.registry, now=1.0)
    assert len(calls) == registered
    assert "test_per_node" in metrics.render().decode()  # a scrape still runs it
