"""``switchboard chaos``: run the fault scenarios and print the table (docs/reliability.md).

Only click is imported until the command runs, so ``switchboard --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from switchboard.chaos.rig import Profile
    from switchboard.chaos.runner import Outcome
    from switchboard.chaos.scenarios import Scenario

_STORES = ("redis", "memory")


def _loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as file:
            return " ".join(file.read().split()[:3])
    except OSError:
        return "?"


async def run_suite(
    runs: list[tuple[Scenario, str]], profile: Profile, workdir: Path, *, echo: bool = True
) -> list[Outcome]:
    """Every (scenario, store) in turn, each in a directory of its own under ``workdir``."""
    from switchboard.chaos.report import row
    from switchboard.chaos.runner import run_one
    from switchboard.chaos.scenarios import slug

    outcomes = []
    for scenario, store in runs:
        reason = scenario.unavailable()
        if reason is not None:
            if echo:
                click.echo(f"{scenario.name}: skipped ({reason})", err=True)
            continue
        where = workdir / f"{slug(scenario.name)}-{store}"
        where.mkdir(parents=True, exist_ok=True)
        outcome = await run_one(scenario, store, profile, where)
        outcomes.append(outcome)
        if echo:
            click.echo(row(outcome), err=True)
    return outcomes


@click.command()
@click.option("--quick", is_flag=True, help="Seconds-long versions (CI); default: the full run.")
@click.option(
    "--scenario",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only this scenario (repeatable), e.g. node-crash, redis-stall.",
)
@click.option(
    "--store",
    type=click.Choice([*_STORES, "both"]),
    default="both",
    show_default=True,
    help="Reservation store(s); a scenario runs only on the stores it applies to.",
)
@click.option("--utterances", type=click.IntRange(min=1), default=None, help="Per run.")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Stretch every timing (slow machines).",
)
@click.option("--markdown", "markdown_path", default=None, metavar="FILE", help="Write the table.")
@click.option("--json", "json_path", default=None, metavar="FILE", help="Write the figures.")
@click.option("--workdir", default=None, metavar="DIR", help="Logs of every process (kept).")
def chaos(
    quick: bool,
    names: tuple[str, ...],
    store: str,
    utterances: int | None,
    time_scale: float,
    markdown_path: str | None,
    json_path: str | None,
    workdir: str | None,
) -> None:
    """Fault scenarios against real processes: nothing lost, leaked or over capacity."""
    import dataclasses

    from switchboard.chaos.report import as_json, markdown
    from switchboard.chaos.rig import FULL, QUICK
    from switchboard.chaos.scenarios import SCENARIOS, slug

    profile = (QUICK if quick else FULL).scaled(time_scale)
    if utterances is not None:
        profile = dataclasses.replace(profile, utterances=utterances)
    wanted = {slug(n) for n in names}
    unknown = wanted - {slug(s.name) for s in SCENARIOS}
    if unknown:
        raise click.BadParameter(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    stores = _STORES if store == "both" else (store,)
    runs = [
        (s, st)
        for s in SCENARIOS
        if not wanted or slug(s.name) in wanted
        for st in stores
        if st in s.stores
    ]
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="switchboard-chaos-"))
    click.echo(f"switchboard chaos ({profile.name}): {len(runs)} runs, logs in {root}", err=True)
    click.echo(f"load average before: {_loadavg()}", err=True)
    outcomes = asyncio.run(run_suite(runs, profile, root))
    table = markdown(outcomes)
    click.echo(f"load average after: {_loadavg()}", err=True)
    click.echo(table)
    if markdown_path:
        Path(markdown_path).write_text(table)
    if json_path:
        Path(json_path).write_text(as_json(outcomes))
    sys.exit(0 if all(o.clean for o in outcomes) else 1)
