"""What the benchmark runs: its configuration, the node topology, and each scenario's plan.

E1 stress      closed loop: S sessions × up to U utterances, ``window`` outstanding each, over
               N nodes with a fast stand-in backend, for each S of a sweep.  Throughput and
               latency under saturation.
E2 storm       open loop at a speaking pace (Poisson bursts, ``rate`` utterances/s/session),
               alternating calm and storm phases (``storm.py``).  Latency with and without the
               storm, over time.
E3 replay      the sample trace replayed and checked (``replay.py``).
E0 hot         (``hot``, issue 9) the scheduler's own cost: E2's speaking pace and storm, but
               nodes answer at once and have slots to spare, so nothing but the scheduler
               (and the sockets to it) sits between an utterance and its ``job_assign``;
               measured from outside first.  Then a closed loop over the same instant nodes:
               completed jobs/s of one process.
RSS            10,000 sessions connected and idle: the scheduler's memory per session.
E4 scale-out   (``e4``, issue 10) instances on one Redis: same- against cross-instance
               latency, jobs/s of one and of two instances, Redis commands per job, the
               failover time after an instance is killed, and a sizing on paper (``e4.py``).
E5 saturation  (``e5``, issue 14) E0's instant nodes; capacity C from a closed loop, then open
               loops offering 0.5, 1, 2 and 4 × C, two tenants one offering 10× the other,
               and two priority classes, each run stopped and waited on (``e5.py``).

Every scenario runs each design (``snapshot``, ``global_lock``) on each store, interleaved
point by point, so every headline figure is a ratio measured in one run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from switchboard.bench.loadgen import GenSpec, NodeSpec
from switchboard.bench.storm import StormSpec

Pair = tuple[str, str]
SCENARIOS = ("hot", "e1", "e2", "e3", "rss", "e4", "e5")
DESIGNS = ("snapshot", "global_lock")
STORES = ("memory", "redis")
# English to and from five languages: ten directed pairs, as a European/Asian deployment.
LANGUAGE_PAIRS: tuple[Pair, ...] = (
    ("en", "de"),
    ("en", "fr"),
    ("en", "es"),
    ("en", "zh-cn"),
    ("en", "ja"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    scenarios: tuple[str, ...] = SCENARIOS
    designs: tuple[str, ...] = DESIGNS
    stores: tuple[str, ...] = STORES
    nodes: int = 200
    e1_sessions: tuple[int, ...] = (100, 300, 1000)
    e1_utterances: int = 1000
    e1_window: int = 2
    e1_duration: float = 8.0
    e1_latency: tuple[float, float] = (0.02, 0.08)  # a fast stand-in: nodes never the limit
    e1_max_concurrency: int = 16
    e2_sessions: int = 1000
    e2_rate: float = 0.5
    e2_phase_s: float = 8.0
    e2_cycles: int = 2  # calm, storm, calm, storm
    e2_warmup_s: float = 4.0  # calm, unmeasured: connection pools grow, sessions bind
    e2_latency: tuple[float, float] = (0.15, 0.6)  # the stand-in backend's defaults
    e2_max_concurrency: int = 4
    storm: StormSpec = field(default_factory=StormSpec)
    rss_sessions: int = 10_000
    # E0 (``hot``): nodes answer at once and never run short of slots, so the figures are
    # the scheduler's own; the phases are E2's (a calm warm-up, then calm/storm cycles).
    hot_sessions: int = 1000
    hot_rate: float = 0.5
    hot_phase_s: float = 8.0
    hot_cycles: int = 2
    hot_warmup_s: float = 4.0
    # 500 utterances/s answered at once keep well under one job per node in flight; 64 slots
    # a node leave room for bursts and for the old design's backlog, so a slot wait is news.
    hot_max_concurrency: int = 64
    hot_max_sessions: int = 300  # the closed-loop throughput phase (0: skip it)
    hot_max_window: int = 2
    hot_max_duration: float = 8.0
    # E0's nodes and sessions in two generator processes (``split_roles``) instead of
    # ``generators`` processes each holding a share of both.
    hot_split_roles: bool = False
    # E4 (issue 10): instances on one Redis, instant nodes (the scheduler's cost, not theirs).
    e4_nodes: int = 40
    e4_slots: int = 64  # per node: as E0, a slot wait is news
    e4_sessions: int = 300  # latency: open loop at e4_rate utterances/s/session
    e4_rate: float = 0.5
    e4_warmup_s: float = 2.0
    e4_seconds: float = 8.0  # latency: the measured phase
    e4_max_sessions: int = 200  # throughput: closed loop, e4_window outstanding each
    e4_window: int = 2
    e4_max_duration: float = 8.0
    e4_instance_ttl: float = 2.0  # failover: --instance-ttl of both instances
    e4_failover_nodes: int = 2  # failover: `switchboard node` agents on the killed instance
    e4_failover_sessions: int = 4  # failover: client sessions on the survivor
    e4_job_s: float = 0.3  # failover: the agents' job latency (median), so jobs are in flight
    # E5 (issue 14): saturation, from outside, over E0's instant nodes (the snapshot design).
    e5_sessions: int = 1000  # open-loop sessions, shared by the groups of a run
    e5_levels: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # offered load, × capacity
    e5_phase_s: float = 5.0  # how long each run offers its load
    e5_wait_s: float = 3.0  # then how long it waits for the answers owed
    e5_capacity: float | None = None  # C given (jobs/s): no capacity run
    e5_capacity_sessions: int = 300  # the capacity run: a closed loop, E0's ``max`` phase
    e5_capacity_s: float = 8.0
    e5_tenant_load: float = 2.0  # the two tenants' offers together, × C
    e5_tenant_ratio: float = 10.0  # the big tenant offers this many times the small one's
    e5_priority_load: float = 2.0  # the two classes' offers together (equal halves), × C
    e5_max_concurrency: int = 64  # slots per node: never the limit
    # "open": sessions ignore OVERLOADED's hint; "hint": they back off on it as the SDK does.
    e5_clients: str = "open"
    e3_trace: Path | None = None  # None: the seeded sample trace (tracegen), generated afresh
    e3_speed: float = 8.0
    generators: int = 1
    warmup: float = 1.0
    audio_bytes: int = 1024
    seed: int = 1
    redis_url: str | None = None  # an existing Redis instead of a private redis-server
    # Extra ``switchboard serve`` flags for every scheduler a run starts (``--serve-flag``),
    # applied last: e.g. E5 with other saturation bounds than the defaults.
    serve_flags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def quick(cls, **overrides: object) -> BenchConfig:
        """Seconds per scenario: a smoke run, not a measurement."""
        small = cls(
            nodes=10,
            e1_sessions=(20,),
            e1_utterances=200,
            e1_duration=1.5,
            e2_sessions=20,
            e2_rate=2.0,
            e2_phase_s=1.5,
            e2_cycles=1,
            e2_warmup_s=0.5,
            hot_sessions=20,
            hot_rate=2.0,
            hot_phase_s=1.5,
            hot_cycles=1,
            hot_warmup_s=0.5,
            hot_max_sessions=20,
            hot_max_duration=1.5,
            rss_sessions=200,
            e4_nodes=6,
            e4_sessions=20,
            e4_rate=2.0,
            e4_warmup_s=0.5,
            e4_seconds=1.5,
            e4_max_sessions=20,
            e4_max_duration=1.5,
            e4_instance_ttl=1.0,
            e4_failover_nodes=1,
            e4_failover_sessions=2,
            e4_job_s=0.1,
            e5_sessions=60,
            e5_phase_s=0.5,
            # The drain ends as soon as every answer is in; a quick run waits past the default
            # --pending-timeout (10 s) so that a slow machine cannot leave one owed.
            e5_wait_s=15.0,
            e5_capacity_sessions=20,
            e5_capacity_s=1.0,
            e3_speed=40.0,
            warmup=0.3,
        )
        return replace(small, **overrides)  # type: ignore[arg-type]

    @property
    def phases(self) -> tuple[tuple[str, float], ...]:
        cycle = (("calm", self.e2_phase_s), ("storm", self.e2_phase_s))
        return (("warmup", self.e2_warmup_s), *(cycle * self.e2_cycles))

    @property
    def hot_phases(self) -> tuple[tuple[str, float], ...]:
        cycle = (("calm", self.hot_phase_s), ("storm", self.hot_phase_s))
        return (("warmup", self.hot_warmup_s), *(cycle * self.hot_cycles))


def topology(count: int, *, max_concurrency: int) -> list[NodeSpec]:
    """Half the nodes serve one language pair both ways, a quarter two pairs, a quarter every
    pair: several pools serve each pair, so preferred pools and tiers matter."""
    nodes: list[NodeSpec] = []
    n = len(LANGUAGE_PAIRS)
    for i in range(count):
        kind = i % 4
        if kind in (0, 1):
            chosen = [LANGUAGE_PAIRS[(i // 2) % n]]
        elif kind == 2:
            chosen = [LANGUAGE_PAIRS[(i // 4) % n], LANGUAGE_PAIRS[(i // 4 + 1) % n]]
        else:
            chosen = list(LANGUAGE_PAIRS)
        pairs = tuple(p for a, b in chosen for p in ((a, b), (b, a)))
        nodes.append(NodeSpec(f"bench-node-{i:04d}", pairs, max_concurrency))
    return nodes


def churn_profiles() -> tuple[tuple[Pair, ...], ...]:
    """Language pairs of storm churn nodes: like the stable nodes'."""
    return tuple(((a, b), (b, a)) for a, b in LANGUAGE_PAIRS)


def session_pairs(count: int, *, seed: int) -> list[Pair]:
    """Each session speaks one directed pair, spread evenly over the ten."""
    rng = random.Random(seed)
    directed = [p for a, b in LANGUAGE_PAIRS for p in ((a, b), (b, a))]
    return [rng.choice(directed) for _ in range(count)]


def split(specs: list[GenSpec], generators: int) -> list[GenSpec]:
    """One spec per generator process, nodes and sessions dealt round robin."""
    if len(specs) != 1:
        raise ValueError("split takes one whole-run spec")
    whole = specs[0]
    return [
        replace(
            whole,
            index=i,
            nodes=whole.nodes[i::generators],
            session_pairs=whole.session_pairs[i::generators],
            storm=_share(whole.storm, generators),
        )
        for i in range(generators)
    ]


def split_roles(whole: GenSpec) -> list[GenSpec]:
    """Two processes: every node (and the storm) in one, every session in the other, as nodes
    and clients are different machines in a deployment.  The outside latency is still one
    clock: the session stamps its send time into the utterance and the node reads it off the
    ``job_assign`` (``perf_counter`` is the system's monotonic clock, shared by processes)."""
    quiet = replace(whole.storm, hz_calm=0.0, hz_storm=0.0, churn_per_s=0.0, flips_per_s=0.0)
    return [
        replace(whole, index=0, session_pairs=(), role="nodes"),
        replace(whole, index=1, nodes=(), storm=quiet, churn_profiles=(), role="sessions"),
    ]


def _share(storm: StormSpec, generators: int) -> StormSpec:
    return replace(
        storm,
        churn_per_s=storm.churn_per_s / generators,
        flips_per_s=storm.flips_per_s / generators,
    )


def e1_spec(config: BenchConfig, host: str, port: int, *, sessions: int) -> list[GenSpec]:
    whole = GenSpec(
        host=host,
        port=port,
        index=0,
        nodes=tuple(topology(config.nodes, max_concurrency=config.e1_max_concurrency)),
        session_pairs=tuple(session_pairs(sessions, seed=config.seed)),
        plan="closed",
        latency_median=config.e1_latency[0],
        latency_p99=config.e1_latency[1],
        seed=config.seed,
        audio_bytes=config.audio_bytes,
        utterances=config.e1_utterances,
        window=config.e1_window,
        duration=config.e1_duration,
        storm=replace(config.storm, churn_per_s=0, flips_per_s=0),
        churn_profiles=churn_profiles(),
    )
    return split([whole], config.generators)


def e2_spec(config: BenchConfig, host: str, port: int) -> list[GenSpec]:
    whole = GenSpec(
        host=host,
        port=port,
        index=0,
        nodes=tuple(topology(config.nodes, max_concurrency=config.e2_max_concurrency)),
        session_pairs=tuple(session_pairs(config.e2_sessions, seed=config.seed)),
        plan="open",
        latency_median=config.e2_latency[0],
        latency_p99=config.e2_latency[1],
        seed=config.seed,
        audio_bytes=config.audio_bytes,
        rate=config.e2_rate,
        phases=config.phases,
        storm=config.storm,
        churn_profiles=churn_profiles(),
    )
    return split([whole], config.generators)


def hot_spec(config: BenchConfig, host: str, port: int) -> list[GenSpec]:
    """E0 at a speaking pace: E2's sessions, nodes and storm; answers at once (latency 0,
    which ``FakeNode`` sends from the ``job_assign`` handler itself, as Lingua's Electron node
    does: a ``job_result`` and no ``job_ack``/``job_started`` before it)."""
    whole = GenSpec(
        host=host,
        port=port,
        index=0,
        nodes=tuple(topology(config.nodes, max_concurrency=config.hot_max_concurrency)),
        session_pairs=tuple(session_pairs(config.hot_sessions, seed=config.seed)),
        plan="open",
        latency_median=0.0,
        latency_p99=0.0,
        seed=config.seed,
        audio_bytes=config.audio_bytes,
        rate=config.hot_rate,
        phases=config.hot_phases,
        storm=config.storm,
        churn_profiles=churn_profiles(),
    )
    if config.hot_split_roles:
        return split_roles(whole)
    return split([whole], config.generators)


def closed_loop(
    config: BenchConfig,
    host: str,
    port: int,
    *,
    sessions: int,
    max_concurrency: int,
    duration: float,
) -> GenSpec:
    """A closed loop over the instant nodes, calm heartbeats: E0's throughput phase, E5's
    capacity run."""
    return GenSpec(
        host=host,
        port=port,
        index=0,
        nodes=tuple(topology(config.nodes, max_concurrency=max_concurrency)),
        session_pairs=tuple(session_pairs(sessions, seed=config.seed)),
        plan="closed",
        latency_median=0.0,
        latency_p99=0.0,
        seed=config.seed,
        audio_bytes=config.audio_bytes,
        utterances=1_000_000,  # bounded by the duration, not by a count
        window=config.hot_max_window,
        duration=duration,
        storm=replace(config.storm, churn_per_s=0, flips_per_s=0),
        churn_profiles=churn_profiles(),
    )


def hot_max_spec(config: BenchConfig, host: str, port: int) -> list[GenSpec]:
    """E0's throughput phase."""
    whole = closed_loop(
        config,
        host,
        port,
        sessions=config.hot_max_sessions,
        max_concurrency=config.hot_max_concurrency,
        duration=config.hot_max_duration,
    )
    if config.hot_split_roles:
        return split_roles(whole)
    return split([whole], config.generators)


def rss_spec(config: BenchConfig, host: str, port: int) -> list[GenSpec]:
    whole = GenSpec(
        host=host,
        port=port,
        index=0,
        nodes=(),
        session_pairs=tuple(session_pairs(config.rss_sessions, seed=config.seed)),
        plan="idle",
        seed=config.seed,
        storm=replace(config.storm, hz_calm=0, churn_per_s=0, flips_per_s=0),
        connect_concurrency=200,
    )
    return split([whole], config.generators)
