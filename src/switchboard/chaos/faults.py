"""The faults, one coroutine each: inject episodes while the load runs, then put things right.

Every episode starts with :meth:`Rig.fault` (the recovery time is measured from there).  A fault
returns once the load is over and everything it broke is running again, so that what follows
(answers, idleness, leaked slots) is measured on a whole system.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import shutil
import signal
from collections.abc import Callable

from switchboard.chaos.rig import Profile, Rig
from switchboard.chaos.slow import SlowConsumer
from switchboard.chaos.storm import storm
from switchboard.store.keys import DEFAULT_NAMESPACE, StoreKeys

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


# --- several instances on one Redis (issue 10 item 7) -----------------------------------------


def cluster_flags(profile: Profile) -> dict[str, object]:
    """Instances that notice a dead one soon (its nodes may register elsewhere only then)."""
    return {"instance_ttl": instance_ttl(profile)}


def instance_ttl(profile: Profile) -> float:
    return max(1.5 * profile.scale, 6 * profile.heartbeat_interval)


def lasting(seconds: Callable[[Profile], float]) -> Callable[[Profile], Profile]:
    """A profile whose load lasts at least ``seconds(profile)`` (a lower rate, the same
    number of utterances): a fault that takes long must still meet load, and after it."""

    def shape(profile: Profile) -> Profile:
        rate = min(profile.rate, profile.utterances / seconds(profile))
        return dataclasses.replace(profile, rate=rate)

    return shape


def lasting_at_rate(seconds: Callable[[Profile], float]) -> Callable[[Profile], Profile]:
    """A profile whose load lasts at least ``seconds(profile)`` at its rate (more utterances)."""

    def shape(profile: Profile) -> Profile:
        utterances = max(profile.utterances, int(profile.rate * seconds(profile)))
        return dataclasses.replace(profile, utterances=utterances)

    return shape


def cutoff_for(profile: Profile) -> float:
    """Longer than a lease (the cut-off instance's leases expire meanwhile) and than the 2 s
    within which it must refuse, with room to check that it did."""
    return max(1.5 * profile.reservation_lease, 3.0 * profile.scale)


async def instance_kill(rig: Rig) -> None:
    """SIGKILL one of the instances mid-load.  Its nodes and sessions connect to the others
    next (as an agent with several ``--url``s, or a client behind a load balancer, does); a
    node gets in once the dead instance's presence has expired.  Its sessions resend what it
    left unanswered."""
    if not await rig.still_loading_after(rig.profile.episode_every * 2):
        return
    victim = rig.schedulers[1]
    survivors = [sched for sched in rig.schedulers if sched is not victim]
    moved = [node for node in rig.nodes if node.url.startswith(victim.ws_url)]
    on_victim = [s for s in rig.sessions if s.url.startswith(victim.ws_url)]
    for n, node in enumerate(moved):
        node.url = survivors[n % len(survivors)].ws_url + "/ws/node"
    for n, session in enumerate(on_victim):
        session.retarget(survivors[n % len(survivors)].ws_url)
    # Mid-load: when the victim has utterances in flight (bounded: the load may be light).
    with contextlib.suppress(TimeoutError):
        await _until(lambda: sum(s.pending for s in on_victim) >= 2, rig.profile.episode_every)
    connections = [node.counts.connections for node in moved]
    rig.fault()
    await victim.kill()
    # Until every moved node has registered again, on a survivor.
    await _until(
        lambda: all(n.counts.connections > c for n, c in zip(moved, connections, strict=True)),
        30 + 3 * instance_ttl(rig.profile),
    )
    rig.repaired()
    await rig.done.wait()
    # The sessions resend at once on reconnecting; give the last of them a moment.
    with contextlib.suppress(TimeoutError):
        await _until(lambda: not any(s.to_resend for s in rig.sessions), rig.profile.answer_within)
    resent = sum(s.resent for s in rig.sessions)
    rig.checks["every utterance the dead instance left unanswered was resent"] = not any(
        s.to_resend for s in rig.sessions
    )
    rig.notes.append(
        f"instance kill: sb-1 SIGKILLed; {len(moved)} nodes and {len(on_victim)} sessions"
        f" moved to sb-0 and sb-2; {resent} utterances resent (each is also counted once as"
        " cut, 'disconnected')"
    )


async def redis_cutoff(rig: Rig) -> None:
    """Cut instance sb-0 off from Redis at its proxy (a partition: its connections to Redis
    stay open and carry nothing; its node and session sockets stay up), for longer than a
    lease; then heal.  sb-0 must refuse new utterances (``SCHEDULER_DEPENDENCY_DOWN``) within
    2 s, and not over-fill any node when it comes back (the node counts that)."""
    proxy = rig.proxy
    assert proxy is not None
    profile = rig.profile
    cut_for = cutoff_for(profile)
    within = 2.0 * profile.scale
    on_cut = [s for n, s in enumerate(rig.sessions) if rig.home(n) is rig.sched]
    checked = late = dispatched = 0
    while await rig.still_loading_after(profile.episode_every):
        lines = {s.line for s in on_cut if s.line is not None}
        rig.fault()
        cut_at = rig.now()
        proxy.cut()
        await asyncio.sleep(cut_for)
        proxy.heal()
        healed_at = rig.now()
        rig.repaired()
        # Sent after the cut and long enough before the heal that no store could answer.
        await asyncio.sleep(within)
        for line in lines:
            for sent_at, kind, answered_at in rig.ledger.first_answers(line):
                if not cut_at + 0.05 <= sent_at <= healed_at - within:
                    continue
                checked += 1
                if kind != REFUSED_DOWN:
                    dispatched += 1
                elif answered_at is None or answered_at - sent_at > within:
                    late += 1
    rig.checks["the cut-off instance refused every utterance within 2 s"] = not (dispatched or late)
    rig.notes.append(
        f"Redis cutoff: sb-0 cut off {cut_for:.1f}s per episode; {checked} utterances sent to"
        f" it while cut off (and 2 s before the heal): {dispatched} not refused, {late} refused"
        " later than 2 s"
    )


REFUSED_DOWN = "SCHEDULER_DEPENDENCY_DOWN"


# --- Redis Cluster ----------------------------------------------------------------------------


def failover_lasts(profile: Profile) -> float:
    """Load before the kill, the failover (the cluster's node timeout, 1 s scaled, before the
    replica's election) and after it."""
    return 4 * profile.episode_every + 3 * profile.scale


def spanning_job(profile: Profile) -> float:
    """The median answer time of a job meant to run across the failover (about 2 s scaled
    here) and to outlive its lease, unless the lease is renewed or re-created."""
    return max(3.0 * profile.scale, 1.5 * profile.reservation_lease)


def shard_failover_shape(profile: Profile) -> Profile:
    """Long enough a load, and a job timeout the spanning jobs stay within."""
    profile = lasting_at_rate(failover_lasts)(profile)
    job_timeout = max(profile.job_timeout, 2 * spanning_job(profile))
    return dataclasses.replace(profile, job_timeout=job_timeout)


def shard_failover_unavailable() -> str | None:
    """Why the shard failover cannot run here: it starts a cluster with ``redis-cli``."""
    if shutil.which("redis-cli") is None or shutil.which("redis-server") is None:
        return "needs redis-server and redis-cli on PATH (apt-get install redis-server)"
    return None


async def shard_failover(rig: Rig) -> None:
    """SIGKILL, mid-load, the primary that holds the most live leases of the run (ties: the
    most lease keys); wait until its replica is promoted and the cluster is ok again.

    Just before the kill, the nodes whose leases live on that primary turn slow: the jobs they
    take then run across the whole failover, longer than a lease, so their leases must survive
    on the replica or be re-created by the instances' re-assert (Redis replicates
    asynchronously; a renewal cannot reach a dead shard) before another instance fills those
    slots again.  A node over its capacity counts it."""
    cluster = rig.cluster
    assert cluster is not None
    profile = rig.profile
    if not await rig.still_loading_after(profile.episode_every * 2):
        return
    namespace = str(rig.sched_flags.get("redis_namespace", DEFAULT_NAMESPACE))
    # Mid-load: when some primary holds leases (bounded: the load may be light).
    deadline = rig.now() + profile.episode_every
    while True:
        shares = await cluster.leases(namespace)
        victim = max(shares, key=lambda s: (s.live, s.keys))
        if victim.live > 0 or rig.now() > deadline:
            break
        await asyncio.sleep(0.02)
    keys = StoreKeys(namespace, sharded=True)
    homes = await asyncio.gather(
        *(asyncio.to_thread(cluster.cluster.primary_of, keys.slots(n.node_id)) for n in rig.nodes)
    )
    slow = [n for n, home in zip(rig.nodes, homes, strict=True) if home is victim.primary]
    for node in slow:
        node.conduct.latency = spanning_job(profile)
    await asyncio.sleep(4 * profile.latency)  # their next jobs are taken (and leased)
    rig.fault()
    killed_at = rig.now()
    promoted = await cluster.kill_primary(victim.primary)
    rig.repaired()
    for node in slow:
        node.conduct.latency = profile.latency
    rig.checks["the killed primary's replica was promoted"] = promoted.running
    rig.notes.append(
        f"shard failover: primary :{victim.primary.port} SIGKILLed holding {victim.live} live"
        f" leases in {victim.keys} lease keys (the others: "
        + ", ".join(f"{s.live}/{s.keys}" for s in shares if s is not victim)
        + f"), {len(slow)} of its nodes slowed to {spanning_job(profile):.1f}s jobs;"
        f" replica :{promoted.port} promoted and the cluster ok {rig.now() - killed_at:.1f}s"
        " later"
    )
    await rig.done.wait()
    rig.notes.append(f"leases the instances re-created after the failover: {_recreated(rig)}")


RECREATED = re.compile(r"re-created (\d+) lease\(s\) of running jobs")


def _recreated(rig: Rig) -> int:
    """Leases of running jobs the store had lost and the instances' re-assert put back, as
    their logs say (dispatch's warning)."""
    return sum(
        int(m.group(1))
        for sched in rig.schedulers
        for m in RECREATED.finditer(sched.log.read_text(errors="replace"))
    )


async def _until(done: Callable[[], bool], within: float) -> None:
    """Poll ``done`` (state another task changes without an event) for at most ``within``."""
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)
