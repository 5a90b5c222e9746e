"""The demo's figures (pure): histogram quantiles as Prometheus computes them, sample
percentiles, and reading a real /metrics page."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from switchboard.demo.stats import (
    bucket_quantile,
    fmt_ms,
    histogram_buckets,
    percentile,
    percentiles,
)

BUCKETS = [(0.1, 10.0), (0.2, 30.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]


def test_bucket_quantile_interpolates_inside_the_bucket() -> None:
    """Prometheus' histogram_quantile: rank 50 falls in (0.2, 0.5] holding ranks 30–90."""
    assert bucket_quantile(0.5, BUCKETS) == pytest.approx(0.2 + 0.3 * (50 - 30) / 60)
    assert bucket_quantile(0.05, BUCKETS) == pytest.approx(0.05)  # first bucket starts at 0
    assert bucket_quantile(0.95, BUCKETS) == pytest.approx(0.5 + 0.5 * 5 / 10)


def test_bucket_quantile_edges() -> None:
    """Ranks in +Inf give the largest finite bound; an empty histogram has no quantile."""
    overflow = [(0.1, 1.0), (math.inf, 10.0)]
    assert bucket_quantile(0.99, overflow) == 0.1
    assert bucket_quantile(0.5, []) is None
    assert bucket_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


def test_histogram_read_from_a_real_metrics_page() -> None:
    """The buckets the scheduler's registry renders are read back, cumulative and sorted."""
    registry = CollectorRegistry()
    hist = Histogram(
        "switchboard_dispatch_latency_seconds", "d", buckets=(0.001, 0.01), registry=registry
    )
    for value in (0.0005, 0.0005, 0.005, 0.5):
        hist.observe(value)
    page = generate_latest(registry).decode()
    buckets = histogram_buckets(page, "switchboard_dispatch_latency_seconds")
    assert buckets == [(0.001, 2.0), (0.01, 3.0), (math.inf, 4.0)]
    assert histogram_buckets(page, "something_else") == []
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.001)


def test_sample_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None
    assert percentiles([3.0, 1.0, 2.0], (0.5, 1.0)) == [2.0, 3.0]
    assert fmt_ms(0.0123) == "12.3 ms" and fmt_ms(None) == "-"
