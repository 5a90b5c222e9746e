"""Percentiles of exact samples and of the Prometheus histogram."""

from __future__ import annotations

from array import array

from switchboard.bench import stats


def test_nearest_rank_percentiles_in_ms() -> None:
    summary = stats.summary_ms([i / 1000 for i in range(1, 1001)])  # 1 ms … 1000 ms
    assert summary == {"p50": 500.0, "p90": 900.0, "p99": 990.0, "p999": 999.0, "max": 1000.0}
    assert stats.summary_ms([]) is None


def test_windows_select_by_time() -> None:
    samples = array("d", [0.0, 0.1, 1.0, 0.2, 2.0, 0.3])
    assert stats.values_between(samples, 0.5, 2.0) == [0.2]
    assert stats.completions_between(samples, 0.0, 1.25) == 2  # 0.1 and 1.2 complete in time


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    text = "\n".join(
        [
            'switchboard_dispatch_latency_seconds_bucket{le="0.001"} 50.0',
            'switchboard_dispatch_latency_seconds_bucket{le="0.002"} 100.0',
            'switchboard_dispatch_latency_seconds_bucket{le="+Inf"} 100.0',
            'other_bucket{le="1"} 7.0',
        ]
    )
    buckets = stats.histogram_buckets(text, "switchboard_dispatch_latency_seconds")
    assert buckets[0] == (0.001, 50.0)
    summary = stats.histogram_summary_ms(buckets)
    assert summary is not None
    assert summary["p50"] == 1.0 and summary["p90"] == 1.8
