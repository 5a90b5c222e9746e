"""Percentiles and time series from exact samples, and quantiles from a Prometheus histogram.

Samples are flat arrays of ``(time, seconds)`` pairs (what the scheduler's tap and the load
generator keep).  Percentiles are nearest-rank on the sorted values: no interpolation, so every
figure is a latency that was actually observed.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable, Sequence

QUANTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
)
Summary = dict[str, float]


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


_BUCKET = re.compile(
    r'^(?P<name>\w+)_bucket\{(?:[^}]*,)?le="(?P<le>[^"]+)"[^}]*\}\s+(?P<count>\S+)'
)


def counter_value(metrics_text: str, name: str) -> float | None:
    """The value of an unlabelled counter or gauge in Prometheus text."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def histogram_buckets(metrics_text: str, name: str) -> list[tuple[float, float]]:
    """``(upper bound, cumulative count)`` of one Prometheus histogram, in bound order."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        match = _BUCKET.match(line)
        if match and match["name"] == name:
            buckets.append((float(match["le"]), float(match["count"])))
    return sorted(buckets)


def histogram_summary_ms(buckets: Iterable[tuple[float, float]]) -> Summary | None:
    """Quantiles as PromQL's ``histogram_quantile`` estimates them (linear inside a bucket),
    to show how far the coarse buckets are from the exact samples."""
    ordered = list(buckets)
    if not ordered or ordered[-1][1] == 0:
        return None
    total = ordered[-1][1]
    out: Summary = {}
    for name, q in QUANTILES:
        out[name] = round(_bucket_quantile(ordered, q * total) * 1e3, 4)
    finite = [b for b in ordered if math.isfinite(b[0])]
    out["max"] = round((finite[-1][0] if finite else math.inf) * 1e3, 4)
    return out


def _bucket_quantile(buckets: list[tuple[float, float]], rank: float) -> float:
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if not math.isfinite(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower
