"""The test rig of one fault run: a scheduler process, its store, nodes, sessions, the ledger.

:class:`Profile` holds the sizes and timings (``FULL``: at least 1,000 utterances a scenario;
``QUICK``: a seconds-long version for CI).  :class:`Rig` starts and stops the parts and is what
a scenario's fault gets its hands on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.chaos.ledger import Ledger
from switchboard.chaos.procs import AgentProc, RedisClusterProc, RedisProc, SchedulerProc
from switchboard.chaos.proxy import RedisProxy
from switchboard.chaos.sessions import ChaosSession
from switchboard.tools.fakenode import Conduct, FakeNode

PAIR = ("en", "de")


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Sizes and timings of a run (seconds unless named otherwise)."""

    name: str
    utterances: int  # per scenario and store, sent by the steady sessions
    rate: float  # utterances per second, all sessions together
    sessions: int
    window: int  # utterances in flight per session at most
    nodes: int
    capacity: int  # max_concurrency of each node
    latency: float  # a healthy node's median answer time
    heartbeat_interval: float
    job_timeout: float
    pending_timeout: float
    reservation_lease: float  # short: leaked slots of a crash come back after it
    handshake_timeout: float  # also the close timeout: how long a slow consumer is waited for
    episode_every: float  # time between two fault episodes
    storm_sessions: int
    storm_per_address: int = 200  # below the default --max-connections-per-address (256)
    scale: float = 1.0  # how much ``scaled`` stretched the times

    def scaled(self, factor: float) -> Profile:
        """Every time stretched by ``factor`` (a slow machine), sizes unchanged."""
        times = {
            f.name: getattr(self, f.name) * factor
            for f in dataclasses.fields(self)
            if f.name
            in {
                "latency",
                "heartbeat_interval",
                "job_timeout",
                "pending_timeout",
                "reservation_lease",
                "handshake_timeout",
                "episode_every",
            }
        }
        return dataclasses.replace(
            self, rate=self.rate / factor, scale=self.scale * factor, **times
        )

    @property
    def answer_within(self) -> float:
        """The longest an accepted utterance may take to be answered, with room to spare:
        waiting, then every attempt timing out after waiting again (contract §2)."""
        attempts = 3
        return self.pending_timeout + attempts * (self.job_timeout + self.pending_timeout) + 2


FULL = Profile(
    name="full",
    utterances=1000,
    rate=100.0,
    sessions=10,
    window=4,
    nodes=4,
    capacity=4,
    latency=0.03,
    heartbeat_interval=0.5,
    job_timeout=1.0,
    pending_timeout=5.0,
    reservation_lease=2.0,
    handshake_timeout=2.0,
    episode_every=2.5,
    storm_sessions=2000,
)

QUICK = Profile(
    name="quick",
    utterances=150,
    rate=100.0,
    sessions=6,
    window=4,
    nodes=3,
    capacity=4,
    latency=0.03,
    heartbeat_interval=0.25,
    job_timeout=0.5,
    pending_timeout=3.0,
    reservation_lease=1.0,
    handshake_timeout=1.5,
    episode_every=0.7,
    storm_sessions=500,
)


@dataclass(slots=True)
class Rig:
    """Everything one run consists of."""

    profile: Profile
    store: str
    workdir: Path
    ledger: Ledger = field(default_factory=Ledger)
    redis: RedisProc | None = None
    cluster: RedisClusterProc | None = None  # a private Redis Cluster instead, when asked
    on_cluster: bool = False  # the Redis store on a Redis Cluster (``redis+cluster://``)
    scheduler: SchedulerProc | None = None  # the first instance
    schedulers: list[SchedulerProc] = field(default_factory=list)  # every instance
    instances: int = 1  # scheduler instances on one Redis (a cluster when more than one)
    proxy: RedisProxy | None = None  # in front of Redis for the first instance, when asked
    resend: bool = False  # sessions resend what a lost connection left unanswered
    sched_flags: dict[str, object] = field(default_factory=dict)  # every instance's, as started
    agents: list[AgentProc] = field(default_factory=list)
    nodes: list[FakeNode] = field(default_factory=list)
    sessions: list[ChaosSession] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the load has all been sent
    notes: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # must all hold for a clean run

    @staticmethod
    def now() -> float:
        return time.monotonic()

    async def still_loading_after(self, seconds: float) -> bool:
        """Wait ``seconds`` (less if the load ends first); whether the load is still on."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), seconds)
        return not self.done.is_set()

    def fault(self) -> None:
        """A fault episode starts now (and ends now, unless :meth:`repaired` follows)."""
        self.ledger.fault(self.now())

    def repaired(self) -> None:
        """The current fault episode ends now: recovery is measured from here."""
        self.ledger.repaired(self.now())

    @property
    def sched(self) -> SchedulerProc:
        assert self.scheduler is not None, "scheduler not started"
        return self.scheduler

    # --- parts ------------------------------------------------------------------------------

    def scheduler_flags(self, extra: dict[str, object]) -> dict[str, object]:
        p = self.profile
        flags: dict[str, object] = {
            "heartbeat_interval": p.heartbeat_interval,
            "job_timeout": p.job_timeout,
            "pending_timeout": p.pending_timeout,
            "max_attempts": 3,
            "reservation_lease": p.reservation_lease,
            "handshake_timeout": p.handshake_timeout,
            "default_max_concurrency": p.capacity,
        }
        if self.cluster is not None:
            flags["redis_url"] = self.cluster.url
        elif self.store == "redis":
            assert self.redis is not None
            flags["redis_url"] = self.redis.url
        else:
            flags["store"] = "memory"
        return {**flags, **extra}

    async def start_scheduler(self, extra: dict[str, object], *, proxied: bool = False) -> None:
        """The scheduler, or ``instances`` of them on one Redis (``sb-0``, ``sb-1``, …);
        ``proxied``: the first reaches Redis through a :class:`RedisProxy` a fault can cut.
        With ``on_cluster``, a private Redis Cluster instead of one redis-server."""
        if self.store == "redis" and self.on_cluster:
            self.cluster = RedisClusterProc(self.workdir, scale=self.profile.scale)
            await self.cluster.start()
        elif self.store == "redis":
            self.redis = RedisProc(self.workdir)
            await self.redis.start()
        if proxied:
            assert self.redis is not None
            self.proxy = RedisProxy("127.0.0.1", self.redis.port)
            await self.proxy.start()
        self.sched_flags = self.scheduler_flags(extra)
        for n in range(self.instances):
            flags = dict(self.sched_flags)
            if self.instances > 1:
                flags["instance_id"] = f"sb-{n}"
            if n == 0 and self.proxy is not None:
                flags["redis_url"] = f"redis://127.0.0.1:{self.proxy.port}/0"
            log = self.workdir / ("serve.log" if n == 0 else f"serve-{n}.log")
            self.schedulers.append(SchedulerProc(flags, log=log))
        await asyncio.gather(*(sched.start() for sched in self.schedulers))
        self.scheduler = self.schedulers[0]

    def home(self, n: int) -> SchedulerProc:
        """The instance the ``n``-th node or session starts on (spread round robin)."""
        return self.schedulers[n % len(self.schedulers)]

    @property
    def live(self) -> list[SchedulerProc]:
        return [sched for sched in self.schedulers if sched.running]

    def agent(self, n: int) -> AgentProc:
        p = self.profile
        flags = ["--url", self.sched.ws_url, "--pair", ":".join(PAIR)]
        flags += ["--max-concurrency", str(p.capacity)]
        flags += ["--heartbeat-interval", f"{p.heartbeat_interval / 2:g}"]
        flags += ["--reconnect-max", "0.5", "--drain-timeout", "1"]
        flags += ["--latency-median", f"{p.latency:g}", "--latency-p99", f"{3 * p.latency:g}"]
        flags += ["--seed", str(n), "--log-level", "warning"]
        return AgentProc(f"agent-{n}", flags, log=self.workdir / f"agent-{n}.log")

    async def start_agents(self) -> None:
        self.agents = [self.agent(n) for n in range(self.profile.nodes)]
        await asyncio.gather(*(agent.start(within=30) for agent in self.agents))

    async def start_nodes(self, conduct: list[Conduct]) -> None:
        p = self.profile
        self.nodes = [
            FakeNode(
                self.home(n).ws_url,
                f"node-{n}",
                pairs=(PAIR,),
                capacity=p.capacity,
                heartbeat_every=p.heartbeat_interval / 3,
                conduct=conduct[n],
                seed=n,
                version="chaos",
            )
            for n in range(p.nodes)
        ]
        for node in self.nodes:
            node.start()
        async with asyncio.timeout(10):
            await asyncio.gather(*(node.registered.wait() for node in self.nodes))

    async def start_sessions(self) -> None:
        p = self.profile
        self.sessions = [
            ChaosSession(
                self.home(n).ws_url,
                self.ledger,
                self.now,
                pair=PAIR,
                window=p.window,
                resend=self.resend,
            )
            for n in range(p.sessions)
        ]
        for session in self.sessions:
            session.start()
        await asyncio.gather(*(s.wait_connected(10) for s in self.sessions))

    async def wait_ready_nodes(self, count: int, *, within: float = 15.0) -> None:
        """Until ``/api/v1/nodes`` of every instance lists ``count`` ready nodes (dispatch
        sees them: each instance sees the whole cluster)."""
        async with asyncio.timeout(within):
            for sched in self.schedulers:
                while await sched.ready_nodes() < count:  # noqa: ASYNC110 - polls HTTP
                    await asyncio.sleep(0.05)

    async def sample_rss(self) -> None:
        """Keep the schedulers' peak memory up to date while the run lasts."""
        while True:
            for sched in self.live:
                sched.sample()
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                await session.close(2)
        await asyncio.gather(*(node.stop() for node in self.nodes))
        await asyncio.gather(*(agent.stop(within=5) for agent in self.agents))
        await asyncio.gather(*(sched.stop(within=10) for sched in self.schedulers))
        if self.proxy is not None:
            await self.proxy.stop()
        if self.redis is not None:
            await self.redis.stop()
        if self.cluster is not None:
            await self.cluster.stop()
