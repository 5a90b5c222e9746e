"""``switchboard bench`` and ``switchboard replay``: the command bodies (cli.py registers them).

Only click is imported here; the benchmark's modules load when a command runs, so ``switchboard
serve`` never pays for them.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click


def _csv(choices: tuple[str, ...]) -> Any:
    def parse(
        ctx: click.Context, param: click.Parameter, value: str | None
    ) -> tuple[str, ...] | None:
        if value is None:
            return None
        items = tuple(v.strip().lower() for v in value.split(",") if v.strip())
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise click.BadParameter(f"expected a comma-separated subset of {', '.join(choices)}")
        return items

    return parse


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("expected comma-separated whole numbers") from None
    if not items or min(items) < 1:
        raise click.BadParameter("expected comma-separated whole numbers ≥ 1")
    return items


def _key_values(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[tuple[str, str], ...] | None:
    """``KEY=VALUE`` settings (a serve flag's name, dashes or underscores), in order."""
    if not value:
        return None
    items: list[tuple[str, str]] = []
    for item in value:
        key, sep, setting = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        items.append((key.strip().replace("-", "_"), setting.strip()))
    return tuple(items)


def _floats(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        items = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("expected comma-separated numbers") from None
    if not items or min(items) <= 0:
        raise click.BadParameter("expected comma-separated numbers > 0")
    return items


@click.command()
@click.option("--quick", is_flag=True, help="Seconds per scenario: a smoke run, not a measurement.")
@click.option(
    "--scenarios",
    callback=_csv(("hot", "e1", "e2", "e3", "rss", "e4", "e5")),
    help="Subset of hot,e1,e2,e3,rss,e4,e5 (hot: E0, the scheduler's own cost; e4: instances"
    " on one Redis; e5: saturation).",
)
@click.option(
    "--designs",
    callback=_csv(("snapshot", "global_lock", "null")),
    help="snapshot,global_lock (default both); null: no scheduling, the floor (E0 only).",
)
@click.option("--stores", callback=_csv(("memory", "redis")), help="memory,redis.")
@click.option("--nodes", type=click.IntRange(1, 5000), default=None, help="Nodes (E1, E2).")
@click.option("--sessions", callback=_ints, help="E1 sweep, e.g. 100,300,1000.")
@click.option("--e2-sessions", type=click.IntRange(1, 50_000), default=None)
@click.option(
    "--e2-rate", type=click.FloatRange(min=0.01), default=None, help="Utterances/s per session."
)
@click.option(
    "--phase-seconds", type=click.FloatRange(min=0.5), default=None, help="E2 phase length."
)
@click.option("--hot-sessions", type=click.IntRange(1, 50_000), default=None, help="E0 sessions.")
@click.option(
    "--hot-rate", type=click.FloatRange(min=0.01), default=None, help="E0 utterances/s/session."
)
@click.option(
    "--hot-phase-seconds", type=click.FloatRange(min=0.5), default=None, help="E0 phase length."
)
@click.option(
    "--hot-cycles", type=click.IntRange(1, 100), default=None, help="E0 calm+storm cycles."
)
@click.option(
    "--hot-slots", type=click.IntRange(1, 10_000), default=None, help="E0 slots per node."
)
@click.option(
    "--hot-max-sessions",
    type=click.IntRange(0, 50_000),
    default=None,
    help="E0 closed-loop throughput phase sessions (0: skip it).",
)
@click.option(
    "--hot-split-roles/--no-hot-split-roles",
    default=None,
    help="E0: nodes in one generator process, sessions in another.",
)
@click.option(
    "--e5-sessions", type=click.IntRange(2, 50_000), default=None, help="E5 open-loop sessions."
)
@click.option(
    "--e5-levels", callback=_floats, help="E5 offered load, × capacity (default 0.5,1,2,4)."
)
@click.option(
    "--e5-phase-seconds",
    type=click.FloatRange(min=0.2),
    default=None,
    help="E5: how long each run offers its load.",
)
@click.option(
    "--e5-wait-seconds",
    type=click.FloatRange(min=0.0),
    default=None,
    help="E5: then how long it waits for the answers owed.",
)
@click.option(
    "--e5-capacity",
    type=click.FloatRange(min=1.0),
    default=None,
    help="E5: capacity in jobs/s, instead of measuring it.",
)
@click.option(
    "--e5-clients",
    type=click.Choice(["open", "hint"]),
    default=None,
    help="E5 sessions: open (default) ignore OVERLOADED's retry_after_ms; hint back off on it"
    " as the SDK does.",
)
@click.option("--rss-sessions", type=click.IntRange(1, 100_000), default=None)
@click.option(
    "--generators", type=click.IntRange(1, 64), default=None, help="Load-generator processes."
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="E3 trace (default: the seeded sample).",
)
@click.option("--speed", type=click.FloatRange(min=0.01), default=None, help="E3 replay speed.")
@click.option("--redis-url", default=None, help="Use this Redis instead of a private redis-server.")
@click.option(
    "--serve-flag",
    "serve_flags",
    multiple=True,
    callback=_key_values,
    metavar="KEY=VALUE",
    help="Give every scheduler this serve setting too (e.g. overload_loop_lag=0.005); repeatable.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path), default=None
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write PNG plots here.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep logs here.",
)
def bench(**options: Any) -> None:
    """Benchmarks E0 (issue 9), E1–E3 (issue 4) and E5 (issue 14, saturation)."""
    from switchboard.bench import report, suite, sysutil
    from switchboard.bench.orchestrate import BenchError

    config = _config(options)
    machine = sysutil.machine()
    command = "switchboard bench " + shlex.join(sys.argv[2:])
    sysutil.raise_open_files_limit()
    with _workdir(options["workdir"]) as workdir, _RichProgress() as progress:
        try:
            result = suite.Suite(config, workdir=workdir, progress=progress.track).run()
        except BenchError as exc:
            click.echo(f"switchboard bench: error: {exc} (logs in {workdir})", err=True)
            sys.exit(1)
    text = report.markdown(result.rows, machine=machine, command=command)
    click.echo(text)
    if options["json_path"] is not None:
        report.write_json(options["json_path"], result.rows, machine=machine, command=command)
    if options["markdown_path"] is not None:
        options["markdown_path"].write_text(text)
    if options["plots_dir"] is not None:
        from switchboard.bench.plots import write_e5_plots, write_plots

        written = write_plots(result.series, options["plots_dir"])
        for path in written + write_e5_plots(result.rows, options["plots_dir"]):
            click.echo(f"wrote {path}")


def _config(options: dict[str, Any]) -> Any:
    from switchboard.bench.scenarios import BenchConfig

    names = {
        "scenarios": "scenarios",
        "designs": "designs",
        "stores": "stores",
        "nodes": "nodes",
        "sessions": "e1_sessions",
        "e2_sessions": "e2_sessions",
        "e2_rate": "e2_rate",
        "phase_seconds": "e2_phase_s",
        "rss_sessions": "rss_sessions",
        "e5_sessions": "e5_sessions",
        "e5_levels": "e5_levels",
        "e5_phase_seconds": "e5_phase_s",
        "e5_wait_seconds": "e5_wait_s",
        "e5_capacity": "e5_capacity",
        "e5_clients": "e5_clients",
        "hot_sessions": "hot_sessions",
        "hot_rate": "hot_rate",
        "hot_phase_seconds": "hot_phase_s",
        "hot_cycles": "hot_cycles",
        "hot_slots": "hot_max_concurrency",
        "hot_max_sessions": "hot_max_sessions",
        "hot_split_roles": "hot_split_roles",
        "generators": "generators",
        "trace_path": "e3_trace",
        "speed": "e3_speed",
        "redis_url": "redis_url",
        "serve_flags": "serve_flags",
    }
    given = {field: options[flag] for flag, field in names.items() if options[flag] is not None}
    return BenchConfig.quick(**given) if options["quick"] else BenchConfig(**given)


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    from switchboard.bench.runs import temporary_workdir

    with temporary_workdir() as tmp:
        yield Path(tmp)


class _RichProgress:
    """One bar per run: time elapsed against the planned time, utterances sent/answered."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def track(self, label: str, total_s: float) -> Iterator[_Task]:
        task = self._progress.add_task(label, total=max(total_s, 0.001), counts="")
        tracker = _Task(self._progress, task)
        try:
            yield tracker
        finally:
            self._progress.update(task, completed=max(total_s, 0.001))


class _Task:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task
        self._last = 0.0

    def update(self, *, elapsed: float, sent: int, answered: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        self._progress.update(
            self._task, completed=elapsed, counts=f"{answered:,}/{sent:,} answered"
        )


@click.command()
@click.argument(
    "trace_path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Replay K times faster.",
)
@click.option(
    "--url",
    default=None,
    help="Replay against this scheduler (ws://HOST:PORT) instead of one of its own.",
)
@click.option(
    "--design",
    type=click.Choice(["snapshot", "global_lock"]),
    default="snapshot",
    show_default=True,
)
@click.option(
    "--store", type=click.Choice(["memory", "redis"]), default="memory", show_default=True
)
@click.option("--redis-url", default=None, help="For --store redis.")
@click.option("--check-only", is_flag=True, help="Only check FILE; replay nothing.")
def replay(
    trace_path: Path,
    speed: float,
    url: str | None,
    design: str,
    store: str,
    redis_url: str | None,
    check_only: bool,
) -> None:
    """Check a session trace (serve --record) and replay it; exit 1 on any violation."""
    from switchboard.bench import consistency, trace
    from switchboard.bench import replay as replaying

    try:
        events = trace.read_trace(trace_path)
    except trace.TraceError as exc:
        click.echo(f"switchboard replay: error: {exc}", err=True)
        sys.exit(2)
    if check_only:
        found = consistency.check(events)
        _print_violations("trace", found)
        click.echo(f"{len(found)} violation(s) in {trace_path}")
        sys.exit(1 if found else 0)
    flags: dict[str, object] = {"design": design, "store": store}
    if redis_url is not None:
        flags.update(store="redis", redis_url=redis_url)
    from switchboard.bench.runs import temporary_workdir

    with temporary_workdir() as tmp:
        result = replaying.run_replay(
            trace_path, speed=speed, workdir=Path(tmp), url=url, server_flags=flags
        )
    _print_violations("trace", result.input)
    _print_violations("client", result.client)
    if result.server is not None:
        _print_violations("server", result.server)
    click.echo(
        f"replayed {result.sessions} sessions, {result.utterances} utterances at x{speed:g} in"
        f" {result.duration_s:.1f} s: {result.answered} answers, {result.violations} violation(s)"
    )
    for failure, count in result.failures.items():
        click.echo(f"  {count} session(s) failed to open: {failure}")
    sys.exit(1 if result.violations or result.failures else 0)


def _print_violations(view: str, found: list[Any]) -> None:
    for violation in found:
        click.echo(f"[{view}] {violation}")
