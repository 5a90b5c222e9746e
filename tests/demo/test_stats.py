"""The demo's figures (pure): sample percentiles and their formatting (histogram quantiles
are tested with ``tools.prom`` in tests/tools/test_prom.py)."""

from __future__ import annotations

from switchboard.demo.stats import fmt_ms, percentile, percentiles


def test_sample_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None
    assert percentiles([3.0, 1.0, 2.0], (0.5, 1.0)) == [2.0, 3.0]
    assert fmt_ms(0.0123) == "12.3 ms" and fmt_ms(None) == "-"
