"""Pure figures for the demo: percentiles of samples (a histogram's are ``tools.prom``'s)."""

from __future__ import annotations

import math
from collections.abc import Sequence

QUANTILES = (0.5, 0.9, 0.99)


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
