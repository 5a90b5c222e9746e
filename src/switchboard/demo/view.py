"""How the demo shows itself: a live ``rich`` view on a terminal, plain lines elsewhere (CI),
and a summary at the end.  Rendering only: every figure comes in as a value."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from switchboard.demo.load import Tally
from switchboard.demo.monitor import Reading
from switchboard.demo.stats import fmt_ms, percentiles

_STATUS_STYLE = {"ready": "green", "registering": "yellow", "degraded": "red", "draining": "cyan"}


@dataclass(frozen=True, slots=True)
class Frame:
    """Everything one refresh of the view shows."""

    elapsed: float
    duration: float
    reading: Reading
    rate: float | None
    tally: Tally
    open_sessions: int


def _load_bar(reserved: int | None, capacity: int, width: int = 10) -> str:
    if reserved is None or capacity <= 0:
        return "?"
    filled = round(width * min(reserved, capacity) / capacity)
    return "█" * filled + "·" * (width - filled) + f" {reserved}/{capacity}"


def render(frame: Frame) -> RenderableType:
    """The live view: a node table and a figures table."""
    nodes = Table(title="nodes (GET /api/v1/nodes)", expand=True)
    for column in ("node", "status", "load", "pairs"):
        nodes.add_column(column)
    for row in frame.reading.nodes:
        style = _STATUS_STYLE.get(row.status, "white")
        nodes.add_row(
            row.node_id,
            Text(row.status, style=style),
            _load_bar(row.reserved, row.max_concurrency),
            row.pairs,
        )
    figures = Table(title="traffic", expand=True, show_header=False)
    figures.add_column("what")
    figures.add_column("value")
    for what, value in _figures(frame):
        figures.add_row(what, value)
    return Group(nodes, figures)


def _figures(frame: Frame) -> list[tuple[str, str]]:
    t = frame.tally
    sched = frame.reading.scheduling
    rtt = percentiles(t.round_trips)
    errors = ", ".join(f"{code} {n}" for code, n in sorted(t.errors.items())) or "none"
    return [
        ("time", f"{frame.elapsed:.1f} s of {frame.duration:.0f} s"),
        ("sessions open", str(frame.open_sessions)),
        ("utterances", f"sent {t.sent}  answered {t.answered}  in flight {t.sent - t.answered}"),
        ("errors", errors),
        ("shed (OVERLOADED)", _shed(frame.reading.shed)),
        ("dispatches/s", "-" if frame.rate is None else f"{frame.rate:.1f}"),
        ("scheduling p50/p90/p99", " / ".join(fmt_ms(v, 2) for v in sched)),
        ("round trip p50/p90/p99", " / ".join(fmt_ms(v) for v in rtt)),
    ]


def _shed(shed: dict[str, int]) -> str:
    total = sum(shed.values())
    if not total:
        return "none"
    return f"{total} (" + ", ".join(f"{r} {n}" for r, n in sorted(shed.items()) if n) + ")"


def plain_line(frame: Frame) -> str:
    """One line per refresh when stdout is not a terminal."""
    t = frame.tally
    sched = frame.reading.scheduling
    rtt = percentiles(t.round_trips)
    ready = sum(1 for row in frame.reading.nodes if row.status == "ready")
    rate = "-" if frame.rate is None else f"{frame.rate:.1f}"
    return (
        f"t={frame.elapsed:.1f}s nodes_ready={ready}/{len(frame.reading.nodes)}"
        f" sessions={frame.open_sessions} sent={t.sent} answered={t.answered}"
        f" errors={sum(t.errors.values())} shed={sum(frame.reading.shed.values())}"
        f" dispatch/s={rate}"
        f" sched_p50={fmt_ms(sched[0], 2)} sched_p99={fmt_ms(sched[2], 2)}"
        f" rtt_p50={fmt_ms(rtt[0])} rtt_p99={fmt_ms(rtt[2])}"
    ).replace(" ms", "ms")


def summary_lines(
    tally: Tally,
    *,
    seconds: float,
    scheduling: tuple[float | None, ...],
    exits: dict[str, int],
    shed: dict[str, int] | None = None,
) -> list[str]:
    """The end-of-run report; its first line is the one to quote."""
    rtt = percentiles(tally.round_trips)
    throughput = tally.answered / seconds if seconds > 0 else 0.0
    errors = ", ".join(f"{code}={n}" for code, n in sorted(tally.errors.items())) or "none"
    failures = ", ".join(f"{k}={n}" for k, n in sorted(tally.session_failures.items())) or "none"
    processes = ", ".join(f"{name}={status}" for name, status in exits.items()) or "none"
    return [
        f"summary: sent {tally.sent}, answered {tally.answered}"
        f" (results {tally.results}, errors {sum(tally.errors.values())}), lost {tally.lost};"
        f" {throughput:.1f} answers/s over {seconds:.1f} s;"
        f" round trip p50 {fmt_ms(rtt[0])} p90 {fmt_ms(rtt[1])} p99 {fmt_ms(rtt[2])};"
        f" scheduling p50 {fmt_ms(scheduling[0], 3)} p90 {fmt_ms(scheduling[1], 3)}"
        f" p99 {fmt_ms(scheduling[2], 3)}",
        f"errors by code: {errors}",
        f"shed by the scheduler (OVERLOADED, resent by the SDK): {_shed(shed or {})}",
        f"answers out of order: {tally.out_of_order}; sessions that failed: {failures}",
        f"exit statuses: {processes}",
    ]
