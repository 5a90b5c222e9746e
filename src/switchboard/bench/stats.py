"""Percentiles and time series from exact samples, and quantiles from a Prometheus histogram
(read and estimated by ``switchboard.tools.prom``).

Samples are flat arrays of ``(time, seconds)`` pairs (what the scheduler's tap and the load
generator keep).  Percentiles are nearest-rank on the sorted values: no interpolation, so every
figure is a latency that was actually observed.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

from switchboard.tools.prom import counter_value, histogram_buckets, histogram_quantile

QUANTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
)
Summary = dict[str, float]
__all__ = [
    "QUANTILES",
    "Summary",
    "completions_between",
    "counter_value",  # reading /metrics lives in tools.prom; re-exported for runs.py
    "histogram_buckets",
    "histogram_summary_ms",
    "summary_ms",
    "timeline",
    "values_between",
]


def summary_ms(seconds: Sequence[float]) -> Summary | None:
    """p50, p90, p99, p99.9 and max in milliseconds; ``None`` without samples."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    n = len(ordered)
    out = {name: ordered[max(0, math.ceil(q * n) - 1)] * 1e3 for name, q in QUANTILES}
    out["max"] = ordered[-1] * 1e3
    return {key: round(value, 4) for key, value in out.items()}


def values_between(samples: array[float], start: float, end: float) -> list[float]:
    """The latencies of the pairs whose time lies in ``[start, end)``."""
    times, values = samples[0::2], samples[1::2]
    return [v for t, v in zip(times, values, strict=True) if start <= t < end]


def completions_between(samples: array[float], start: float, end: float) -> int:
    """Pairs ``(sent, round trip)`` that completed (sent + round trip) in ``[start, end)``."""
    times, values = samples[0::2], samples[1::2]
    return sum(1 for t, v in zip(times, values, strict=True) if start <= t + v < end)


def timeline(
    samples: array[float], start: float, end: float, *, width: float
) -> list[tuple[float, float, float, int]]:
    """Per ``width``-second bin from ``start``: (bin middle − start, p50 ms, p99 ms, count)."""
    bins: dict[int, list[float]] = {}
    for t, v in zip(samples[0::2], samples[1::2], strict=True):
        if start <= t < end:
            bins.setdefault(int((t - start) / width), []).append(v)
    out: list[tuple[float, float, float, int]] = []
    for b in sorted(bins):
        summary = summary_ms(bins[b])
        assert summary is not None
        out.append(((b + 0.5) * width, summary["p50"], summary["p99"], len(bins[b])))
    return out


def histogram_summary_ms(buckets: Iterable[tuple[float, float]]) -> Summary | None:
    """Quantiles as PromQL's ``histogram_quantile`` estimates them (linear inside a bucket),
    to show how far the coarse buckets are from the exact samples."""
    ordered = list(buckets)
    if not ordered or ordered[-1][1] == 0:
        return None
    out: Summary = {}
    for name, q in QUANTILES:
        seconds = histogram_quantile(q, ordered)
        assert seconds is not None  # the histogram has samples
        out[name] = round(seconds * 1e3, 4)
    finite = [b for b in ordered if math.isfinite(b[0])]
    out["max"] = round((finite[-1][0] if finite else math.inf) * 1e3, 4)
    return out
