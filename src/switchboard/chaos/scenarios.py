"""The fault scenarios of issue 5, in the order of its table.

A :class:`Scenario` says what runs (node agent processes, or in-process nodes whose conduct a
fault can change), which stores it applies to, the scheduler flags it needs, whether its
leaked slots are read only after a lease (crashes), and its fault (``faults.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from switchboard.chaos import faults
from switchboard.chaos.rig import Profile, Rig
from switchboard.tools.fakenode import Conduct

BOTH = ("redis", "memory")
REDIS_ONLY = ("redis",)


def _no_flags(_: Profile) -> dict[str, object]:
    return {}


def _healthy(profile: Profile, _: int) -> Conduct:
    return Conduct(latency=profile.latency)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    what: str
    fault: Callable[[Rig], Coroutine[None, None, None]]
    stores: tuple[str, ...] = BOTH
    agents: bool = False  # real `switchboard node` processes instead of in-process nodes
    crash: bool = False  # the scheduler crashes: slots count as leaked only after a lease
    flags: Callable[[Profile], dict[str, object]] = field(default=_no_flags)
    conduct: Callable[[Profile, int], Conduct] = field(default=_healthy)
    instances: int = 1  # scheduler instances on one Redis
    proxied: bool = False  # the first instance reaches Redis through a proxy (chaos/proxy.py)
    on_cluster: bool = False  # a private 3-shard Redis Cluster instead of one redis-server
    resend: bool = False  # sessions resend what a dead instance left unanswered
    # Why the scenario cannot run here (None: it can); checked before anything starts.
    unavailable: Callable[[], str | None] = field(default=lambda: None)
    # The profile as this scenario runs it (e.g. a load long enough to outlast its fault).
    shape: Callable[[Profile], Profile] = field(default=lambda p: p)


def _big_results(profile: Profile, _: int) -> Conduct:
    # 32 KiB of tts_audio per answer: a consumer that stops reading fills its buffers fast.
    return Conduct(latency=profile.latency, result_bytes=32 * 1024)


def _small_outbox(_: Profile) -> dict[str, object]:
    return {"session_outbox_limit": 32}


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "node crash",
        "node agent processes SIGKILLed mid-job, then restarted; the others keep serving",
        faults.node_crash,
        agents=True,  # not crash=True: the scheduler lives and must release at once
    ),
    Scenario("silent node", "a node acks new jobs and never answers them", faults.silent_node),
    Scenario(
        "slow node",
        "a node answers after the job timeout (its stale answers must change nothing)",
        faults.slow_node,
    ),
    Scenario(
        "heartbeat loss",
        "a node agent SIGSTOPped: socket open, heartbeats and answers stop; then SIGCONT",
        faults.heartbeat_loss,
        agents=True,
    ),
    Scenario(
        "flapping node",
        "two nodes flip their services ready / not ready every few hundred ms",
        faults.flapping,
    ),
    Scenario(
        "Redis restart",
        "redis-server stopped and started again under load (every lease lost)",
        faults.redis_restart,
        stores=REDIS_ONLY,
    ),
    Scenario(
        "Redis stall",
        "Redis stops answering for longer than the store's call timeout (CLIENT PAUSE ALL,"
        " then SIGSTOP/SIGCONT)",
        faults.redis_stall,
        stores=REDIS_ONLY,
    ),
    Scenario(
        "scheduler crash",
        "scheduler SIGKILLed and restarted on the same port and store; agents and sessions"
        " reconnect",
        faults.scheduler_crash,
        agents=True,
        crash=True,
    ),
    Scenario(
        "slow consumer",
        "a session floods utterances and stops reading its socket",
        faults.slow_consumer,
        flags=_small_outbox,
        conduct=_big_results,
    ),
    Scenario(
        "connection storm",
        "thousands of sessions connect at once, half send an utterance, all drop",
        faults.connection_storm,
    ),
)

SCENARIOS += (
    Scenario(
        "instance kill",
        "one of 3 instances on one Redis SIGKILLed under load; its nodes and sessions move to"
        " the others, the sessions resend what it left unanswered",
        faults.instance_kill,
        stores=REDIS_ONLY,
        crash=True,
        instances=3,
        resend=True,
        flags=faults.cluster_flags,
        shape=faults.lasting_at_rate(lambda p: 3 * p.episode_every + 2 * faults.instance_ttl(p)),
    ),
    Scenario(
        "Redis cutoff",
        "one of 2 instances cut off from Redis (a partition at a proxy) while its node and"
        " session sockets stay up; it must refuse within 2 s and not over-fill on return",
        faults.redis_cutoff,
        stores=REDIS_ONLY,
        instances=2,
        proxied=True,
        flags=faults.cluster_flags,
        shape=faults.lasting(lambda p: 2 * faults.cutoff_for(p) + 6 * p.scale),
    ),
    Scenario(
        "shard failover",
        "3 instances on a 3-shard Redis Cluster; the primary holding the most leases SIGKILLed"
        " under load, its replica promoted",
        faults.shard_failover,
        stores=REDIS_ONLY,
        instances=3,
        on_cluster=True,
        flags=faults.cluster_flags,
        unavailable=faults.shard_failover_unavailable,
        shape=faults.shard_failover_shape,
    ),
)

BY_NAME = {s.name: s for s in SCENARIOS}


def slug(name: str) -> str:
    """``"Redis stall"`` → ``"redis-stall"`` (command line and file names)."""
    return name.lower().replace(" ", "-")
