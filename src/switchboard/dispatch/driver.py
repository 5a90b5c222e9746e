"""``DispatchDriver``: performs the dispatch core's actions with asyncio (``core.py``).

The core decides; this module does the I/O it asks for and reports the outcomes back as
events: store calls, writes to nodes, pushes to sessions, timers on the loop's clock.  It holds
no dispatch state of its own beyond loop handles and counters.

The in-process store's calls are plain function calls (``InlineStore``), performed inline, so
an embedded placement runs from the session's frame to ``job_assign`` without a task switch.
Redis calls run in a task each; their outcome is fed back to the core, and the actions that
follow are performed in that task.  Actions are performed in the order the core made them
(the actions an inline store call's outcome leads to go after those already queued).  Nothing
here awaits: writes to nodes go into the socket's buffer at once (``NodePeer.write``), so the
driver is a plain function of the core's actions and a session's frame is handled from read to
``job_assign`` written without a task switch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Sequence

from switchboard.dispatch import steps
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
from switchboard.dispatch.core import DispatchCore
from switchboard.dispatch.jobs import NodePeer, Session, SessionPeer, Timer
from switchboard.errors import StoreError, StoreUnavailable
from switchboard.metrics import Metrics
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.cuts import Cut
from switchboard.protocol.messages import AsrPartial, JobAck, JobResult, JobStarted, Utterance
from switchboard.protocol.profile import SessionProfile
from switchboard.runtime.snapshot import RuntimeSnapshot, SnapshotHolder
from switchboard.store.base import Claim, InlineStore, ReservationStore, awaited

log = logging.getLogger("switchboard.dispatch")
_PROBE_S = 0.5  # the store's health probe: an outage is noticed within this and a timeout
_STOP_WAIT_S = 2.0  # how long stop() waits for the maintenance loop to end
_UNKNOWN = 1 << 30  # the capacity of a node gone from the view: never counted as full
# How often the loop-lag probe runs (overload.py): cheap enough to be always on (200 timer
# callbacks a second, ~0.1 % of a core when idle), and often enough that the admitted share
# follows the loop within milliseconds: at 25 ms it swung too slowly to hold a queue down.
PROBE_INTERVAL = 0.005


class DispatchDriver:
    def __init__(
        self,
        core: DispatchCore,
        store: ReservationStore,
        *,
        snapshots: SnapshotHolder,
        metrics: Metrics,
        reservation_lease: float,
    ) -> None:
        self.core = core
        self._store = store
        self._inline: InlineStore | None = store if isinstance(store, InlineStore) else None
        self._stats = metrics.dispatch  # plain attributes: the per-job metric updates
        self._steps = steps.enabled()  # read once: at the default level a step costs a branch
        self._lease = reservation_lease
        self._maintenance: asyncio.Task[None] | None = None
        self._stopping = False
        self.idle = asyncio.Event()  # set while no accepted utterance is unanswered
        self.idle.set()
        self.dispatched_total = 0
        self._queue: deque[Action] | None = None  # what run() is performing, while it is
        self._wake_soon = False  # a wake for a new snapshot is scheduled
        self._snapshots = snapshots
        self.leases_recreated_total = 0  # leases of running jobs the store had lost
        self._reasserting = False  # a re-assert ahead of reservations awaits its answer
        # Saturation's signals (overload.py): a loop-lag probe and the store calls owed.
        self._overload = core.overload
        self._probe: asyncio.TimerHandle | None = None
        snapshots.subscribe(self._on_snapshot)

    # --- what the rest of the server reads ----------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self.core.in_flight

    @property
    def failed_total(self) -> int:
        return self.core.failed_total

    @property
    def store_up(self) -> bool:
        return self.core.store_up

    @store_up.setter
    def store_up(self, up: bool) -> None:
        if up:
            self.core.store_up = True
        else:
            self.core.store_failed()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._store.reassert_on_connect(self._claims, lease_s=self._lease, lost=self._lost)
        self._maintenance = asyncio.create_task(self._maintain(), name="dispatch-maintenance")
        if self._overload.bounds.enabled:
            self._schedule_probe()

    def _schedule_probe(self) -> None:
        self._overload.probe_started(time.monotonic() + PROBE_INTERVAL)
        self._probe = asyncio.get_running_loop().call_later(PROBE_INTERVAL, self._probed)

    def _probed(self) -> None:
        now = time.monotonic()
        self._overload.probe_fired(now)
        # A verdict every probe as well as at every utterance: a spell of backlog between two
        # arrivals is still seen, and a wait through it is not blamed on the nodes.
        self._overload.overloaded(now)
        self._schedule_probe()

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        self._stopping = True
        if self._maintenance is not None:
            # Cancelled, stopped by the flag too, and waited for a bounded time: on Python 3.11
            # a cancellation that lands as a store call's timeout expires comes out as that
            # timeout's error, which the store's ping turns into "down" and the loop outlives.
            self._maintenance.cancel()
            await asyncio.wait([self._maintenance], timeout=_STOP_WAIT_S)

    def close_intake(self) -> None:
        self.run(self.core.close_intake())

    # --- events in ----------------------------------------------------------------------------

    def open_session(
        self, session_id: str, peer: SessionPeer, profile: SessionProfile | None = None
    ) -> Session:
        return self.core.open_session(session_id, peer, profile)

    def close_session(self, session: Session) -> None:
        self.run(self.core.close_session(session))

    def fail_session(self, session: Session, code: ErrorCode, message: str) -> None:
        self.run(self.core.fail_session(session, code, message))

    async def accept(self, session: Session, msg: Utterance, frame: bytes, received: float) -> None:
        """An utterance (a coroutine only so that a subclass may wait around it: the old
        design's model takes its global lock here)."""
        self.run(self.core.accept(session, msg, frame, received_at=received, now=time.monotonic()))

    def admit_streamed(
        self,
        session: Session,
        audio: str,
        *,
        audio_format: str,
        sample_rate: int,
        cut: Cut,
        received: float,
    ) -> None:
        """A streamed utterance's job (``DispatchCore.admit_streamed``), performed now."""
        self.run(
            self.core.admit_streamed(
                session,
                audio,
                audio_format=audio_format,
                sample_rate=sample_rate,
                cut=cut,
                received_at=received,
                now=time.monotonic(),
            )
        )

    def result(self, node_id: str, msg: JobResult, frame: bytes) -> None:
        wall_ms = int(time.time() * 1000)
        self.run(self.core.result(node_id, msg, frame, now=time.monotonic(), wall_ms=wall_ms))

    def play_ended(self, session: Session, group_id: str, ts_end_ms: int) -> bool:
        return self.core.play_ended(session, group_id, ts_end_ms)

    def ack(self, node_id: str, msg: JobAck | JobStarted) -> bool:
        return self.core.ack(node_id, msg)

    def partial(self, node_id: str, msg: AsrPartial, frame: bytes) -> None:
        self.run(self.core.partial(node_id, msg, frame))

    def attach_node(self, node: NodePeer) -> None:
        self.core.node_attached(node)

    def detach_node(self, node_id: str) -> None:
        self.run(self.core.node_gone(node_id, now=time.monotonic()))

    def _on_snapshot(self, _snapshot: RuntimeSnapshot) -> None:
        # Once per loop iteration at most: snapshots can come in bursts (the old design's
        # model publishes one per heartbeat), and a wake round walks the waiting line.
        if not self._wake_soon:
            self._wake_soon = True
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_soon = False
        self.run(self.core.wake(now=time.monotonic()))

    def wake_waiting(self) -> None:
        """Try the waiting line again, if anything waits: in a cluster a slot freed by another
        instance wakes nothing here (cluster/member.py calls this periodically)."""
        if self.core.waiting():
            self._wake()

    def _timer_fired(self, timer: Timer) -> None:
        self.run(self.core.timer_fired(timer, now=time.monotonic()))

    # --- performing actions -------------------------------------------------------------------

    def run(self, actions: list[Action]) -> None:
        """Perform ``actions``, and whatever their outcomes lead to, now.  Nothing here
        waits: store calls that take a round trip continue when the store answers.

        Called again from inside (a push that ends a slow session, a store that answers at
        once), it queues behind what is being performed instead of going first: actions are
        performed in the order the core made them."""
        if self._queue is not None:
            self._queue.extend(actions)
            return
        queue = self._queue = deque(actions)
        try:
            self._perform(queue)
        finally:
            self._queue = None
        self._check_idle()

    def _perform(self, queue: deque[Action]) -> None:
        while queue:
            action = queue.popleft()
            match action:
                case Push():
                    action.peer.push(action.frame)
                case StartTimer():
                    loop = asyncio.get_running_loop()
                    timer = action.timer
                    timer.handle = loop.call_later(action.delay, self._timer_fired, timer)
                case StopTimer():
                    # Cancelled, not only forgotten: a live handle keeps its job (frames and
                    # all) until it fires, --job-timeout later.  uvloop's TimerHandle is not
                    # asyncio's class: test for the handle, not its type.
                    timer = action.timer
                    if timer.handle is not None:
                        timer.handle.cancel()
                        timer.handle = None
                case Assign():
                    self._assign(action, queue)
                case Reserve():
                    self._reserve(action, queue)
                case Release():
                    self._release(action, queue)
                case Cancel():
                    # Written before the release: the frame is in the node's socket buffer
                    # ahead of any job_assign the freed slot may lead to.
                    action.node.write(action.frame)
                    self._release(action.release, queue)
                case ReserveMany():
                    self._reserve_round(action, queue)

    def _assign(self, action: Assign, queue: deque[Action]) -> None:
        sent = action.node.write(action.frame)
        if action.attempt == 1:
            self._stats.dispatch_latency.observe(time.perf_counter() - action.job.received_at)
            self.dispatched_total += 1
        if self._steps:
            steps.step(action.job, "assigned" if sent else "assign failed")
        if not sent:  # the node's socket broke; detach_node may not have run yet
            now = time.monotonic()
            self._follow(queue, self.core.assign_failed(action.job, action.attempt, now=now))

    @staticmethod
    def _follow(queue: deque[Action], actions: list[Action]) -> None:
        """An inline outcome's actions go after those already queued: actions are performed
        in the order the core made them, which is what keeps a session's answers in order
        (an answer queued before the outcome was made must not be overtaken by one after)."""
        queue.extend(actions)

    def _reserve(self, action: Reserve, queue: deque[Action]) -> None:
        if self._inline is None:
            if not self.core.store_up:
                self._reassert_first()
            self._overload.store_owed += 1
            self._store.reserve_soon(
                [(action.candidates, action.holder)],
                lease_s=self._lease,
                done=functools.partial(self._reserved, action),
            )
            return
        node_id = self._inline.try_reserve_now(
            action.candidates, action.holder, lease_s=self._lease
        )
        self._follow(queue, self.core.reserved(action, node_id, now=time.monotonic()))

    def _reserve_round(self, action: ReserveMany, queue: deque[Action]) -> None:
        requests = [(r.candidates, r.holder) for r in action.items]
        if self._inline is None:
            if not self.core.store_up:
                self._reassert_first()
            self._overload.store_owed += len(requests)
            done = functools.partial(self._round_reserved, len(requests))
            self._store.reserve_soon(requests, lease_s=self._lease, done=done)
            return
        results = self._inline.try_reserve_many_now(requests, lease_s=self._lease)
        self._follow(queue, self.core.round_reserved(results, now=time.monotonic()))

    def _release(self, action: Release, queue: deque[Action]) -> None:
        if self._inline is None:
            self._overload.store_owed += 1
            self._store.release_soon(
                [(action.node_id, action.holder)], done=functools.partial(self._released, action)
            )
            return
        self._inline.release_now(action.node_id, action.holder)
        self._follow(queue, self.core.released(action, ok=True, now=time.monotonic()))

    # --- a store with round trips answers (callbacks from the loop) -----------------------------

    def _reserved(
        self, action: Reserve, results: Sequence[str | None] | None, error: BaseException | None
    ) -> None:
        self._overload.store_owed -= 1
        if error is None and results is not None:
            actions = self.core.reserved(action, results[0], now=time.monotonic())
        elif isinstance(error, StoreUnavailable):
            actions = self.core.reserve_failed(action)
        else:  # a bug or a store error must cost one answer, not the utterance
            log.error("reserving for job %s failed: %r", action.job.job_id, error)
            actions = self.core.reserve_failed(action, unreachable=False)
        self.run(actions)

    def _round_reserved(
        self, count: int, results: Sequence[str | None] | None, error: BaseException | None
    ) -> None:
        self._overload.store_owed -= count
        now = time.monotonic()
        if error is None and results is not None:
            actions = self.core.round_reserved(list(results), now=now)
        elif isinstance(error, StoreUnavailable):
            actions = self.core.round_failed(now=now)
        else:
            log.error("a wake round's reservations failed: %r", error)
            actions = self.core.round_failed(now=now, unreachable=False)
        self.run(actions)

    def _released(
        self, action: Release, _results: Sequence[bool] | None, error: BaseException | None
    ) -> None:
        # Unreachable: the lease expires anyway, and the core retries it sooner.
        self._overload.store_owed -= 1
        self.run(self.core.released(action, ok=error is None, now=time.monotonic()))

    def _check_idle(self) -> None:
        if self.core.in_flight:
            self.idle.clear()
        else:
            self.idle.set()

    # --- leases and the store's health ------------------------------------------------------------

    async def _maintain(self) -> None:
        """Probe the store twice a second, so an outage is noticed (and jobs waiting for a
        slot are refused, ``store_lost``) within 2 s even while idle; renew live jobs' leases
        every third of a lease, re-creating any the store lost; retry refused releases.  When
        the store is back after an outage the leases are re-asserted before the waiting line
        is woken: they may have expired meanwhile, and the jobs still run on their nodes."""
        tick = min(self._lease / 3, _PROBE_S)
        renew_every = self._lease / 3
        last_renewal = time.monotonic()
        core = self.core
        while not self._stopping:
            await asyncio.sleep(tick)
            if not await self._store.ping():
                self.run(core.store_lost())
                continue
            try:
                if not core.store_up:
                    last_renewal = time.monotonic()
                    await self.reassert_leases()
                    self.run(core.store_recovered(now=time.monotonic()))
                if time.monotonic() - last_renewal >= renew_every:
                    last_renewal = time.monotonic()
                    await self.reassert_leases()
                for node_id, holder in list(core.unreleased):
                    await self._store.release(node_id, holder)
                    core.unreleased.discard((node_id, holder))
            except StoreUnavailable:
                core.store_failed()

    async def reassert_leases(self) -> None:
        """Make the store hold the lease of every running job: renewed if live, created again
        if lost (Redis restarted without persistence, or the leases expired while this
        instance could not reach it).  Sent in order with reservations and releases (the Redis
        store's hot-path connection), so a reservation made after it counts these jobs, and a
        job that ends after it drops its lease.  Raises ``StoreUnavailable``."""
        claims = self._claims()
        if not claims:
            return
        try:
            counts = await awaited(self._store.reassert_soon, claims, lease_s=self._lease)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            log.error("re-asserting leases failed: %r", exc)
            return
        if len(counts) == 3 and counts[1]:
            self._lost(int(counts[1]), int(counts[2]))

    def _reassert_first(self) -> None:
        """Ahead of a reservation made while the store is (or was, as far as we know) down:
        the running jobs' leases may have expired meanwhile, and the reservation must count
        them.  Sent first on the same connection, so Redis runs it first (``reassert_leases``).
        One at a time: a reservation behind one still unanswered is behind it on the wire too
        (and a new connection re-asserts by itself), so an outage costs one per round trip,
        not one per reservation."""
        if self._reasserting:  # one is on its way, ahead of this reservation
            return
        claims = self._claims()
        if claims:
            self._reasserting = True
            self._store.reassert_soon(claims, lease_s=self._lease, done=self._reasserted)

    def _reasserted(self, counts: Sequence[int] | None, error: BaseException | None) -> None:
        self._reasserting = False
        if error is None and counts is not None and len(counts) == 3 and counts[1]:
            self._lost(int(counts[1]), int(counts[2]))

    def _claims(self) -> list[Claim]:
        nodes = self._snapshots.current.nodes
        claims = []
        for node_id, holder in self.core.leases():
            node = nodes.get(node_id)
            # A node gone from the view: its jobs fail over soon; its lease still counts.
            claims.append((node_id, holder, _UNKNOWN if node is None else node.max_concurrency))
        return claims

    def _lost(self, recreated: int, over: int) -> None:
        """The store had lost ``recreated`` leases of running jobs, now held again.  The ones
        on a node already full (``over``: another instance took the slot while the lease was
        gone) are held over its capacity: the node runs those jobs, so every reservation must
        count them until they end (docs/scale-out.md, "Leases lost by Redis")."""
        self.leases_recreated_total += recreated
        log.warning(
            "re-created %d lease(s) of running jobs that the store had lost (%d on a full node)",
            recreated,
            over,
        )
