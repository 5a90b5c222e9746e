"""Reading a scheduler's ``/metrics`` page: counters, histogram buckets, quantiles.

The text is parsed by ``prometheus_client.parser`` (the exposition format has escapes, label
order and ``+Inf`` that a regular expression gets wrong sooner or later).  Samples are matched
by their own name, not their family's, so a page without ``# TYPE`` lines (a hand-written test
page, an older exporter) reads the same as the scheduler's own.

:func:`histogram_quantile` is PromQL's estimate from cumulative buckets.  The scheduler's
dashboard has its own copy (``server/latency.py``): the product never imports a tool.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

Buckets = list[tuple[float, float]]
"""``(upper bound le, cumulative count)`` pairs, ascending by bound, the last one ``+Inf``."""


def samples(metrics_text: str) -> Iterator[Sample]:
    """Every sample on the page, in page order (raises ``ValueError`` on a malformed page)."""
    for family in text_string_to_metric_families(metrics_text):
        yield from family.samples


def counter_value(metrics_text: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` (a counter's ``…_total``, a gauge, a
    histogram's ``…_sum``), or None when the page has none."""
    for sample in samples(metrics_text):
        if sample.name == name and not sample.labels:
            return float(sample.value)
    return None


def histogram_buckets(metrics_text: str, name: str) -> Buckets:
    """The cumulative buckets of histogram ``name`` (empty if absent), ascending by bound."""
    wanted = name + "_bucket"
    return sorted(
        (float(sample.labels["le"]), float(sample.value))
        for sample in samples(metrics_text)
        if sample.name == wanted and "le" in sample.labels
    )


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile estimated as PromQL's ``histogram_quantile`` does; None when empty.

    Find the bucket holding rank ``q × count`` and interpolate linearly inside it (the first
    bucket starts at 0); a rank in the ``+Inf`` bucket gets the largest finite bound, the most
    a histogram can say.
    """
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
