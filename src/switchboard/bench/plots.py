"""PNG plots of a benchmark run (matplotlib, Agg backend: no display needed).

``latency_cdf.png``       the scheduler's dispatch latency CDF per design and store (E2, every
                          phase); the x axis is logarithmic, so the old design's tail fits.
``latency_timeline.png``  p50 and p99 per 0.5 s over E2, storm phases shaded, one panel per
                          store.
``e5_goodput.png``, ``e5_p99.png``, ``e5_groups.png``
                          E5: goodput and p99 against the offered load, and per tenant and
                          priority class (``write_e5_plots``, from the report's rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from switchboard.bench import stats
from switchboard.bench.runs import Series

Row = dict[str, Any]

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


# --- E5 (issue 14): saturation ---------------------------------------------------------------

_STORE_COLORS = {"memory": "tab:blue", "redis": "tab:red"}


def write_e5_plots(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """``e5_goodput.png`` (goodput vs offered), ``e5_p99.png`` (p99 vs offered, log) and
    ``e5_groups.png`` (per tenant and per priority class); none without E5 level rows."""
    e5 = [r for r in rows if r.get("scenario") == "E5"]
    if not any(r.get("phase") == "level" for r in e5):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_e5_goodput(e5, out_dir / "e5_goodput.png"), _e5_p99(e5, out_dir / "e5_p99.png")]
    if any(r.get("phase") in ("tenants", "priority") for r in e5):
        written.append(_e5_groups(e5, out_dir / "e5_groups.png"))
    return written


def _levels(rows: Sequence[Row], store: str) -> list[Row]:
    mine = [r for r in rows if r["store"] == store and r.get("phase") == "level"]
    return sorted(mine, key=lambda r: float(r.get("sent_per_s") or 0))


def _stores(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r["store"] for r in rows))


def _e5_goodput(rows: Sequence[Row], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    top = 0.0
    for store in _stores(rows):
        levels = _levels(rows, store)
        if not levels:
            continue
        xs = [float(r["sent_per_s"]) for r in levels]
        ys = [float(r["goodput_per_s"]) for r in levels]
        color = _STORE_COLORS.get(store, "gray")
        ax.plot(xs, ys, "o-", color=color, label=f"{store}: goodput")
        capacity = float(levels[0]["capacity_per_s"])
        ax.axhline(capacity, color=color, linestyle=":", label=f"{store}: C = {capacity:,.0f}/s")
        top = max(top, *xs)
    ax.plot([0, top], [0, top], "--", color="gray", alpha=0.5, label="goodput = offered")
    ax.set_xlabel("offered (utterances/s actually sent)")
    ax.set_ylabel("goodput (results/s while the load was on)")
    ax.set_title("E5: goodput vs offered load")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _e5_p99(rows: Sequence[Row], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for store in _stores(rows):
        color = _STORE_COLORS.get(store, "gray")
        for field, style, what in (
            ("accepted_latency_ms", "o-", "accepted p99"),
            ("overloaded_latency_ms", "s:", "OVERLOADED p99"),
        ):
            points = [
                (float(r["sent_per_s"]), float(r[field]["p99"]))
                for r in _levels(rows, store)
                if isinstance(r.get(field), dict)
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, color=color, label=f"{store}: {what}")
    ax.set_yscale("log")
    ax.set_xlabel("offered (utterances/s actually sent)")
    ax.set_ylabel("p99 (ms, log): send → answer")
    ax.set_title("E5: p99 vs offered load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _e5_groups(rows: Sequence[Row], path: Path) -> Path:
    """Tenants: served vs fair share, p99 together vs alone; classes: goodput and p99."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=110)
    bars: dict[str, list[tuple[str, float, float]]] = {"fair": [], "p99": [], "class": []}
    for row in rows:
        for name, g in (row.get("groups") or {}).items():
            label = f"{row['store']}\n{name}"
            p99 = (g.get("accepted_latency_ms") or {}).get("p99") or 0.0
            if row.get("phase") == "tenants":
                bars["fair"].append((label, g.get("fair_share_per_s") or 0.0, g["goodput_per_s"]))
                alone = (g.get("solo_accepted_latency_ms") or {}).get("p99") or 0.0
                bars["p99"].append((label, alone, p99))
            elif row.get("phase") == "priority":
                bars["class"].append((label, g["goodput_per_s"], p99))
    panels = (
        (axes[0], bars["fair"], ("fair share/s", "served/s"), "tenants: served vs fair share"),
        (axes[1], bars["p99"], ("p99 alone", "p99 together"), "tenants: p99 (ms, log)"),
        (axes[2], bars["class"], ("goodput/s", "p99 ms"), "priority classes"),
    )
    for ax, data, names, title in panels:
        xs = range(len(data))
        ax.bar([x - 0.2 for x in xs], [d[1] for d in data], 0.4, label=names[0])
        ax.bar([x + 0.2 for x in xs], [d[2] for d in data], 0.4, label=names[1])
        ax.set_xticks(list(xs), [d[0] for d in data], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
