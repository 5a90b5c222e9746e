"""The faults, one coroutine each: inject episodes while the load runs, then put things right.

Every episode starts with :meth:`Rig.fault` (the recovery time is measured from there).  A fault
returns once the load is over and everything it broke is running again, so that what follows
(answers, idleness, leaked slots) is measured on a whole system.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from switchboard.chaos.rig import Rig
from switchboard.chaos.slow import SlowConsumer
from switchboard.chaos.storm import storm

# The Redis store's call timeout (RedisStore's default): a stall longer than this makes
# reservations fail instead of wait.
STORE_TIMEOUT = 1.0


async def node_crash(rig: Rig) -> None:
    """SIGKILL a node agent mid-job; start it again a moment later (same node id)."""
    n = 0
    while await rig.still_loading_after(rig.profile.episode_every):
        agent = rig.agents[n % len(rig.agents)]
        n += 1
        rig.fault()
        await agent.kill()
        await asyncio.sleep(rig.profile.episode_every / 3)
        await agent.start(within=30)


async def silent_node(rig: Rig) -> None:
    """One node keeps acking new jobs and never answers them, for a while at a time."""
    node = rig.nodes[0]
    while await rig.still_loading_after(rig.profile.episode_every):
        rig.fault()
        node.conduct.silent = True
        await rig.still_loading_after(rig.profile.episode_every)
        node.conduct.silent = False
        rig.repaired()


async def slow_node(rig: Rig) -> None:
    """One node answers new jobs only after the job timeout (each answer arrives stale)."""
    node = rig.nodes[0]
    while await rig.still_loading_after(rig.profile.episode_every):
        rig.fault()
        node.conduct.late_by = rig.profile.job_timeout * 1.5
        await rig.still_loading_after(rig.profile.episode_every)
        node.conduct.late_by = None
        rig.repaired()
    await asyncio.sleep(rig.profile.job_timeout * 1.5)  # the last stale answers arrive


async def heartbeat_loss(rig: Rig) -> None:
    """SIGSTOP a node agent past three heartbeat intervals: its socket stays open (the kernel
    keeps it), its heartbeats and answers stop.  SIGCONT; it must find itself dropped and
    register again."""
    n = 0
    stopped_for = 3.5 * rig.profile.heartbeat_interval + 0.3
    while await rig.still_loading_after(rig.profile.episode_every):
        agent = rig.agents[n % len(rig.agents)]
        n += 1
        rig.fault()
        agent.send(signal.SIGSTOP)
        await asyncio.sleep(stopped_for)
        agent.send(signal.SIGCONT)
        await agent.wait_ready(within=15)


async def flapping(rig: Rig) -> None:
    """Two nodes flip their services ready / not ready every few hundred milliseconds."""
    flappers = rig.nodes[:2]
    period = min(0.3, rig.profile.heartbeat_interval)
    while await rig.still_loading_after(period):
        going_down = flappers[0].conduct.ready
        if going_down:
            rig.fault()
        for node in flappers:
            node.conduct.ready = not going_down
            await node.heartbeat()
    for node in flappers:
        node.conduct.ready = True
        await node.heartbeat()


async def redis_restart(rig: Rig) -> None:
    """Stop redis-server (every lease is lost with it) and start it again on the same port."""
    assert rig.redis is not None
    while await rig.still_loading_after(rig.profile.episode_every):
        rig.fault()
        await rig.redis.stop()
        await asyncio.sleep(rig.profile.episode_every / 3)
        await rig.redis.start()
        rig.repaired()


async def redis_stall(rig: Rig) -> None:
    """Redis stops answering for longer than the store's call timeout, two ways in turn:
    ``CLIENT PAUSE ALL`` (it reads commands and holds them) and SIGSTOP (the kernel takes the
    bytes; Redis runs them on SIGCONT, after the scheduler has given up on them and closed the
    connection — as after a long fork, a disk stall or a paused VM)."""
    assert rig.redis is not None
    stall = max(1.5 * STORE_TIMEOUT, rig.profile.episode_every / 2)
    n = 0
    while await rig.still_loading_after(rig.profile.episode_every):
        rig.fault()
        if n % 2 == 0:
            await rig.redis.pause(stall)
            await asyncio.sleep(stall)
        else:
            rig.redis.freeze()
            await asyncio.sleep(stall)
            rig.redis.thaw()
        n += 1
        rig.repaired()


async def scheduler_crash(rig: Rig) -> None:
    """SIGKILL the scheduler; start it again on the same port (and the same Redis).  Node
    agents and sessions reconnect by themselves."""
    while await rig.still_loading_after(rig.profile.episode_every * 1.5):
        rig.fault()
        await rig.sched.kill()
        await asyncio.sleep(0.3)
        await rig.sched.start()
        rig.repaired()


async def slow_consumer(rig: Rig) -> None:
    """A session floods utterances and never reads; the scheduler must end it, tell it, close
    it, and not buffer its answers without bound."""
    await rig.still_loading_after(rig.profile.episode_every / 2)
    before = await _sessions(rig)
    rig.sched.sample()
    rss_before = rig.sched.peak_rss
    consumer = SlowConsumer("127.0.0.1", rig.sched.port, rig.ledger, rig.now)
    await consumer.open()
    rig.fault()
    stop = asyncio.Event()
    flood = asyncio.create_task(consumer.flood(rate=200, until=stop))
    ended = await _wait_sessions(rig, lambda count: count <= before, within=30)
    stop.set()
    await flood
    await consumer.read_all(within=rig.profile.handshake_timeout + 10)
    await consumer.close()
    out = consumer.outcome
    rig.checks["slow consumer ended by the scheduler"] = ended
    rig.checks["slow consumer told SESSION_CLOSED"] = out.told_session_closed
    rig.checks["slow consumer's socket closed"] = out.socket_closed
    rig.sched.sample()
    rig.notes.append(
        f"slow consumer: sent {out.sent}, read {out.frames_read} frames after resuming,"
        f" close code {out.close_code}, socket gone {_seconds(out.seconds_to_close)} after"
        f" reading resumed; scheduler peak RSS {rss_before / 2**20:.0f} MB before,"
        f" {rig.sched.peak_rss / 2**20:.0f} MB after"
    )
    rig.notes.extend(out.notes)


async def connection_storm(rig: Rig) -> None:
    """Thousands of sessions connect at once, half send an utterance, all drop abruptly."""
    await rig.still_loading_after(rig.profile.episode_every / 2)
    before = await _sessions(rig)
    rig.fault()
    out = await storm(
        rig.sched.ws_url,
        rig.ledger,
        rig.now,
        sessions=rig.profile.storm_sessions,
        per_address=rig.profile.storm_per_address,
    )
    released = await _wait_sessions(rig, lambda count: count <= before, within=30)
    rig.checks["every storm session opened"] = out.opened == out.attempted
    rig.checks["every storm session released"] = released
    rig.notes.append(
        f"storm: {out.opened}/{out.attempted} sessions opened in {out.seconds:.1f}s"
        + (f", refused {dict(out.refused)}" if out.refused else "")
        + (f", failed {dict(out.failed)}" if out.failed else "")
    )


# --- helpers ---------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}s"


async def _sessions(rig: Rig) -> int:
    stats = await rig.sched.stats()
    count = stats.get("sessions") if stats else None
    return count if isinstance(count, int) else len(rig.sessions)


async def _wait_sessions(rig: Rig, ok: Callable[[int], bool], *, within: float) -> bool:
    """Until ``ok(open sessions)`` holds on the scheduler; whether it did in time."""
    deadline = rig.now() + within
    while rig.now() < deadline:
        stats = await rig.sched.stats()
        count = stats.get("sessions") if stats else None
        if isinstance(count, int) and ok(count):
            return True
        await asyncio.sleep(0.05)
    return False
