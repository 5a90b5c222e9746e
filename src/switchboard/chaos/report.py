"""The chaos table (Markdown) and its JSON, from a list of :class:`Outcome`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from switchboard.chaos.runner import Outcome

HEADER = (
    "| scenario | store | sent | results | errors (by code) | cut with their session |"
    " **lost** | **dup** | **leaked** | **over-cap** | recover s | peak RSS MB | ok |"
)
RULE = "|" + "---|" * 13


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "–"


def row(o: Outcome) -> str:
    f = o.figures
    recover = "–" if f.recovery_s is None else f"{f.recovery_s:.2f}"
    leaked = "?" if o.leaked is None else str(o.leaked)
    dup = f.duplicated + f.misordered + f.stale_relayed + f.unexpected
    cells = [
        o.scenario,
        o.store,
        str(f.sent),
        str(f.results),
        _codes(f.errors),
        _codes(f.cut),
        f"**{f.lost}**",
        f"**{dup}**",
        f"**{leaked}**",
        f"**{o.over_capacity}**",
        recover,
        f"{o.peak_rss_mb:.0f}",
        "yes" if o.clean else "**NO**",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(outcomes: Sequence[Outcome]) -> str:
    """The table, then one line of notes and failed checks per run."""
    lines = [HEADER, RULE, *(row(o) for o in outcomes), ""]
    for o in outcomes:
        failed = [name for name, held in o.checks.items() if not held]
        waits = ", ".join(f"{kind} {s:.2f}s" for kind, s in sorted(o.figures.slowest.items()))
        extra = [f"slowest answers: {waits}", *o.notes, *(f"FAILED: {name}" for name in failed)]
        if o.tracebacks:
            extra.append(f"{o.tracebacks} traceback(s) in the scheduler's log")
        if o.figures.misordered or o.figures.stale_relayed or o.figures.unexpected:
            f = o.figures
            extra.append(
                f"dup column: {f.duplicated} duplicated, {f.misordered} misordered,"
                f" {f.stale_relayed} stale relayed, {f.unexpected} unexpected"
            )
        lines.append(f"- {o.scenario} / {o.store} ({o.seconds:.0f}s): " + "; ".join(extra))
    return "\n".join(lines) + "\n"


def as_json(outcomes: Sequence[Outcome]) -> str:
    return json.dumps(
        [{**dataclasses.asdict(o), "clean": o.clean} for o in outcomes], indent=2, default=str
    )
