"""The dashboard's pure parts: latency percentiles from histogram buckets, and the page itself."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry, Histogram

from switchboard.metrics import Metrics
from switchboard.server import dashboard
from switchboard.server.history import DISPATCH
from switchboard.server.latency import latency_summary, quantile, registry_buckets

INF = math.inf
# 40 samples: 10 up to 1 s, 10 in (1, 2], 20 in (2, 4], none above.
KNOWN = [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0), (INF, 40.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.25, 1.0), (0.5, 2.0), (0.1, 0.4), (0.75, 3.0), (0.9, 3.6), (0.99, 3.96), (1.0, 4.0)],
)
def test_quantile_interpolates_within_the_bucket(q: float, expected: float) -> None:
    """The rank q×count falls in one bucket; the estimate is linear inside it, from 0 for the
    first bucket (as Prometheus' histogram_quantile)."""
    assert quantile(KNOWN, q) == pytest.approx(expected)


def test_quantile_in_the_inf_bucket_is_the_top_finite_bound() -> None:
    """Samples above every finite bound are reported at the highest finite bound."""
    buckets = [(0.001, 1.0), (0.01, 2.0), (INF, 10.0)]
    assert quantile(buckets, 0.5) == 0.01
    assert quantile([(INF, 3.0)], 0.99) == 0.0


def test_quantile_without_samples_is_none() -> None:
    """No samples, no estimate (and no division by zero)."""
    assert quantile([(1.0, 0.0), (INF, 0.0)], 0.5) is None
    assert quantile([], 0.5) is None


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5])
def test_quantile_outside_zero_one_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        quantile(KNOWN, q)


def test_latency_summary_is_in_milliseconds_or_null() -> None:
    """GET /api/v1/latency's body: count and p50/p90/p99 in ms, null without samples."""
    seconds = [(0.001, 10.0), (0.002, 20.0), (0.004, 40.0), (INF, 40.0)]
    assert latency_summary(seconds) == {"count": 40, "p50_ms": 2.0, "p90_ms": 3.6, "p99_ms": 3.96}
    empty = {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None}
    assert latency_summary([(0.001, 0.0), (INF, 0.0)]) == empty


def test_buckets_are_read_from_a_prometheus_histogram() -> None:
    """The cumulative buckets come straight from the histogram's _bucket samples, in order."""
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "test", buckets=(0.001, 0.01, 0.1), registry=registry)
    for value in (0.0005, 0.005, 0.005, 0.05, 5.0):
        histogram.observe(value)
    buckets = registry_buckets(registry, "t_seconds")
    assert buckets == [(0.001, 1.0), (0.01, 3.0), (0.1, 4.0), (INF, 5.0)]
    assert latency_summary(buckets)["p50_ms"] == pytest.approx(7.75)
    assert registry_buckets(registry, "no_such_seconds") == []


def test_page_is_self_contained_and_writes_no_html() -> None:
    """The page loads nothing from elsewhere, and its script never parses data as HTML."""
    page = dashboard.PAGE.decode()
    assert not re.search(r"""(src|href)\s*=|https?:|//[a-z]""", page.replace(dashboard.SCRIPT, ""))
    assert not re.search(r"https?:", dashboard.SCRIPT)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in dashboard.SCRIPT, sink
    assert dashboard.csp_source(dashboard.SCRIPT) in dashboard.CSP
    assert dashboard.csp_source(dashboard.STYLE) in dashboard.CSP
    assert "unsafe" not in dashboard.CSP


def test_buckets_are_read_from_the_schedulers_own_dispatch_histogram() -> None:
    """The scheduler's lock-free dispatch histogram, exported by its collector at scrape
    time, reads back by series name like any Prometheus histogram."""
    metrics = Metrics()
    for value in (0.0005, 0.005, 0.005, 0.05, 5.0):
        metrics.dispatch_latency.observe(value)
    buckets = registry_buckets(metrics.registry, DISPATCH)
    assert buckets[-1] == (INF, 5.0)
    assert latency_summary(buckets)["count"] == 5
