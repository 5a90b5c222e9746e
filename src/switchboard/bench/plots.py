"""PNG plots of a benchmark run (matplotlib, Agg backend: no display needed).

``latency_cdf.png``       the scheduler's dispatch latency CDF per design and store (E2, every
                          phase); the x axis is logarithmic, so the old design's tail fits.
``latency_timeline.png``  p50 and p99 per 0.5 s over E2, storm phases shaded, one panel per
                          store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from switchboard.bench import stats
from switchboard.bench.runs import Series

_COLORS = {"snapshot": "tab:blue", "global_lock": "tab:red"}
_STYLES = {"memory": "-", "redis": "--"}


def _pyplot() -> Any:
    """pyplot on the Agg backend, imported only when plotting (matplotlib is optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(series: Sequence[Series], out_dir: Path) -> list[Path]:
    """Both figures into ``out_dir``; the paths written (none without E2 samples)."""
    if not any(len(s.server) for s in series):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _cdf(series, out_dir / "latency_cdf.png"),
        _timeline(series, out_dir / "latency_timeline.png"),
    ]


def _cdf(series: Sequence[Series], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for s in series:
        values = sorted(v * 1e3 for v in s.server[1::2])
        if not values:
            continue
        n = len(values)
        ax.plot(
            values,
            [(i + 1) / n for i in range(n)],
            _STYLES.get(s.store, "-"),
            color=_COLORS.get(s.design, "gray"),
            label=f"{s.design} / {s.store} (n={n:,})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("dispatch latency (ms, log scale): utterance read → job_assign written")
    ax.set_ylabel("fraction of utterances")
    ax.set_title("E2: scheduling latency CDF, all phases (warm-up included)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _timeline(series: Sequence[Series], path: Path) -> Path:
    plt = _pyplot()
    stores = sorted({s.store for s in series})
    fig, axes = plt.subplots(len(stores), 1, figsize=(9, 3.2 * len(stores)), dpi=110, squeeze=False)
    for ax, store in zip(axes[:, 0], stores, strict=True):
        for s in (s for s in series if s.store == store):
            _plot_series(ax, s)
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(f"E2 over time, {store} store (shaded: heartbeat storm)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("seconds since the first phase began")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_series(ax: Any, s: Series) -> None:
    if not s.phases:
        return
    start, end = s.phases[0][1], s.phases[-1][2]
    for name, p_start, p_end in s.phases:
        if name == "storm":
            ax.axvspan(p_start - start, p_end - start, color="orange", alpha=0.08)
    bins = stats.timeline(s.server, start, end, width=0.5)
    if not bins:
        return
    xs = [b[0] for b in bins]
    color = _COLORS.get(s.design, "gray")
    ax.plot(xs, [b[2] for b in bins], "-", color=color, label=f"{s.design} p99")
    ax.plot(xs, [b[1] for b in bins], ":", color=color, label=f"{s.design} p50")
