"""Reading /metrics with prometheus_client's parser, and PromQL's histogram_quantile."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from switchboard.tools.prom import counter_value, histogram_buckets, histogram_quantile

BUCKETS = [(0.1, 10.0), (0.2, 30.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    """Prometheus' histogram_quantile: rank 50 falls in (0.2, 0.5] holding ranks 30–90."""
    assert histogram_quantile(0.5, BUCKETS) == pytest.approx(0.2 + 0.3 * (50 - 30) / 60)
    assert histogram_quantile(0.05, BUCKETS) == pytest.approx(0.05)  # first bucket starts at 0
    assert histogram_quantile(0.95, BUCKETS) == pytest.approx(0.5 + 0.5 * 5 / 10)


def test_histogram_quantile_edges() -> None:
    """Ranks in +Inf give the largest finite bound; an empty histogram has no quantile."""
    overflow = [(0.1, 1.0), (math.inf, 10.0)]
    assert histogram_quantile(0.99, overflow) == 0.1
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


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
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.001)


def test_untyped_page_reads_like_a_typed_one() -> None:
    """Samples match by their own name, so a page without # TYPE lines still reads."""
    text = "\n".join(
        [
            'lat_bucket{le="0.001"} 50.0',
            'lat_bucket{le="0.002"} 100.0',
            'lat_bucket{le="+Inf"} 100.0',
            'other_bucket{le="1"} 7.0',
            "lat_sum 0.12",
        ]
    )
    assert histogram_buckets(text, "lat") == [(0.001, 50.0), (0.002, 100.0), (math.inf, 100.0)]
    assert counter_value(text, "lat_sum") == 0.12
    assert counter_value(text, "missing") is None


def test_counter_value_reads_unlabelled_samples_only() -> None:
    """A counter's ``_total`` sample is found; a labelled series of the same name is not."""
    registry = CollectorRegistry()
    Counter("jobs", "d", registry=registry).inc(3)
    Counter("errors", "d", ["code"], registry=registry).labels(code="X").inc()
    page = generate_latest(registry).decode()
    assert counter_value(page, "jobs_total") == 3.0
    assert counter_value(page, "errors_total") is None
