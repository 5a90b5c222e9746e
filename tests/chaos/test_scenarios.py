"""The quick fault suite (``switchboard chaos --quick``): every scenario of issues 5 and 10
against real processes, each asserting the bold columns of docs/reliability.md — nothing lost,
duplicated or answered out of order, no slot left held, no node over its capacity — and the
scenario's own checks (e.g. the slow consumer told SESSION_CLOSED and closed; the instance cut
off from Redis refused within 2 s; the shard failover's replica promoted).  The shard failover
starts its own 3-shard Redis Cluster; its leaked slots are the leases left on every primary.

Every scenario runs on Redis; those whose faults free slots under load run on the in-process
store too, whose placement runs inline in the session's reader, so a freed slot is reused at
once (the connection storm found a job_assign overtaking a job_cancel there).  The rest of the
memory runs, and 1,000 utterances a run, are the full suite's (``switchboard chaos``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.chaos.report import markdown
from switchboard.chaos.rig import QUICK
from switchboard.chaos.runner import run_one
from switchboard.chaos.scenarios import BY_NAME, SCENARIOS, Scenario, slug

MEMORY_TOO = ("node crash", "silent node", "slow node", "scheduler crash", "connection storm")
RUNS = [
    pytest.param(s, "redis", id=f"{slug(s.name)}-redis", marks=pytest.mark.redis) for s in SCENARIOS
] + [pytest.param(BY_NAME[name], "memory", id=f"{slug(name)}-memory") for name in MEMORY_TOO]


@pytest.mark.parametrize(("scenario", "store"), RUNS)
async def test_quick_scenario_loses_nothing(
    scenario: Scenario, store: str, tmp_path: Path, timeout_scale: float
) -> None:
    """The scenario's fault, under load: every utterance answered once and in order (or cut
    with a session the fault closed), no slot leaked, no node over capacity, no traceback."""
    reason = scenario.unavailable()
    if reason is not None:
        pytest.skip(reason)
    profile = QUICK.scaled(timeout_scale)
    outcome = await run_one(scenario, store, profile, tmp_path)
    table = markdown([outcome])  # the message of every assertion: the whole row and notes
    figures = outcome.figures
    assert figures.sent >= profile.utterances, table
    assert figures.lost == 0, table
    assert figures.duplicated == 0 and figures.misordered == 0, table
    assert figures.stale_relayed == 0 and figures.unexpected == 0, table
    assert outcome.leaked == 0, table
    assert outcome.over_capacity == 0, table
    assert outcome.tracebacks == 0, table
    assert all(outcome.checks.values()), table
    assert figures.results > 0, table
