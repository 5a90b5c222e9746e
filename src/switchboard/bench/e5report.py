"""E5's part of the report: issue 14's targets per store, then one table per kind of run.

Every figure comes from the rows of this run (``e5.py``); a figure a run did not measure is
"—", and a target is judged only where its figure was measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from switchboard.bench.e5 import SHED_CODE, TENANTS, error_codes

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]

_INTRO = (
    "Nodes answer at once (a bare `job_result`) and have slots to spare, so the scheduler is "
    "the only limit. *C*: completed jobs/s of a closed loop over the same nodes. Each other "
    "run offers its load open loop, on a fixed schedule over many sessions, for the phase, "
    "then waits for the answers owed; *unanswered* is what was still owed when the wait ran "
    "out. **Accepted** (the headline): session *send* → its answer, for utterances the "
    "scheduler took on (a result, or an error in the ordered stream other than "
    f"`{SHED_CODE}`); *→ node*: send → the node receives `job_assign`; *{SHED_CODE}*: send → "
    "that error. *Goodput*: results received while the load was on, per second. *Shed*: "
    f"`{SHED_CODE}` answers / utterances sent. Fair share: the max-min fair allocation of C "
    "(or of what the run served, if more) given the tenants' offers (equal weights); Jain's "
    "index J = (Σx)² / (n·Σx²) of x = served / fair share."
)


def _ms(value: object) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def _lat(entry: Row, field: str, *keys: str) -> str:
    summary = entry.get(field)
    if not isinstance(summary, dict):
        return "—"
    return " / ".join(_ms(summary.get(k)) for k in keys)


def _num(value: object, fmt: str = "{:,.0f}") -> str:
    return "—" if not isinstance(value, int | float) else fmt.format(value)


def _pct(value: object) -> str:
    return "—" if not isinstance(value, int | float) else f"{value * 100:.1f} %"


def _others(entry: Row) -> str:
    codes = error_codes(entry)
    codes.pop(SHED_CODE, None)
    return ", ".join(f"{n:,} `{code}`" for code, n in sorted(codes.items())) or "0"


def _behind(row: Row) -> bool:
    """The generator was busy, or skipped more than 1 % of its schedule."""
    unsent = int(row.get("unsent") or 0)
    return bool(row.get("generator_bound")) or unsent > 0.01 * (int(row.get("sent") or 0) + unsent)


def _gen(row: Row) -> str:
    text = _num(row.get("generator_cpu_pct"), "{:.0f}")
    return text + " ⚠" if _behind(row) else text


def _accepted(*keys: str) -> Callable[[Row], str]:
    """Accepted latency; † when answers were still owed at the end, which it cannot include."""

    def get(row: Row) -> str:
        text = _lat(row, "accepted_latency_ms", *keys)
        return text + " †" if row.get("unanswered") else text

    return get


def _table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    head = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    return "\n".join(
        [head, rule, *("| " + " | ".join(g(r) for _, g in columns) + " |" for r in rows)]
    )


_LEVEL_COLUMNS: tuple[Column, ...] = (
    ("store", lambda r: r["store"]),
    ("load", lambda r: f"{r.get('level', 0):g}×C"),
    ("offered/s", lambda r: _num(r.get("offered_per_s"))),
    ("sent/s", lambda r: _num(r.get("sent_per_s"))),
    ("goodput/s", lambda r: _num(r.get("goodput_per_s"))),
    ("goodput / C", lambda r: _pct(_share(r.get("goodput_per_s"), r.get("capacity_per_s")))),
    ("**accepted p50 / p99 ms**", _accepted("p50", "p99")),
    ("→ node p50 / p99", lambda r: _lat(r, "external_latency_ms", "p50", "p99")),
    (f"{SHED_CODE} p50 / p99", lambda r: _lat(r, "overloaded_latency_ms", "p50", "p99")),
    ("shed", lambda r: _pct(r.get("shed_fraction"))),
    ("other errors", _others),
    ("late results", lambda r: _num(r.get("late_results"))),
    ("unanswered", lambda r: _num(r.get("unanswered"))),
    ("sched / gen CPU %", lambda r: f"{_num(r.get('server_cpu_pct'), '{:.0f}')} / {_gen(r)}"),
)


def _share(top: object, bottom: object) -> float | None:
    if not isinstance(top, int | float) or not isinstance(bottom, int | float) or not bottom:
        return None
    return float(top) / float(bottom)


def _group_rows(rows: Sequence[Row], phase: str) -> list[Row]:
    out: list[Row] = []
    for row in rows:
        if row.get("phase") != phase:
            continue
        for name, entry in (row.get("groups") or {}).items():
            out.append({"store": row["store"], "name": name, **entry})
    return out


_TENANT_COLUMNS: tuple[Column, ...] = (
    ("store", lambda r: r["store"]),
    ("tenant", lambda r: f"`{r['name']}`"),
    ("sessions", lambda r: _num(r.get("sessions"))),
    ("offered/s", lambda r: _num(r.get("offered_per_s"))),
    ("fair share/s", lambda r: _num(r.get("fair_share_per_s"))),
    ("served/s", lambda r: _num(r.get("goodput_per_s"))),
    ("**accepted p99 ms**", _accepted("p99")),
    ("alone: p99", lambda r: _lat(r, "solo_accepted_latency_ms", "p99")),
    ("p99 / alone", lambda r: _num(r.get("p99_vs_solo"), "{:,.2f}")),
    ("shed", lambda r: _pct(r.get("shed_fraction"))),
    ("other errors", _others),
    ("unanswered", lambda r: _num(r.get("unanswered"))),
)

_PRIORITY_COLUMNS: tuple[Column, ...] = (
    ("store", lambda r: r["store"]),
    ("class", lambda r: f"`{r['name']}`"),
    ("sessions", lambda r: _num(r.get("sessions"))),
    ("offered/s", lambda r: _num(r.get("offered_per_s"))),
    ("goodput/s", lambda r: _num(r.get("goodput_per_s"))),
    ("**accepted p50 / p99 ms**", _accepted("p50", "p99")),
    ("shed", lambda r: _pct(r.get("shed_fraction"))),
    ("other errors", _others),
    ("unanswered", lambda r: _num(r.get("unanswered"))),
)


def _run_name(row: Row) -> str:
    if row.get("phase") == "level":
        return f"{row.get('level', 0):g}×C"
    return str(row.get("tenant") or row.get("phase"))


def _offered_schedule(row: Row) -> str:
    asked = row.get("asked")
    if not isinstance(asked, int):
        return "—"
    return _num(asked + int(row.get("unsent") or 0))


_HINT_COLUMNS: tuple[Column, ...] = (
    ("store", lambda r: r["store"]),
    ("run", _run_name),
    ("offered (schedule)", _offered_schedule),
    ("asked", lambda r: _num(r.get("asked"))),
    ("held first", lambda r: _num(r.get("deferred"))),
    ("on the wire", lambda r: _num(r.get("on_wire"))),
    ("resends", lambda r: _num(r.get("resends"))),
    (f"`{SHED_CODE}` answers", lambda r: _num(r.get("refusals"))),
    ("given up", lambda r: _num(r.get("given_up"))),
    ("goodput/s", lambda r: _num(r.get("goodput_per_s"))),
    ("accepted p50 / p99 ms, from last send", _accepted("p50", "p99")),
    ("**from first ask**", lambda r: _lat(r, "accepted_first_latency_ms", "p50", "p99")),
)

_HINT_INTRO = (
    "The sessions followed the hint (`--e5-clients hint`): after an `OVERLOADED`, a session "
    "held every send for `retry_after_ms` (jittered by up to +50 %, doubled for each refusal "
    "of the same utterance), then sent the refused utterance and the held ones in order; an "
    "utterance refused after 3 resends was given up (counted as shed). *Offered*: what the "
    "schedule asked for (skipped ones included); *asked*: handed to a session; *held first*: "
    "asked while its session held, sent later; *on the wire*: utterance frames written, "
    f"resends included; *`{SHED_CODE}` answers*: every refusal received, those backed off on "
    "included (the tables above count only the given-up ones as shed, and time every refusal). "
    "Accepted latency from the last send (as above) and **from the first ask**: what a user "
    "waits."
)


# --- issue 14's targets ----------------------------------------------------------------------


def _find(rows: Sequence[Row], store: str, phase: str, level: float | None = None) -> Row | None:
    for row in rows:
        same = row["store"] == store and row.get("phase") == phase
        if same and (level is None or row.get("level") == level):
            return row
    return None


def _p99(entry: Row | None, field: str = "accepted_latency_ms") -> float | None:
    summary = (entry or {}).get(field)
    if not isinstance(summary, dict) or summary.get("p99") is None:
        return None
    return float(summary["p99"])


def _verdict(measured: str | None, met: bool | None) -> str:
    if measured is None:
        return "not measured"
    return f"{measured} ({'met' if met else '**not met**'})"


def _goodput(rows: Sequence[Row], store: str) -> str | None:
    """Goodput at 2× and 4× against C, the capacity the 1× level offers (the 1× run's own
    goodput is no steadier a base: it collapses as soon as a backlog forms)."""
    parts: list[str] = []
    met = True
    capacity = 0.0
    for level in (2.0, 4.0):
        row = _find(rows, store, "level", level)
        if row is None or not row.get("capacity_per_s"):
            continue
        capacity = float(row["capacity_per_s"])
        ratio = float(row["goodput_per_s"]) / capacity
        met = met and ratio >= 0.9
        parts.append(f"{level:g}×: {ratio * 100:.0f} %")
    if not parts:
        return None
    return _verdict("; ".join(parts) + f" of C = {capacity:,.0f}/s", met)


def _accepted_2x(rows: Sequence[Row], store: str) -> str | None:
    p99 = _p99(_find(rows, store, "level", 2.0))
    bound = 20.0 if store == "redis" else 10.0
    return None if p99 is None else _verdict(f"{_ms(p99)} ms", p99 <= bound)


def _overloaded(rows: Sequence[Row], store: str) -> str | None:
    worst = [
        p
        for r in rows
        if r["store"] == store and (p := _p99(r, "overloaded_latency_ms")) is not None
    ]
    if not worst:
        return f"no `{SHED_CODE}` answer"
    return _verdict(f"worst run {_ms(max(worst))} ms", max(worst) <= 5.0)


def _unanswered(rows: Sequence[Row], store: str) -> str | None:
    mine = [r for r in rows if r["store"] == store and r.get("phase") != "capacity"]
    if not mine:
        return None
    total = sum(int(r.get("unanswered") or 0) for r in mine)
    return _verdict(f"{total:,} over {len(mine)} runs", total == 0)


def _small_tenant(rows: Sequence[Row], store: str) -> str | None:
    row = _find(rows, store, "tenants")
    entry = ((row or {}).get("groups") or {}).get(TENANTS[1])
    if entry is None or entry.get("p99_vs_solo") is None:
        return None
    ratio = float(entry["p99_vs_solo"])
    mixed, alone = _p99(entry), _p99(entry, "solo_accepted_latency_ms")
    return _verdict(f"{ratio:,.2f}× ({_ms(mixed)} / {_ms(alone)} ms)", ratio <= 2.0)


def _jain(rows: Sequence[Row], store: str) -> str | None:
    row = _find(rows, store, "tenants")
    if row is None or row.get("jain_index") is None:
        return None
    value = float(row["jain_index"])
    served = row.get("jain_index_of_served")
    extra = f"; of what was served: {served:.3f}" if isinstance(served, int | float) else ""
    return _verdict(f"{value:.3f}{extra}", value >= 0.95)


_TARGETS: tuple[tuple[str, str, Callable[[Sequence[Row], str], str | None]], ...] = (
    ("goodput at 2× and 4× overload", "≥ 90 % of the capacity C", _goodput),
    ("accepted p99 at 2× overload", "≤ 10 ms embedded, ≤ 20 ms Redis", _accepted_2x),
    (f"time to an `{SHED_CODE}` answer, p99", "≤ 5 ms", _overloaded),
    ("utterances unanswered when the load stopped + the wait", "0", _unanswered),
    ("small tenant's p99 with the big one / alone", "≤ 2×", _small_tenant),
    ("Jain's index, served vs fair share", "≥ 0.95", _jain),
)


def targets(rows: Sequence[Row]) -> str:
    stores = [s for s in ("memory", "redis") if any(r["store"] == s for r in rows)]
    lines = [
        "| figure | target | " + " | ".join(stores) + " |",
        "|---|---|" + "---|" * len(stores),
    ]
    for figure, target, get in _TARGETS:
        cells = [get(rows, s) or "not measured" for s in stores]
        lines.append(f"| {figure} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(rows: Sequence[Row]) -> list[str]:
    """The E5 part of the Markdown report, as lines."""
    capacity: list[str] = []
    for store in dict.fromkeys(r["store"] for r in rows):
        first = next((r for r in rows if r["store"] == store and r.get("capacity_per_s")), None)
        if first is None:
            continue
        how = "given"
        if first.get("phase") == "capacity":
            how = f"closed loop, {first.get('concurrency')} utterances outstanding"
        capacity.append(f"{store}: C = {first['capacity_per_s']:,.0f} jobs/s ({how})")
    parts = ["### E5: saturation (issue 14)", "", _INTRO, "", "; ".join(capacity) + ".", ""]
    parts += [targets(rows), ""]
    levels = [r for r in rows if r.get("phase") == "level"]
    if levels:
        parts += ["#### Offered load", "", _table(levels, _LEVEL_COLUMNS), ""]
    hinted = [r for r in rows if r.get("phase") != "capacity" and r.get("clients") == "hint"]
    if hinted:
        parts += ["#### Clients that follow `retry_after_ms`", "", _HINT_INTRO, ""]
        parts += [_table(hinted, _HINT_COLUMNS), ""]
    tenants = _group_rows(rows, "tenants")
    if tenants:
        parts += ["#### Two tenants, equal weights, one offering 10× the other", ""]
        parts += [_table(tenants, _TENANT_COLUMNS), ""]
    classes = _group_rows(rows, "priority")
    if classes:
        parts += ["#### Two priority classes (`features.priority`), overloaded", ""]
        parts += [_table(classes, _PRIORITY_COLUMNS), ""]
    if any(_behind(r) for r in rows):
        parts += [
            "⚠: a load generator was ≥ 85 % busy or skipped more than 1 % of its schedule "
            "(`unsent` in the JSON): the offered load was less than asked; *sent/s* is what "
            "was offered.",
            "",
        ]
    if any(r.get("unanswered") for r in rows):
        parts += [
            "†: answers were still owed when the wait ran out; the latency covers the "
            "answered utterances only, so it understates what the unanswered ones waited.",
            "",
        ]
    return parts
