"""Pure figures for the demo: percentiles of samples and of a Prometheus histogram."""

from __future__ import annotations

import math
from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

Buckets = list[tuple[float, float]]  # (upper bound ``le``, cumulative count), ascending
QUANTILES = (0.5, 0.9, 0.99)


def histogram_buckets(metrics_text: str, name: str) -> Buckets:
    """The cumulative buckets of histogram ``name`` in a ``/metrics`` page (empty if absent)."""
    buckets: Buckets = []
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == name + "_bucket":
                buckets.append((float(sample.labels["le"]), float(sample.value)))
    return sorted(buckets)


def bucket_quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile estimated from cumulative buckets, as Prometheus' ``histogram_quantile``
    does: linear interpolation inside the bucket holding the rank; the first bucket starts at
    0; a rank in the ``+Inf`` bucket returns the largest finite bound.  ``None`` when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted samples; ``None`` when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def percentiles(values: Sequence[float], qs: Sequence[float] = QUANTILES) -> list[float | None]:
    ordered = sorted(values)
    return [percentile(ordered, q) for q in qs]


def fmt_ms(seconds: float | None, digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f} ms"
