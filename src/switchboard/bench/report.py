"""The benchmark's outputs: ``--json`` (every row), a Markdown table, the issue's headline.

The headline compares what was measured with the targets of issue 4; it never states a figure
that the rows do not hold, and says "not measured" where a run was not part of this one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchboard.bench import e5report

Row = dict[str, Any]


def write_json(
    path: Path, rows: Sequence[Row], *, machine: dict[str, object], command: str
) -> None:
    body = {"machine": machine, "command": command, "runs": list(rows)}
    path.write_text(json.dumps(body, indent=2) + "\n")


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _lat(row: Row, key: str, field: str = "latency_ms") -> str:
    lat = row.get(field)
    return _ms(lat.get(key)) if isinstance(lat, dict) else "—"


def _num(value: object, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


_COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    (
        "scenario",
        lambda r: r["scenario"] + (f" {r['phase']}" if r.get("phase") in ("calm", "storm") else ""),
    ),
    ("design", lambda r: r["design"]),
    ("store", lambda r: r["store"]),
    ("sessions", lambda r: _num(r.get("sessions"))),
    ("nodes", lambda r: _num(r.get("nodes"))),
    ("hb Hz", lambda r: _num(r.get("heartbeat_hz"), "{:g}")),
    ("p50 ms", lambda r: _lat(r, "p50")),
    ("p90", lambda r: _lat(r, "p90")),
    ("p99", lambda r: _lat(r, "p99")),
    ("p99.9", lambda r: _lat(r, "p999")),
    ("max", lambda r: _lat(r, "max")),
    (
        "ext p50/p99",
        lambda r: (
            f"{_lat(r, 'p50', 'external_latency_ms')} / {_lat(r, 'p99', 'external_latency_ms')}"
        ),
    ),
    ("jobs/s", lambda r: _num(r.get("jobs_per_s"))),
    ("RSS MiB", lambda r: _num(r.get("rss_mib"), "{:.1f}")),
    ("sched CPU %", lambda r: _num(r.get("server_cpu_pct"), "{:.0f}")),
    ("gen CPU %", lambda r: _gen(r)),
    ("notes", lambda r: _notes(r)),
)


def _gen(row: Row) -> str:
    value = row.get("generator_cpu_pct")
    if value is None:
        return "—"
    return f"{value:.0f}" + (" ⚠" if row.get("generator_bound") else "")


def _notes(row: Row) -> str:
    notes: list[str] = []
    if row["scenario"] == "E3":
        answered, sent = row.get("answered", 0), row.get("sent", 0)
        notes.append(f"{row.get('violations', 0)} violations, {answered}/{sent} answered")
    if row["scenario"] == "RSS" and row.get("rss_per_session_kib") is not None:
        notes.append(f"{row['rss_per_session_kib']:.1f} KiB/session")
    if row.get("snapshot_rebuilds") and row["scenario"] in ("E1", "E2"):
        notes.append(f"{row['snapshot_rebuilds']:,.0f} rebuilds")
    if row.get("snapshot_build_cpu_s"):
        notes.append(f"{row['snapshot_build_cpu_s']:,.1f} s building them")
    gc_info = row.get("gc") or {}
    if gc_info.get("longest_ms"):
        pauses, longest = gc_info["pauses_over_5ms"], gc_info["longest_ms"]
        notes.append(f"GC: {pauses} pauses ≥ 5 ms, longest {longest:.0f} ms")
    if row.get("global_lock_waited_s"):
        notes.append(f"{row['global_lock_waited_s']:,.1f} s queued on the global lock")
    errors = row.get("error_answers")
    if errors is None:
        errors = sum((row.get("errors") or {}).values()) + sum((row.get("rejected") or {}).values())
    if errors:
        codes = ", ".join(sorted({*(row.get("errors") or {}), *(row.get("rejected") or {})}))
        notes.append(f"{errors:,} error answers ({codes})")
    if row.get("slot_waits") and row["scenario"] == "E0":
        notes.append(f"{row['slot_waits']:,.0f} utterances entered the waiting line")
    for key in ("out_of_order", "unanswered", "connect_failures"):
        if row.get(key):
            notes.append(f"{key.replace('_', ' ')}: {row[key]}")
    return "; ".join(notes)


def markdown_table(
    rows: Sequence[Row], columns: Sequence[tuple[str, Callable[[Row], str]]] = _COLUMNS
) -> str:
    head = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(get(row) for _, get in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


# --- E0 (issue 9): the outside latency is the headline -----------------------------------------


def _waits(row: Row) -> str:
    waits, full = row.get("slot_waits"), row.get("reservations_full")
    if waits is None and full is None:
        return "—"
    return f"{_num(waits)} / {_num(full)}"


# The outside interval comes first: it is what a client and a node see, sockets and the
# server's reader included, and it is measured in another process than the scheduler's.
_HOT_COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    ("scenario", lambda r: f"E0 {r.get('phase', '')}".strip()),
    ("design", lambda r: r["design"]),
    ("store", lambda r: r["store"]),
    ("sessions", lambda r: _num(r.get("sessions"))),
    ("hb Hz", lambda r: _num(r.get("heartbeat_hz"), "{:g}")),
    ("**outside p50 ms**", lambda r: _lat(r, "p50", "external_latency_ms")),
    ("outside p90", lambda r: _lat(r, "p90", "external_latency_ms")),
    ("**outside p99**", lambda r: _lat(r, "p99", "external_latency_ms")),
    ("outside p99.9", lambda r: _lat(r, "p999", "external_latency_ms")),
    ("outside max", lambda r: _lat(r, "max", "external_latency_ms")),
    ("inside p50 / p99", lambda r: f"{_lat(r, 'p50')} / {_lat(r, 'p99')}"),
    ("jobs/s", lambda r: _num(r.get("jobs_per_s"))),
    ("slot waits / full", _waits),
    ("sched CPU %", lambda r: _num(r.get("server_cpu_pct"), "{:.0f}")),
    ("gen CPU %", lambda r: _gen(r)),
    ("notes", lambda r: _notes(r)),
)


def _ext(row: Row | None, key: str) -> float | None:
    if row is None or not isinstance(row.get("external_latency_ms"), dict):
        return None
    value = row["external_latency_ms"].get(key)
    return float(value) if value is not None else None


def _ratio(top: float | None, bottom: float | None, fmt: str = "{:.2f}") -> str:
    if top is None or not bottom:
        return "—"
    return fmt.format(top / bottom) + f" ({_ms(top)} / {_ms(bottom)} ms)"


def hot_summary(rows: Sequence[Row]) -> str:
    """Issue 9's figures per store, from the E0 rows of this run only (no targets judged)."""
    stores = [s for s in ("memory", "redis") if _find(rows, scenario="E0", store=s)]
    lines = ["| figure | " + " | ".join(stores) + " |", "|---|" + "---|" * len(stores)]

    def row(store: str, design: str, phase: str) -> Row | None:
        return _find(rows, scenario="E0", design=design, store=store, phase=phase)

    def line(figure: str, get: Callable[[str], str]) -> None:
        lines.append(f"| {figure} | " + " | ".join(get(s) for s in stores) + " |")

    line(
        "outside p50, calm / storm (ms)",
        lambda s: (
            f"{_ms(_ext(row(s, 'snapshot', 'calm'), 'p50'))} / "
            f"{_ms(_ext(row(s, 'snapshot', 'storm'), 'p50'))}"
        ),
    )
    line("outside p99, calm (ms)", lambda s: _ms(_ext(row(s, "snapshot", "calm"), "p99")))
    line("outside p99, storm (ms)", lambda s: _ms(_ext(row(s, "snapshot", "storm"), "p99")))
    line(
        "outside p99 storm / calm",
        lambda s: _ratio(
            _ext(row(s, "snapshot", "storm"), "p99"), _ext(row(s, "snapshot", "calm"), "p99")
        ),
    )
    line(
        "inside p50, calm / storm (ms)",
        lambda s: (
            f"{_ms(_p(row(s, 'snapshot', 'calm'), 'p50'))} / "
            f"{_ms(_p(row(s, 'snapshot', 'storm'), 'p50'))}"
        ),
    )
    line(
        "completed jobs/s, one process (closed loop)",
        lambda s: _num((row(s, "snapshot", "max") or {}).get("jobs_per_s")),
    )
    line(
        "global_lock / snapshot outside p99, storm",
        lambda s: _ratio(
            _ext(row(s, "global_lock", "storm"), "p99"),
            _ext(row(s, "snapshot", "storm"), "p99"),
            "{:,.1f}×",
        ),
    )
    line(
        "utterances that waited / reservations found full (snapshot, calm+storm run)",
        lambda s: _waits(row(s, "snapshot", "storm") or {}),
    )
    return "\n".join(lines)


# --- the headline (issue 4's table) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Headline:
    figure: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def _find(rows: Sequence[Row], **match: object) -> Row | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _p(row: Row | None, key: str) -> float | None:
    if row is None or not isinstance(row.get("latency_ms"), dict):
        return None
    value = row["latency_ms"].get(key)
    return float(value) if value is not None else None


def headline(rows: Sequence[Row]) -> list[Headline]:
    out: list[Headline] = []
    storm_redis = _find(rows, scenario="E2", design="snapshot", store="redis", phase="storm")
    p50, p99 = _p(storm_redis, "p50"), _p(storm_redis, "p99")
    out.append(
        _check(
            "scheduling latency, Redis, storm on",
            "p50 ≤ 0.3 ms, p99 ≤ 1 ms",
            None
            if p50 is None or p99 is None
            else (f"p50 {p50:.3f} ms, p99 {p99:.3f} ms", p50 <= 0.3 and p99 <= 1.0),
        )
    )
    storm_mem = _find(rows, scenario="E2", design="snapshot", store="memory", phase="storm")
    p50m = _p(storm_mem, "p50")
    out.append(
        _check(
            "the same, embedded store",
            "p50 ≤ 0.15 ms",
            None if p50m is None else (f"p50 {p50m:.3f} ms", p50m <= 0.15),
        )
    )
    for store in ("redis", "memory"):
        out.append(_storm_ratio(rows, store))
    for store in ("redis", "memory"):
        out.append(_design_ratio(rows, store))
    out.append(_throughput(rows))
    out += _rss(rows)
    return out


def _check(figure: str, target: str, measured: tuple[str, bool] | None) -> Headline:
    if measured is None:
        return Headline(figure, target, "not measured", None)
    return Headline(figure, target, measured[0], measured[1])


def _storm_ratio(rows: Sequence[Row], store: str) -> Headline:
    storm = _p(_find(rows, scenario="E2", design="snapshot", store=store, phase="storm"), "p99")
    calm = _p(_find(rows, scenario="E2", design="snapshot", store=store, phase="calm"), "p99")
    measured = None
    if storm is not None and calm:
        ratio = storm / calm
        measured = (f"{ratio:.2f} ({storm:.3f} / {calm:.3f} ms)", ratio <= 1.2)
    return _check(f"p99 storm / p99 calm ({store})", "≤ 1.2", measured)


def _design_ratio(rows: Sequence[Row], store: str) -> Headline:
    old = _p(_find(rows, scenario="E2", design="global_lock", store=store, phase="storm"), "p99")
    new = _p(_find(rows, scenario="E2", design="snapshot", store=store, phase="storm"), "p99")
    measured = None
    if old is not None and new:
        ratio = old / new
        measured = (f"{ratio:,.1f}× ({old:.3f} / {new:.3f} ms)", ratio >= 100)
    return _check(f"global_lock p99 / snapshot p99, storm ({store})", "≥ 100×", measured)


def _throughput(rows: Sequence[Row]) -> Headline:
    e1 = [
        r
        for r in rows
        if r["scenario"] == "E1" and r["design"] == "snapshot" and r["store"] == "redis"
    ]
    best = max(e1, key=lambda r: r.get("jobs_per_s") or 0, default=None)
    measured = None
    if best is not None and best.get("jobs_per_s") is not None:
        rate = float(best["jobs_per_s"])
        limit = " (generator-bound)" if best.get("generator_bound") else ""
        measured = (f"{rate:,.0f} jobs/s at {best['sessions']} sessions{limit}", rate >= 10_000)
    return _check("completed jobs/s, one process, Redis", "≥ 10,000", measured)


def _rss(rows: Sequence[Row]) -> list[Headline]:
    row = _find(rows, scenario="RSS")
    per_session = total = None
    if row is not None and row.get("rss_per_session_kib") is not None:
        per, mib, n = row["rss_per_session_kib"], row["rss_mib"], row["sessions"]
        per_session = (f"{per:.1f} KiB (growth from {row['rss_before_mib']:.0f} MiB)", per <= 16)
        total = (f"{mib:.0f} MiB with {n:,} sessions", mib <= 250 and n >= 10_000)
    return [
        _check("RSS per idle session connection", "≤ 16 KiB", per_session),
        _check("scheduler RSS with 10,000 idle sessions", "≤ 250 MiB", total),
    ]


def headline_table(items: Sequence[Headline]) -> str:
    lines = ["| figure | target | measured | met |", "|---|---|---|---|"]
    for h in items:
        met = "—" if h.met is None else ("yes" if h.met else "**no**")
        lines.append(f"| {h.figure} | {h.target} | {h.measured} | {met} |")
    return "\n".join(lines)


def markdown(rows: Sequence[Row], *, machine: dict[str, object], command: str) -> str:
    hot = [r for r in rows if r["scenario"] == "E0"]
    scale = [r for r in rows if r["scenario"] == "E4"]
    saturation = [r for r in rows if r["scenario"] == "E5"]
    rows = [r for r in rows if r["scenario"] not in ("E0", "E4", "E5")]
    parts: list[str] = [*e4_markdown(scale)] if scale else []
    if saturation:
        parts += e5report.section(saturation)
    if hot:
        parts += [
            "### E0: the scheduler's own cost (issue 9)",
            "",
            "Outside (the headline): session *send* → fake node *receives* `job_assign`, "
            "measured in the load-generator process, not the scheduler's; inside: the "
            "scheduler's own samples (utterance read → `job_assign` written). Nodes answer at "
            "once with a bare `job_result`. *max*: a closed loop over the same instant nodes, "
            "completed jobs/s. *Slot waits / full*: utterances that entered the waiting line, "
            "and reservation attempts that found every candidate full, over the whole run "
            "(`/metrics`); both should be 0 (a wait with no full reservation was not for "
            "want of a slot: e.g. the reserved node left during the reservation).",
            "",
            hot_summary(hot),
            "",
            markdown_table(hot, _HOT_COLUMNS),
            "",
        ]
    if not rows:
        return "\n".join([*parts, *_footer(machine, command)]) + "\n"
    parts += [
        "### Headline (issue 4)",
        "",
        headline_table(headline(rows)),
        "",
        "### Every run",
        "",
        "Latency columns: the scheduler's own exact samples (utterance read off the session "
        "socket → `job_assign` written), in ms; *ext*: the same interval measured outside, "
        "session send → fake node receive, on one monotonic clock. ⚠: the load generator "
        "was ≥ 85 % busy, so it may be what limited the run. *Rebuilds* and time *queued on "
        "the global lock* count the whole run (an E2 run's calm and storm phases together), as "
        "do *unanswered* (still owed when the run's drain time ran out) and GC pauses; error "
        "answers count utterances sent in the measured windows.",
        "",
        markdown_table(rows),
        "",
        *_footer(machine, command),
    ]
    return "\n".join(parts) + "\n"


def _footer(machine: dict[str, object], command: str) -> list[str]:
    return [
        f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu_model')}), Python "
        f"{machine.get('python')}; 1/5/15-min load average at start:"
        f" {machine.get('loadavg_at_start')}.",
        "",
        f"Command: `{command}`",
    ]


# --- E4 (issue 10): instances on one Redis -------------------------------------------------------


def _e4_find(rows: Sequence[Row], phase: str) -> Row | None:
    return _find(rows, scenario="E4", phase=phase)


def _top(row: Row) -> str:
    top = row.get("redis_top_commands_per_job") or {}
    return ", ".join(f"{name} {count:g}" for name, count in top.items()) or "—"


def _cores(row: Row) -> str:
    run, other = row.get("run_cores"), row.get("other_cores")
    return "—" if run is None or other is None else f"{run:.2f} / {other:.2f}"


_E4_COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    ("E4 run", lambda r: str(r.get("phase"))),
    ("instances", lambda r: _num(r.get("instances"))),
    ("sessions", lambda r: _num(r.get("sessions"))),
    ("nodes", lambda r: _num(r.get("nodes"))),
    ("**outside p50 ms**", lambda r: _lat(r, "p50", "external_latency_ms")),
    ("outside p90", lambda r: _lat(r, "p90", "external_latency_ms")),
    ("outside p99", lambda r: _lat(r, "p99", "external_latency_ms")),
    ("inside p50 / p99 (A)", lambda r: f"{_lat(r, 'p50')} / {_lat(r, 'p99')}"),
    ("**jobs/s**", lambda r: _num(r.get("jobs_per_s"))),
    ("Redis cmds/job", lambda r: _num(r.get("redis_commands_per_job"), "{:.1f}")),
    ("Redis CPU µs/job", lambda r: _num(r.get("redis_cpu_us_per_job"), "{:.0f}")),
    ("most called, per job", _top),
    ("sched CPU % (all)", lambda r: _num(r.get("server_cpu_pct"), "{:.0f}")),
    ("gen CPU %", lambda r: _gen(r)),
    ("cores busy: run / other", _cores),
    ("notes", lambda r: _notes(r)),
)


def e4_summary(rows: Sequence[Row]) -> list[str]:
    """Issue 10's figures from this run's E4 rows (targets stated, never assumed met)."""
    same, cross = _e4_find(rows, "same"), _e4_find(rows, "cross")
    one, two = _e4_find(rows, "max x1"), _e4_find(rows, "max x2")
    fail, size = _e4_find(rows, "failover"), _e4_find(rows, "sizing")
    lines = ["| figure | target | measured |", "|---|---|---|"]
    p_same, p_cross = _ext(same, "p50"), _ext(cross, "p50")
    diff = "—"
    if p_same is not None and p_cross is not None:
        diff = f"{p_cross - p_same:+.3f} ms ({_ms(p_cross)} − {_ms(p_same)})"
    lines.append(f"| cross-instance outside p50 − same-instance p50 | ≤ 0.5 ms | {diff} |")
    j1, j2 = (one or {}).get("jobs_per_s"), (two or {}).get("jobs_per_s")
    ratio = "—" if not j1 or not j2 else f"{j2 / j1:.2f} ({j2:,.0f} / {j1:,.0f} jobs/s)"
    lines.append(f"| jobs/s, 2 instances / 1 instance, same run | ≥ 1.3 | {ratio} |")
    for row, label in ((one, "1 instance"), (two, "2 instances")):
        if row is not None and row.get("run_cores") is not None:
            lines.append(
                f"| cores busy during the closed loop, {label}: this run / other work | — | "
                f"{row['run_cores']:.2f} / {row['other_cores']:.2f} of "
                f"{row['machine_busy_cores']:.2f} busy |"
            )
    if one is not None and two is not None:
        lines.append(
            "| Redis commands per job, 1 / 2 instances (saturated) | — | "
            f"{_num(one.get('redis_commands_per_job'), '{:.1f}')} / "
            f"{_num(two.get('redis_commands_per_job'), '{:.1f}')} |"
        )
    if same is not None and cross is not None:
        lines.append(
            "| Redis commands per job, same / cross (speaking pace) | — | "
            f"{_num(same.get('redis_commands_per_job'), '{:.1f}')} / "
            f"{_num(cross.get('redis_commands_per_job'), '{:.1f}')} |"
        )
    if fail is not None:
        ttl = fail.get("instance_ttl_s")
        lines += [
            f"| failover: kill → its nodes out of the survivor's view (`--instance-ttl` {ttl} s)"
            f" | ≤ node-offline time | {_s(fail.get('failover_nodes_left_view_s'))} |",
            "| failover: kill → its nodes registered on the survivor and ready | — | "
            f"{_s(fail.get('failover_nodes_reregistered_s'))} |",
            "| failover: kill → first successful answer to a job in flight on it | — | "
            f"{_s(fail.get('failover_first_answer_s'))} |",
            "| failover: utterances sent / answered with a result / errors / unanswered | "
            "every one answered | "
            f"{fail.get('sent')} / {fail.get('results')} / "
            f"{sum((fail.get('errors') or {}).values())} / {fail.get('unanswered')} |",
        ]
    if size is not None:
        lines.append(
            f"| on paper: {size['target_sessions']:,} sessions at one utterance per 3 s "
            f"({size['jobs_per_s_needed']:,} jobs/s) | — | {_sizing_text(size)} |"
        )
    return lines


def _s(value: object) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _sizing_text(size: Row) -> str:
    instances, shards = size.get("instances"), size.get("redis_shards")
    if instances is None:
        return "not measured"
    text = (
        f"{instances} instances (jobs: {size['instances_by_jobs']} at "
        f"{size['jobs_per_s_per_instance']:,.0f} jobs/s each and {size['headroom']:.0%} "
        f"load; sessions: {size['instances_by_sessions']} at 10,000 each)"
    )
    if shards is not None:
        text += (
            f"; {shards} Redis shard(s) at {size['headroom']:.0%} of one core each "
            f"({size['redis_cpu_us_per_job']:.0f} µs of Redis CPU and "
            f"{size['redis_commands_per_job']:.1f} commands per job: "
            f"{size['redis_commands_per_s']:,} commands/s)"
        )
    return text


def e4_markdown(rows: Sequence[Row]) -> list[str]:
    runs = [r for r in rows if r.get("phase") not in ("failover", "sizing")]
    return [
        "### E4: instances on one Redis (issue 10)",
        "",
        "*same* / *cross*: two instances A and B on one Redis, sessions on A, instant nodes on "
        "A or on B, at a speaking pace; outside latency is session send → node receives "
        "`job_assign` (another process's clock reading, one monotonic clock). *max x1* / "
        "*max x2*: a closed loop over instant nodes against one instance, or with half the "
        "nodes and sessions on each of two; every process (instances, load generators, "
        "redis-server) shares this machine's cores. Redis counts are `INFO commandstats` / "
        "`INFO cpu` between the start and the end of the load, every command but INFO, "
        "background included, over the jobs answered. *Cores busy*: this run's processes "
        "(instances, generators, redis-server) against everything else the machine ran "
        "meanwhile (`/proc/stat`). *failover*: `switchboard node` agents "
        "with `--url A --url B` on A, client sessions on B, A SIGKILLed mid-load.",
        "",
        *e4_summary(rows),
        "",
        markdown_table(runs, _E4_COLUMNS),
        "",
    ]
