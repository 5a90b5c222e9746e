"""Latency percentiles from a Prometheus histogram's cumulative buckets (pure).

Estimated as Prometheus' ``histogram_quantile`` does (linear within a bucket), so they are only
as fine as the buckets of :mod:`switchboard.metrics`.  Used by ``GET /api/v1/latency`` and by
the dashboard's history (:mod:`switchboard.server.history`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry

Buckets = Sequence[tuple[float, float]]
"""``(upper bound, cumulative count)`` pairs in ascending order, the last bound ``+Inf``."""

QUANTILES: Final = (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99))


def quantile(buckets: Buckets, q: float) -> float | None:
    """The ``q``-quantile estimated from cumulative buckets, ``None`` with no samples.

    As Prometheus' ``histogram_quantile``: find the bucket holding rank ``q × count`` and
    interpolate linearly inside it (the first bucket starts at 0); a rank in the ``+Inf``
    bucket gets the highest finite bound, the most a histogram can say.
    """
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], not {q}")
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            # below < rank <= cumulative: this bucket holds at least one sample.
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower


def latency_summary(buckets: Buckets) -> dict[str, int | float | None]:
    """The body of ``GET /api/v1/latency``: sample count and p50/p90/p99 in ms (µs precision),
    each ``null`` while there are no samples."""
    summary: dict[str, int | float | None] = {"count": int(buckets[-1][1]) if buckets else 0}
    for key, q in QUANTILES:
        seconds = quantile(buckets, q)
        summary[key] = None if seconds is None else round(seconds * 1000, 3)
    return summary


def registry_buckets(registry: CollectorRegistry, name: str) -> list[tuple[float, float]]:
    """The cumulative buckets of the unlabelled histogram called ``name`` in ``registry``
    (found by its series name: docs/metrics.md), empty when there is none."""
    for family in registry.collect():
        if family.name == name:
            return sorted(
                (float(s.labels["le"]), s.value)
                for s in family.samples
                if s.name == name + "_bucket"
            )
    return []
