"""Run one scenario on one store: start the rig, load it, break it, let it settle, count.

The order of one run:

1. a private redis-server (Redis store; a 3-shard Redis Cluster for the shard failover), the
   scheduler, the nodes, the steady sessions;
2. the load (``Profile.utterances`` at ``Profile.rate``, round robin over sessions with room)
   and the fault, concurrently; the fault ends once the load is sent, with everything running;
3. every steady session waits for its answers (at most ``Profile.answer_within``), then closes;
4. idle: no job in flight; then the slots still held, read from the store through
   ``/api/v1/stats`` — after a settling pause shorter than a lease (so a slot that is only
   waiting for its lease to run out still counts), or after a whole lease for crash scenarios,
   whose dead processes cannot release anything (issue 5: "beyond the lease time").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.chaos.ledger import Figures
from switchboard.chaos.rig import Profile, Rig
from switchboard.chaos.scenarios import Scenario
from switchboard.chaos.sessions import wait_answered
from switchboard.store.keys import DEFAULT_NAMESPACE
from switchboard.tools.fakenode import NodeCounts

log = logging.getLogger("switchboard.chaos")
NODE_BUSY = "NODE_BUSY"  # the node agent's own refusal of a job beyond its capacity


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scenario on one store, as the report shows it."""

    scenario: str
    store: str
    profile: str
    figures: Figures
    leaked: int | None  # None: the store could not be read
    over_capacity: int
    peak_rss_mb: float
    tracebacks: int  # in the scheduler's log
    seconds: float
    checks: dict[str, bool] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return (
            self.figures.clean
            and self.leaked == 0
            and self.over_capacity == 0
            and self.tracebacks == 0
            and all(self.checks.values())
        )


async def run_one(scenario: Scenario, store: str, profile: Profile, workdir: Path) -> Outcome:
    """``workdir`` (existing) receives every process's log."""
    profile = scenario.shape(profile)
    rig = Rig(
        profile,
        store,
        workdir,
        instances=scenario.instances,
        resend=scenario.resend,
        on_cluster=scenario.on_cluster,
    )
    started = rig.now()
    sampler: asyncio.Task[None] | None = None
    try:
        await _start(rig, scenario)
        sampler = asyncio.create_task(rig.sample_rss())
        fault = asyncio.create_task(scenario.fault(rig))
        try:
            await _drive(rig)
        finally:
            rig.done.set()
        async with asyncio.timeout(profile.answer_within + 60):
            await fault
        answered = await wait_answered(rig.sessions, within=profile.answer_within)
        rig.checks["every steady session got its answers"] = answered
        for session in rig.sessions:
            await session.close()
        leaked = await _leaked(rig, crash=scenario.crash)
        return _outcome(rig, scenario, leaked, rig.now() - started)
    finally:
        if sampler is not None:
            sampler.cancel()
        await rig.stop()


async def _start(rig: Rig, scenario: Scenario) -> None:
    profile = rig.profile
    await rig.start_scheduler(scenario.flags(profile), proxied=scenario.proxied)
    if scenario.agents:
        await rig.start_agents()
    else:
        await rig.start_nodes([scenario.conduct(profile, n) for n in range(profile.nodes)])
    await rig.wait_ready_nodes(profile.nodes)
    await rig.start_sessions()


async def _drive(rig: Rig) -> None:
    """Send the profile's utterances at its rate, round robin over sessions with room.  A tick
    with no session able to send (all reconnecting, all full) sends nothing; the run lasts
    longer instead (bounded, in case nothing ever comes back)."""
    profile = rig.profile
    interval = 1 / profile.rate
    limit = rig.now() + 5 * profile.utterances / profile.rate + 60
    sent = turn = 0
    next_at = rig.now()
    while sent < profile.utterances and rig.now() < limit:
        for _ in range(len(rig.sessions)):
            session = rig.sessions[turn % len(rig.sessions)]
            turn += 1
            if await session.try_send():
                sent += 1
                break
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - rig.now()))
    if sent < profile.utterances:
        rig.notes.append(f"load cut short: {sent} of {profile.utterances} sent in time")


async def _leaked(rig: Rig, *, crash: bool) -> int | None:
    profile = rig.profile
    idle = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(profile.answer_within):
            while not idle:
                every = [await sched.stats() for sched in rig.live]
                idle = all(s is not None and s.get("jobs_in_flight") == 0 for s in every)
                await asyncio.sleep(0.05)
    rig.checks["the scheduler went idle"] = idle
    # Longer than one maintenance tick (a third of a lease: refused releases are retried),
    # shorter than a lease, so a slot held only until its lease runs out still shows.
    lease = profile.reservation_lease
    await asyncio.sleep(0.6 * lease + (lease if crash else 0))
    # One store: any live instance counts every instance's leases.
    stats = await rig.live[0].stats() if rig.live else None
    held = stats.get("reservations_held") if stats else None
    if rig.cluster is not None:
        # Read from the cluster itself, every primary scanned: a lease the store no longer
        # lists (its node group's set lost in a failover) still counts.
        namespace = str(rig.sched_flags.get("redis_namespace", DEFAULT_NAMESPACE))
        shares = await rig.cluster.leases(namespace)
        rig.notes.append(
            "leases left: "
            + ", ".join(f"{s.live} on :{s.primary.port}" for s in shares)
            + f" (the scheduler's stats say {held})"
        )
        return sum(s.live for s in shares)
    return held if isinstance(held, int) else None


def _outcome(rig: Rig, scenario: Scenario, leaked: int | None, seconds: float) -> Outcome:
    # Ten times a healthy node's median: an answer later than that waited on the fault.
    figures = rig.ledger.figures(slow_after=10 * rig.profile.latency)
    counts = [node.counts for node in rig.nodes]
    over = sum(c.over_capacity for c in counts) + figures.errors.get(NODE_BUSY, 0)
    for sched in rig.live:
        sched.sample()
    notes = list(rig.notes)
    if counts:
        notes.append(_node_note(counts))
    return Outcome(
        scenario=scenario.name,
        store=rig.store,
        profile=rig.profile.name,
        figures=figures,
        leaked=leaked,
        over_capacity=over,
        peak_rss_mb=max(sched.peak_rss for sched in rig.schedulers) / 2**20,
        tracebacks=sum(sched.tracebacks() for sched in rig.schedulers),
        seconds=seconds,
        checks=dict(rig.checks),
        notes=tuple(notes),
    )


def _node_note(counts: list[NodeCounts]) -> str:
    stale = sum(c.stale_answers for c in counts)
    cancels = sum(c.cancels for c in counts)
    peak = max(c.peak_running for c in counts)
    return f"nodes: peak {peak} running, {cancels} cancels, {stale} stale answers sent"
