"""Property tests of the sans-I/O dispatch core, driven with no event loop (issue 9 item 1).

A small synchronous driver performs the core's actions against the real in-process store and
simulated nodes and sessions; time is a number advanced to the next timer.  Hypothesis picks
random interleavings of utterances, results (good and failed), timeouts, node loss and return,
store outages, send failures and session closes, and then lets everything settle.  Checked:
exactly one answer per accepted utterance, in order (unless its session closed first); never
more jobs on a node than its slots; no slot left reserved; nothing left in flight.  The same
holds with sessions of several tenants (weights) and priority classes in the waiting line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.dispatch.actions import (
    Action,
    Assign,
    Cancel,
    Push,
    Release,
    Reserve,
    ReserveMany,
    StartTimer,
    StopTimer,
)
from switchboard.dispatch.core import DispatchCore, DispatchSettings
from switchboard.dispatch.jobs import Session, Timer
from switchboard.dispatch.overload import OverloadBounds
from switchboard.dispatch.selection import ALL_SERVICES
from switchboard.dispatch.tenants import TenantSpec
from switchboard.management.builder import build_snapshot
from switchboard.management.pools import GeneratedPoolIds
from switchboard.metrics import Metrics
from switchboard.protocol import codec
from switchboard.protocol.messages import JobResult, Utterance
from switchboard.protocol.profile import SessionProfile
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.runtime.values import NodeRuntime, NodeStatus
from switchboard.sessions.manager import SessionManager
from switchboard.store.memory import MemoryStore

PAIR = ("zh", "en")
NO_SHEDDING = OverloadBounds(loop_lag=0, store_backlog=0, queue_age=0)
PENDING_TIMEOUT = 3.0


@dataclass(eq=False)
class SimNode:
    node_id: str
    capacity: int
    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # job_id → assign
    broken: bool = False  # the next job_assign write fails
    closing: bool = False  # every write fails, and the server has not noticed the close yet

    def write(self, frame: bytes) -> bool:  # NodePeer's shape; the sim performs Assign itself
        raise AssertionError("the sim writes in Sim._assign")


@dataclass(eq=False)
class SimSession:
    session_id: str
    out: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    accepted: list[int] = field(default_factory=list)
    session: Session | None = None
    accepted_at: dict[int, float] = field(default_factory=dict)  # index → the sim's time
    pushed_at: list[float] = field(default_factory=list)  # the sim's time of each frame in out
    clock: Callable[[], float] = float

    def push(self, frame: bytes) -> None:
        assert not self.closed, "a frame was pushed to a session after it closed"
        self.out.append(json.loads(frame))
        self.pushed_at.append(self.clock())


class Sim:
    """The core plus a synchronous driver: every action is performed at once."""

    def __init__(
        self,
        capacities: list[int],
        *,
        max_attempts: int = 3,
        streaming_asr: bool = True,
        tenants: tuple[TenantSpec, ...] = (),
        priority_aging: float = 1.0,
        overload: OverloadBounds = NO_SHEDDING,
    ) -> None:
        self.now = 0.0
        self.store = MemoryStore(clock=lambda: self.now)
        self.store_down = False
        self.holder = SnapshotHolder()
        self.ids = GeneratedPoolIds()
        self.nodes = {f"n{i}": SimNode(f"n{i}", c) for i, c in enumerate(capacities)}
        self.live: set[str] = set()
        self.version = 0
        self.metrics = Metrics()
        self.core = DispatchCore(
            self.holder,
            SessionManager(),
            settings=DispatchSettings(
                job_timeout=5.0,
                pending_timeout=PENDING_TIMEOUT,
                max_attempts=max_attempts,
                reservation_lease=1000.0,
                max_pending_per_session=6,
                streaming_asr=streaming_asr,
                tenants=tenants,
                priority_aging=priority_aging,
                overload=overload,
            ),
            metrics=self.metrics,
        )
        self.timers: dict[Timer, float] = {}
        self.violations: list[str] = []
        self.sessions: list[SimSession] = []
        self.spells: list[list[float]] = []  # [start, end] of store-backlog spells (end: inf)
        self.held_rounds: list[ReserveMany] | None = None  # a list: wake rounds are held here
        self._queue: list[Action] | None = None
        for node_id in self.nodes:
            self.node_up(node_id)

    # --- the world ----------------------------------------------------------------------------

    def _publish(self) -> None:
        self.version += 1
        views = [
            NodeRuntime(
                node_id=n,
                status=NodeStatus.READY,
                pairs=frozenset({PAIR}),
                services=ALL_SERVICES,
                accept_public_jobs=True,
                max_concurrency=self.nodes[n].capacity,
            )
            for n in sorted(self.live)
        ]
        self.holder.publish(
            build_snapshot(self.version, views, configured=None, generated_ids=self.ids)
        )
        self.perform(self.core.wake(now=self.now))

    def node_up(self, node_id: str) -> None:
        if node_id in self.live:
            return
        self.live.add(node_id)
        self.core.node_attached(self.nodes[node_id])
        self._publish()

    def node_down(self, node_id: str) -> None:
        if node_id not in self.live:
            return
        self.live.discard(node_id)
        self.nodes[node_id].running.clear()  # its socket is gone, and its jobs with it
        self.perform(self.core.node_gone(node_id, now=self.now))
        self._publish()

    def open(
        self, session_id: str, *, tenant: str | None = None, priority: int | None = None
    ) -> SimSession:
        sim = SimSession(session_id, clock=lambda: self.now)
        profile = SessionProfile(
            trace_id="t", src_lang="", tgt_lang="", tenant_id=tenant, priority=priority
        )
        sim.session = self.core.open_session(session_id, sim, profile)
        return sim

    def utter(self, sim: SimSession, index: int) -> None:
        frame = json.dumps(
            {
                "type": "utterance",
                "session_id": sim.session_id,
                "utterance_index": index,
                "src_lang": PAIR[0],
                "tgt_lang": PAIR[1],
                "audio": "",
                "audio_format": "pcm16",
                "sample_rate": 16000,
            }
        ).encode()
        msg = codec.decode_session(frame)
        assert isinstance(msg, Utterance) and sim.session is not None
        refused = sum(map(_refused, sim.out))
        self.perform(self.core.accept(sim.session, msg, frame, received_at=0.0, now=self.now))
        if sum(map(_refused, sim.out)) == refused:
            sim.accepted.append(index)
            sim.accepted_at[index] = self.now

    def answer(self, node: SimNode, job_id: str, *, success: bool) -> None:
        assign = node.running.pop(job_id)
        result: dict[str, Any] = {
            "type": "job_result",
            "job_id": job_id,
            "attempt_id": assign["attempt_id"],
            "node_id": node.node_id,
            "session_id": assign["session_id"],
            "utterance_index": assign["utterance_index"],
            "success": success,
            "trace_id": assign["trace_id"],
        }
        if success:
            result["text_translated"] = "ok"  # an all-empty one is missing_result (§4)
        else:
            result["error"] = {"code": "MODEL_CRASHED", "message": "boom"}
        frame = json.dumps(result).encode()
        msg = codec.decode_node(frame)
        assert isinstance(msg, JobResult)
        self.perform(self.core.result(node.node_id, msg, frame, now=self.now, wall_ms=0))

    def fire_next_timer(self) -> bool:
        if not self.timers:
            return False
        timer = min(self.timers, key=self.timers.__getitem__)
        self.now = max(self.now, self.timers.pop(timer))
        self.perform(self.core.timer_fired(timer, now=self.now))
        return True

    def store_back(self) -> None:
        self.store_down = False
        for node_id, holder in list(self.core.unreleased):  # the driver's maintenance
            self.store.release_now(node_id, holder)
            self.core.unreleased.discard((node_id, holder))
        self.perform(self.core.store_recovered(now=self.now))

    # --- the driver ---------------------------------------------------------------------------

    def perform(self, actions: list[Action]) -> None:
        """As the driver does: in the order the core made them, nested calls queued behind."""
        if self._queue is not None:
            self._queue.extend(actions)
            return
        queue = self._queue = list(actions)
        try:
            while queue:
                queue.extend(self._perform_one(queue.pop(0)))
        finally:
            self._queue = None

    def _perform_one(self, action: Action) -> list[Action]:
        core, now = self.core, self.now
        match action:
            case Push():
                action.peer.push(action.frame)
            case StartTimer():
                self.timers[action.timer] = now + action.delay
            case StopTimer():
                self.timers.pop(action.timer, None)
            case Reserve():
                if self.store_down:
                    return core.reserve_failed(action)
                got = self.store.try_reserve_now(action.candidates, action.holder, lease_s=1e3)
                return core.reserved(action, got, now=now)
            case ReserveMany():
                if self.held_rounds is not None:
                    self.held_rounds.append(action)
                    return []
                if self.store_down:
                    return core.round_failed(now=now)
                requests = [(r.candidates, r.holder) for r in action.items]
                results = self.store.try_reserve_many_now(requests, lease_s=1e3)
                return core.round_reserved(results, now=now)
            case Release():
                return self._release(action)
            case Cancel():
                node = self.nodes[action.node.node_id]
                node.running.pop(json.loads(action.frame)["job_id"], None)
                return self._release(action.release)
            case Assign():
                return self._assign(action)
        return []

    def _release(self, action: Release) -> list[Action]:
        if self.store_down:
            return self.core.released(action, ok=False, now=self.now)
        self.store.release_now(action.node_id, action.holder)
        return self.core.released(action, ok=True, now=self.now)

    def _assign(self, action: Assign) -> list[Action]:
        node = self.nodes[action.node.node_id]
        if node.closing:
            return self.core.assign_failed(action.job, action.attempt, now=self.now)
        if node.broken or node.node_id not in self.live:
            # A write fails only on a broken socket: the node is gone, as the server then
            # finds (its jobs, its registration and its place in the snapshot with it).
            node.broken = False
            failed = self.core.assign_failed(action.job, action.attempt, now=self.now)
            self.node_down(node.node_id)
            return failed
        msg = json.loads(action.frame)
        node.running[msg["job_id"]] = msg
        if len(node.running) > node.capacity:
            self.violations.append(f"{node.node_id} holds {len(node.running)} > {node.capacity}")
        return []

    # --- the end ------------------------------------------------------------------------------

    def settle(self) -> None:
        """Everything comes back and finishes: the store, the nodes, every timer."""
        self.store_back()
        for node_id in sorted(self.nodes):
            self.node_up(node_id)
        for _ in range(10_000):
            busy = [n for n in self.nodes.values() if n.running]
            if busy:
                node = busy[0]
                self.answer(node, next(iter(node.running)), success=True)
            elif not self.fire_next_timer():
                return
        raise AssertionError("the simulation did not settle")


Step = Callable[[Sim, list[SimSession], st.DataObject], None]


def _utter(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    open_ = [s for s in sessions if not s.closed]
    if open_:
        s = data.draw(st.sampled_from(open_))
        sim.utter(s, len(s.accepted) + len([m for m in s.out if _refused(m)]))


def _refused(message: dict[str, Any]) -> bool:
    return message["type"] == "error" and "job_id" not in message.get("details", {})


def _index(message: dict[str, Any]) -> int:
    """The utterance an answer is for (an error names it in its details)."""
    index = message.get("utterance_index", message.get("details", {}).get("utterance_index"))
    assert isinstance(index, int)
    return index


def _answer(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    busy = [n for n in sim.nodes.values() if n.running]
    if busy:
        node = data.draw(st.sampled_from(busy))
        job_id = data.draw(st.sampled_from(sorted(node.running)))
        sim.answer(node, job_id, success=data.draw(st.booleans()))


def _timer(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    sim.fire_next_timer()


def _node_flip(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    node_id = data.draw(st.sampled_from(sorted(sim.nodes)))
    if node_id in sim.live:
        sim.node_down(node_id)
    else:
        sim.node_up(node_id)


def _store_flip(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    if sim.store_down:
        sim.store_back()
    else:
        sim.store_down = True


def _break_send(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    sim.nodes[data.draw(st.sampled_from(sorted(sim.nodes)))].broken = True


def _close(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    open_ = [s for s in sessions if not s.closed]
    if len(open_) > 1:
        s = data.draw(st.sampled_from(open_))
        assert s.session is not None
        sim.perform(sim.core.close_session(s.session))
        s.closed = True


def _backlog_flip(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    """The store's backlog (the driver's signal) jumps past its bound or drains."""
    overload = sim.core.overload
    if overload.store_owed:
        overload.store_owed = 0
        sim.spells[-1][1] = sim.now
    else:
        overload.store_owed = data.draw(st.integers(11, 100))
        sim.spells.append([sim.now, float("inf")])
    sim.core.overloaded(sim.now)  # as the driver's probe does, between arrivals


STEPS: list[tuple[int, Step]] = [
    (6, _utter),
    (5, _answer),
    (2, _timer),
    (1, _node_flip),
    (1, _store_flip),
    (1, _break_send),
    (1, _close),
]


def _utter_shed(sim: Sim, sessions: list[SimSession], data: st.DataObject) -> None:
    """As ``_utter``; with the backlog past its bound, the utterance must be refused."""
    open_ = [s for s in sessions if not s.closed]
    if not open_:
        return
    s = data.draw(st.sampled_from(open_))
    accepted = len(s.accepted)
    backlogged = sim.core.overload.store_owed > SHEDDING.store_backlog
    sim.utter(s, len(s.accepted) + len([m for m in s.out if _refused(m)]))
    if backlogged:
        assert len(s.accepted) == accepted, "accepted while the store was backlogged"
        assert s.out[-1]["code"] in ("OVERLOADED", "TOO_MANY_PENDING")  # the session's own first


SHEDDING_STEPS = [(6, _utter_shed), *STEPS[1:], (2, _backlog_flip)]
SHEDDING = OverloadBounds(loop_lag=0, store_backlog=10, queue_age=2.0, retry_after=0.1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacities=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    sessions=st.integers(1, 4),
    steps=st.integers(0, 60),
    data=st.data(),
)
def test_one_answer_each_in_order_within_capacity_and_no_slot_leaked(
    capacities: list[int], sessions: int, steps: int, data: st.DataObject
) -> None:
    """Random interleavings of every event: the core's three invariants hold."""
    sim = Sim(capacities)
    _check_invariants(sim, [sim.open(f"s{i}") for i in range(sessions)], steps, data, STEPS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacities=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    owners=st.lists(
        st.tuples(st.sampled_from([None, "a", "b", "c"]), st.sampled_from([None, -1, 0, 1])),
        min_size=1,
        max_size=5,
    ),
    aging=st.sampled_from([0.0, 0.5, 10.0]),
    steps=st.integers(0, 60),
    data=st.data(),
)
def test_the_invariants_hold_with_tenants_and_classes(
    capacities: list[int],
    owners: list[tuple[str | None, int | None]],
    aging: float,
    steps: int,
    data: st.DataObject,
) -> None:
    """Sessions of several tenants (weights 1–3, one capped in class) and priority classes,
    with or without aging: the same three invariants, and every tenant's count back to 0."""
    tenants = (TenantSpec(name="a", weight=3), TenantSpec(name="b", max_priority=0))
    sim = Sim(capacities, tenants=tenants, priority_aging=aging)
    sims = [
        sim.open(f"s{i}", tenant=tenant, priority=priority)
        for i, (tenant, priority) in enumerate(owners)
    ]
    _check_invariants(sim, sims, steps, data, STEPS)
    assert sim.core.tenants.total_held == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacities=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    sessions=st.integers(1, 4),
    steps=st.integers(0, 60),
    data=st.data(),
)
def test_shedding_keeps_the_invariants(
    capacities: list[int], sessions: int, steps: int, data: st.DataObject
) -> None:
    """The same interleavings with the store's backlog jumping past its bound and the
    waiting line ageing past its own: an utterance refused OVERLOADED is never accepted (no
    job_id, a retry hint, a reason), and every accepted one still gets its one answer in order."""
    sim = Sim(capacities, overload=SHEDDING)
    sims = [sim.open(f"s{i}") for i in range(sessions)]
    _check_invariants(sim, sims, steps, data, SHEDDING_STEPS)
    for s in sim.sessions:
        for message, pushed in zip(s.out, s.pushed_at, strict=True):
            if message["type"] != "error":
                continue
            details = message["details"]
            if message["code"] == "OVERLOADED":
                assert details["retry_after_ms"] >= 100
                assert details["reason"] in ("store_backlog", "queue_age")
            if "job_id" not in details or s.closed:
                continue
            # A timed-out wait (decided at or after its deadline, pushed at or after that):
            # blamed on the nodes only if no backlog spell overlapped it, on us only if one did.
            accepted = s.accepted_at[details["utterance_index"]]
            deadline = accepted + PENDING_TIMEOUT
            spells = sim.spells
            if message["code"] == "NO_AVAILABLE_NODE":
                assert not any(a < deadline and b > accepted for a, b in spells), message
            if message["code"] == "OVERLOADED":
                assert details["reason"] == "store_backlog"
                assert any(a <= pushed and b >= accepted for a, b in spells), message


def _check_invariants(
    sim: Sim,
    sims: list[SimSession],
    steps: int,
    data: st.DataObject,
    table: list[tuple[int, Step]],
) -> None:
    sim.sessions = sims
    weights = [w for w, _ in table]
    for _ in range(steps):
        choice = data.draw(st.integers(0, sum(weights) - 1))
        for weight, step in table:
            if choice < weight:
                step(sim, sims, data)
                break
            choice -= weight
    sim.settle()
    assert sim.violations == []
    for s in sims:
        if s.closed:
            continue
        answered = [_index(m) for m in s.out if not _refused(m)]
        assert answered == s.accepted, s.session_id  # each accepted one answered once, in order
    assert sim.core.in_flight == 0
    assert sim.core.waiting() == 0
    assert sim.store.try_reserve_many_now([], lease_s=1) == []
    live = sum(len(sim.store._live(n, sim.now)) for n in list(sim.store._leases))
    assert live == 0, "a slot is still reserved"
    assert sim.timers == {}


def test_a_wake_round_reserves_in_line_order_and_keeps_the_line() -> None:
    """Two waiting jobs, one slot freed: the older takes it; the younger keeps its place."""
    sim = Sim([1])
    s = sim.open("s")
    for index in range(3):
        sim.utter(s, index)
    node = sim.nodes["n0"]
    assert [m["utterance_index"] for m in node.running.values()] == [0]
    assert sim.core.waiting() == 2
    sim.answer(node, next(iter(node.running)), success=True)
    assert [m["utterance_index"] for m in node.running.values()] == [1]
    assert sim.core.waiting() == 1


def test_a_new_utterance_queues_behind_waiting_ones_of_its_pair() -> None:
    """FIFO per pair: with jobs waiting, a new one does not try the store first."""
    sim = Sim([1])
    s = sim.open("s")
    sim.utter(s, 0)
    sim.utter(s, 1)
    node = sim.nodes["n0"]
    sim.answer(node, next(iter(node.running)), success=True)  # 1 takes the slot
    sim.utter(s, 2)
    assert [m["utterance_index"] for m in node.running.values()] == [1]
    assert sim.core.waiting() == 1


def test_pending_timeout_while_a_round_tries_the_job_answers_it_once() -> None:
    """The deadline fires while the job's wake round is with the store: one answer."""
    sim = Sim([1])
    s = sim.open("s")
    sim.utter(s, 0)
    sim.utter(s, 1)  # waits
    assert s.session is not None
    waiting = s.session.pending[1]
    node = sim.nodes["n0"]
    sim.held_rounds = []
    sim.answer(node, next(iter(node.running)), success=True)  # frees the slot: a round
    assert len(sim.held_rounds) == 1 and sim.core.waiting() == 1
    assert waiting.deadline is not None
    sim.now = 10.0
    sim.perform(sim.core.timer_fired(waiting.deadline, now=sim.now))
    assert [m["type"] for m in s.out] == ["translation_result"]  # the round decides
    sim.perform(sim.core.round_reserved([None], now=sim.now))
    assert [m["type"] for m in s.out] == ["translation_result", "error"]
    assert s.out[1]["code"] == "NO_AVAILABLE_NODE"
    assert sim.core.in_flight == 0 and sim.core.waiting() == 0


def test_a_failed_write_takes_the_node_out_of_dispatch_at_once() -> None:
    """Two nodes whose sockets are closing (not yet noticed) and a third one busy: the job
    waits for the third instead of spending its attempts on the closing ones again."""
    sim = Sim([1, 1, 1])
    s = sim.open("s")
    sim.node_down("n0")
    sim.node_down("n1")
    sim.utter(s, 0)  # takes n2
    for node_id in ("n0", "n1"):
        sim.nodes[node_id].closing = True
        sim.node_up(node_id)
    sim.utter(s, 1)  # n0 and n1 fail their writes; n2 is full: it waits
    assert [m["type"] for m in s.out] == []
    assert sim.core.waiting() == 1
    n2 = sim.nodes["n2"]
    sim.answer(n2, next(iter(n2.running)), success=True)
    assert [m["utterance_index"] for m in n2.running.values()] == [1]
    sim.answer(n2, next(iter(n2.running)), success=True)
    assert [(m["type"], m["utterance_index"]) for m in s.out] == [
        ("translation_result", 0),
        ("translation_result", 1),
    ]


def _running_sessions(node: SimNode) -> list[str]:
    return [m["session_id"] for m in node.running.values()]


def _serve_all(sim: Sim, node: SimNode) -> list[str]:
    """Answer the node's one running job until nothing waits; the sessions in assign order."""
    order = []
    while node.running:
        order += _running_sessions(node)
        sim.answer(node, next(iter(node.running)), success=True)
    return order


def test_a_flooding_tenant_does_not_starve_a_small_one() -> None:
    """One slot; tenant big queues six utterances (its session's most), then tenant small two:
    small's are served alternately with big's, not after the flood."""
    sim = Sim([1])
    big, small = sim.open("big", tenant="big"), sim.open("small", tenant="small")
    for index in range(6):
        sim.utter(big, index)
    for index in range(2):
        sim.utter(small, index)
    order = _serve_all(sim, sim.nodes["n0"])
    assert order[:5] == ["big", "big", "small", "big", "small"]
    assert order[5:] == ["big"] * 3


def test_a_higher_class_goes_first_when_slots_are_scarce() -> None:
    sim = Sim([1], priority_aging=0.0)
    low, high = sim.open("low", priority=-1), sim.open("high", priority=1)
    for index in range(4):
        sim.utter(low, index)
    for index in range(2):
        sim.utter(high, index)
    assert _serve_all(sim, sim.nodes["n0"]) == ["low", "high", "high", "low", "low", "low"]


def test_closing_a_session_twice_leaves_its_tenant_once() -> None:
    """The server may close a session twice (session_close, then the socket): its tenant
    counts it once, and an unknown tenant with no session and no job left is forgotten."""
    sim = Sim([1])
    first, second = sim.open("one", tenant="x"), sim.open("two", tenant="x")
    tenant = sim.core.tenants.get("x")
    assert tenant is not None and tenant.sessions == 2
    for _ in range(2):
        assert first.session is not None
        sim.perform(sim.core.close_session(first.session))
    assert tenant.sessions == 1
    assert second.session is not None
    sim.perform(sim.core.close_session(second.session))
    assert sim.core.tenants.get("x") is None


def test_a_store_found_down_refuses_the_waiting_line_and_new_waiters_at_once() -> None:
    """Contract §3 (refuse within 2 s): a job waiting for a slot this instance's own jobs
    hold would otherwise wait its whole pending timeout while no slot can be reserved."""
    sim = Sim([1])
    s = sim.open("s")
    other = sim.open("t")  # its own session: answers are in order per session
    sim.utter(s, 0)  # takes the one slot
    sim.utter(other, 0)  # waits
    assert sim.core.waiting() == 1
    sim.perform(sim.core.store_lost())
    assert [(m["type"], m.get("code")) for m in other.out] == [
        ("error", "SCHEDULER_DEPENDENCY_DOWN")
    ]
    sim.utter(other, 1)  # would wait: refused at once while the store is down
    assert [m.get("code") for m in other.out] == ["SCHEDULER_DEPENDENCY_DOWN"] * 2
    assert sim.core.waiting() == 0
    node = sim.nodes["n0"]
    sim.answer(node, next(iter(node.running)), success=True)  # the running job finishes
    assert [m["type"] for m in s.out] == ["translation_result"]
    sim.perform(sim.core.store_recovered(now=sim.now))
    sim.utter(other, 2)  # placed again
    assert [m["utterance_index"] for m in node.running.values()] == [2]
    sim.answer(node, next(iter(node.running)), success=True)
    assert other.out[-1]["type"] == "translation_result"
