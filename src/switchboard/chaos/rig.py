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
from switchboard.chaos.procs import AgentProc, RedisProc, SchedulerProc
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
        return dataclasses.replace(self, rate=self.rate / factor, **times)

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
    scheduler: SchedulerProc | None = None
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
        if self.store == "redis":
            assert self.redis is not None
            flags["redis_url"] = self.redis.url
        else:
            flags["store"] = "memory"
        return {**flags, **extra}

    async def start_scheduler(self, extra: dict[str, object]) -> None:
        if self.store == "redis":
            self.redis = RedisProc(self.workdir)
            await self.redis.start()
        self.scheduler = SchedulerProc(self.scheduler_flags(extra), log=self.workdir / "serve.log")
        await self.scheduler.start()

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
                self.sched.ws_url,
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
            ChaosSession(self.sched.ws_url, self.ledger, self.now, pair=PAIR, window=p.window)
            for _ in range(p.sessions)
        ]
        for session in self.sessions:
            session.start()
        await asyncio.gather(*(s.wait_connected(10) for s in self.sessions))

    async def wait_ready_nodes(self, count: int, *, within: float = 15.0) -> None:
        """Until ``/api/v1/stats`` shows ``count`` ready nodes (dispatch sees them)."""
        async with asyncio.timeout(within):
            while True:
                stats = await self.sched.stats()
                nodes = stats.get("nodes") if stats else None
                if isinstance(nodes, dict) and nodes.get("ready", 0) >= count:
                    return
                await asyncio.sleep(0.05)

    async def sample_rss(self) -> None:
        """Keep the scheduler's peak memory up to date while the run lasts."""
        while True:
            self.sched.sample()
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                await session.close(2)
        await asyncio.gather(*(node.stop() for node in self.nodes))
        await asyncio.gather(*(agent.stop(within=5) for agent in self.agents))
        if self.scheduler is not None:
            await self.scheduler.stop(within=10)
        if self.redis is not None:
            await self.redis.stop()
