"""The dispatcher: every accepted utterance from acceptance to its one answer (seed §6).

One placement attempt, in the seed's order:

1. read the snapshot (no lock);
2–5. take the session's lock, decide pair and preferred pool, release it;
6–8. language index → pool members → filter by the snapshot (``selection.candidates``);
9. ``try_reserve`` in the store (the final word on capacity);
then ``job_assign`` to the node.

No candidate or no free slot: the job waits in a FIFO (per competing pair and services), woken
when one of our reservations is released or a new snapshot is published, never by polling,
until ``pending_timeout``.  Timeouts, failed sends and departed nodes fail the attempt over to
the next one (contract §2 "Failures").  Answers go through the session's ``AnswerLine`` so that
they leave in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from switchboard.dispatch import selection
from switchboard.dispatch.jobs import Job, JobState, NodeLink, SessionLink
from switchboard.errors import StoreUnavailable
from switchboard.metrics import Metrics
from switchboard.protocol import codec
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.messages import AsrPartial, JobAck, JobResult, JobStarted
from switchboard.runtime.snapshot import RuntimeSnapshot, SnapshotHolder
from switchboard.sessions.manager import SessionManager
from switchboard.store.base import ReservationStore

log = logging.getLogger("switchboard.dispatch")
_OUR_CODES = frozenset(c.value for c in ErrorCode)
# Waiting jobs tried together per wake-up on a store with round trips (one batch's worth).
_WAKE_BATCH = 64


def _by_seq(job: Job) -> int:
    return job.seq


def drive_sync(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (a ``synchronous`` store's call) to its end, now."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("a synchronous store call suspended")


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    job_timeout: float
    pending_timeout: float
    max_attempts: int
    reservation_lease: float


class Placed(enum.Enum):
    ASSIGNED = "assigned"
    NO_SLOT = "no_slot"
    FINISHED = "finished"  # answered (e.g. store down) or dropped meanwhile


class Dispatcher:
    def __init__(
        self,
        holder: SnapshotHolder,
        sessions: SessionManager,
        store: ReservationStore,
        *,
        settings: DispatchSettings,
        metrics: Metrics,
    ) -> None:
        self._holder = holder
        self._sessions = sessions
        self._store = store
        self._cfg = settings
        self._metrics = metrics
        self._nodes: dict[str, NodeLink] = {}
        self._node_jobs: dict[str, dict[str, Job]] = {}
        self._load: Counter[str] = Counter()  # this scheduler's jobs per node
        self._waiting: dict[Job, None] = {}  # insertion-ordered set: the FIFO
        self._waiting_keys: Counter[tuple[str, str, frozenset[str]]] = Counter()
        self._wake_again = False
        self._waker: asyncio.Task[None] | None = None
        self._unreleased: set[tuple[str, str]] = set()  # releases the store refused; retried
        self._tasks: set[asyncio.Task[Any]] = set()
        self.idle = asyncio.Event()  # set while no accepted utterance is unanswered
        self.idle.set()
        self._maintenance: asyncio.Task[None] | None = None
        self._rotation = itertools.count()
        self._accepted = itertools.count()
        self.in_flight = 0
        self.dispatched_total = 0
        self.failed_total = 0
        self.store_up = True
        self._closing = False
        holder.subscribe(self._on_snapshot)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._maintenance = asyncio.create_task(self._maintain(), name="dispatch-maintenance")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close_intake(self) -> None:
        """Shutdown: jobs waiting for a slot are answered ``SESSION_CLOSED`` now (and so are
        any that would start waiting), so the grace period goes to jobs that are running."""
        self._closing = True
        for job in list(self._waiting):
            self._finish_error(job, ErrorCode.SESSION_CLOSED, "the scheduler is shutting down")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- nodes ------------------------------------------------------------------------------

    def attach_node(self, link: NodeLink) -> None:
        self._nodes[link.node_id] = link
        self._node_jobs.setdefault(link.node_id, {})

    def detach_node(self, node_id: str) -> None:
        """The node is gone: its jobs are retried at once (contract §2 "Failures")."""
        self._nodes.pop(node_id, None)
        self._load.pop(node_id, None)
        for job in list(self._node_jobs.pop(node_id, {}).values()):
            self._fail_over(
                job, reason="node_offline", code=ErrorCode.NODE_UNAVAILABLE, cancel=False
            )

    # --- jobs in ----------------------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """Take an accepted utterance; it will get exactly one answer unless its session ends.

        With a store whose calls never suspend (the in-process one) the first placement runs
        inline, saving a task switch per job; otherwise in a task of its own, so a session's
        utterances are placed concurrently while their reservations are in flight.
        """
        job.seq = next(self._accepted)
        self.in_flight += 1
        self.idle.clear()
        self._metrics.jobs_in_flight.inc()
        job.session.line.enqueue(job.job_id)
        job.session.pending[job.utterance_index] = job
        job.wait_since = time.monotonic()
        if self._store.synchronous:
            await self._place_or_wait(job)
        else:
            self._spawn(self._place_or_wait(job))

    async def _place_or_wait(self, job: Job) -> None:
        try:
            if self._waiting_keys[job.wait_key()]:
                self._wait(job)  # others are ahead of it for the same nodes: FIFO
                return
            if await self._try_place(job) is Placed.NO_SLOT:
                self._wait(job)
        except Exception:  # a bug must cost one answer, not the utterance
            log.exception("placing job %s failed", job.job_id)
            self._finish_error(job, ErrorCode.INTERNAL_ERROR, "internal error while placing")

    async def _try_place(self, job: Job) -> Placed:
        snapshot = self._holder.current
        decision = await self._sessions.decide(
            job.session.entry, snapshot, job.src_lang, job.tgt_lang
        )
        cands = selection.candidates(
            snapshot,
            decision,
            job.services,
            tried=job.tried,
            load=self._load,
            start=next(self._rotation),
        )
        # A node that left since this snapshot was built is still in it until the next one.
        nodes = self._nodes
        cands = [c for c in cands if c.node_id in nodes]
        if not cands:
            return Placed.NO_SLOT
        attempt = job.attempt + 1
        try:
            node_id = await self._store.try_reserve(
                cands, job.holder(attempt), lease_s=self._cfg.reservation_lease
            )
        except StoreUnavailable:
            self._store_failed()
            # No answer is not "no": a stalled Redis runs the script once it resumes (CLIENT
            # PAUSE queues it), reserving a slot for a job we have answered.  Release the
            # holder on every candidate once the store is back (idempotent where it got none).
            self._unreleased.update((c.node_id, job.holder(attempt)) for c in cands)
            self._metrics.reservations.labels("store_down").inc()
            self._finish_error(
                job, ErrorCode.SCHEDULER_DEPENDENCY_DOWN, "the reservation store cannot be reached"
            )
            return Placed.FINISHED
        self.store_up = True
        if node_id is None:
            self._metrics.reservations.labels("full").inc()
            return Placed.NO_SLOT
        link = self._nodes.get(node_id)
        if link is None:
            # The node left while we were reserving.  Giving the slot back frees nothing
            # anyone else can use: waking the line for it would only repeat this.
            self._release(node_id, job.holder(attempt), wake=False)
            return Placed.NO_SLOT
        if job.state is JobState.DONE:  # the session ended while we were reserving
            self._release(node_id, job.holder(attempt))
            return Placed.FINISHED
        self._metrics.reserved.inc()
        await self._assign(job, link, attempt)
        return Placed.ASSIGNED

    async def _assign(self, job: Job, link: NodeLink, attempt: int) -> None:
        job.attempt = attempt
        job.node_id = link.node_id
        job.tried.add(link.node_id)
        job.state = JobState.ASSIGNED
        self._node_jobs[link.node_id][job.job_id] = job
        self._load[link.node_id] += 1
        frame = codec.job_assign(
            job.raw,
            job_id=job.job_id,
            attempt_id=attempt,
            session_id=job.session.session_id,
            utterance_index=job.utterance_index,
            src_lang=job.src_lang,
            tgt_lang=job.tgt_lang,
            pipeline=job.pipeline,
            trace_id=job.trace_id,
        )
        sent = await link.send(frame)
        if attempt == 1:
            self._metrics.dispatch_latency.observe(time.perf_counter() - job.received_at)
            self.dispatched_total += 1
        if job.state is JobState.ASSIGNED and job.attempt == attempt:
            if not sent:  # the node's socket broke; detach_node may not have run yet
                self._fail_over(
                    job, reason="send_failed", code=ErrorCode.NODE_UNAVAILABLE, cancel=False
                )
                return
            loop = asyncio.get_running_loop()
            job.timer = loop.call_later(self._cfg.job_timeout, self._timed_out, job, attempt)

    # --- waiting (FIFO, woken by releases and snapshots) -------------------------------------

    def _wait(self, job: Job, *, reorder: bool = True) -> None:
        if job.state is JobState.DONE:
            return
        if self._closing:  # shutting down: nothing will free a slot for it in time
            self._finish_error(job, ErrorCode.SESSION_CLOSED, "the scheduler is shutting down")
            return
        job.state = JobState.WAITING
        job.queued_at = time.monotonic()
        waiting = self._waiting
        if reorder and waiting and job.seq < next(reversed(waiting)).seq:
            # Concurrent placements can fail in any order (Redis answers them in any order,
            # and a woken job goes back in line): keep the line in acceptance order.
            self._waiting = dict.fromkeys(sorted([*waiting, job], key=_by_seq))
        else:
            waiting[job] = None
        self._waiting_keys[job.wait_key()] += 1
        remaining = self._cfg.pending_timeout - (time.monotonic() - job.wait_since)
        loop = asyncio.get_running_loop()
        job.wait_deadline = loop.call_later(max(remaining, 0.0), self._wait_expired, job)

    def _unwait(self, job: Job) -> None:
        if self._waiting.pop(job, False) is None:
            self._metrics.queue_wait.observe(time.monotonic() - job.queued_at)
            key = job.wait_key()
            self._waiting_keys[key] -= 1
            if self._waiting_keys[key] <= 0:
                del self._waiting_keys[key]
        if job.wait_deadline is not None:
            job.wait_deadline.cancel()
            job.wait_deadline = None

    def _wait_expired(self, job: Job) -> None:
        if job.state is JobState.WAITING:
            self._unwait(job)
            self._finish_error(job, job.wait_error, "no eligible node had a free slot in time")

    def _on_snapshot(self, _snapshot: RuntimeSnapshot) -> None:
        self._kick()

    def _kick(self) -> None:
        if self._waker is not None and not self._waker.done():
            # A round is under way: its jobs are out of the line while they try, so the line
            # may look empty, yet one that finds no slot goes back and needs this wake-up.
            self._wake_again = True
        elif self._waiting:
            self._wake_again = True
            self._waker = asyncio.create_task(self._drain_waiting())

    async def _drain_waiting(self) -> None:
        while self._wake_again:
            self._wake_again = False
            if self._store.synchronous:
                await self._drain_in_turn()
            else:
                await self._drain_together()
            # The in-process store never suspends: without this, wake-ups made during a round
            # would chain rounds without ever letting the loop read a socket.
            await asyncio.sleep(0)

    async def _drain_in_turn(self) -> None:
        """In-process store: try waiting jobs oldest first; once a job of a key finds no
        room, later jobs of that key stay behind it (their turn would fail the same way)."""
        full: set[tuple[str, str, frozenset[str]]] = set()
        for job in list(self._waiting):
            key = job.wait_key()
            if job.state is not JobState.WAITING or key in full:
                continue
            self._unwait(job)
            job.state = JobState.PLACING
            if await self._retry_place(job) is Placed.NO_SLOT:
                full.add(key)
                self._wait(job)

    async def _drain_together(self) -> None:
        """Redis: the oldest waiting jobs try at once, so their reservations share one batch,
        which the store runs in order: the line's order is kept, at one round trip."""
        jobs = list(itertools.islice(self._waiting, _WAKE_BATCH))
        for job in jobs:
            self._unwait(job)
            job.state = JobState.PLACING
        placed = await asyncio.gather(*(self._retry_place(job) for job in jobs))
        back = [job for job, outcome in zip(jobs, placed, strict=True) if outcome is Placed.NO_SLOT]
        for job in back:
            self._wait(job, reorder=False)
        if back:  # one sort for the whole batch, not one per job
            self._waiting = dict.fromkeys(sorted(self._waiting, key=_by_seq))

    async def _retry_place(self, job: Job) -> Placed:
        try:
            return await self._try_place(job)
        except Exception:
            log.exception("placing job %s failed", job.job_id)
            self._finish_error(job, ErrorCode.INTERNAL_ERROR, "internal error while placing")
            return Placed.FINISHED

    # --- answers from nodes -----------------------------------------------------------------

    def _current(self, node_id: str, job_id: str, attempt: int, session_id: str) -> Job | None:
        """The job if this node holds its current attempt; else ``None`` (contract §1
        "Identity": stale or foreign messages change nothing)."""
        job = self._node_jobs.get(node_id, {}).get(job_id)
        if job is None or job.attempt != attempt or job.session.session_id != session_id:
            return None
        return job

    def on_ack(self, node_id: str, msg: JobAck | JobStarted) -> bool:
        return self._current(node_id, msg.job_id, msg.attempt_id, msg.session_id) is not None

    def on_result(self, node_id: str, msg: JobResult, frame: str | bytes) -> bool:
        job = self._current(node_id, msg.job_id, msg.attempt_id, msg.session_id)
        if job is None:
            return False
        self._end_attempt(job)
        if msg.success:
            out = codec.translation_result(
                codec.raw_fields(frame),
                session_id=job.session.session_id,
                utterance_index=job.utterance_index,
                job_id=job.job_id,
                trace_id=job.trace_id,
                node_id=node_id,
            )
            self._metrics.results.inc()
            self._finish(job, out)
            return True
        err = msg.error
        details: dict[str, object] = dict(err.details or {}) if err else {}
        details.update(utterance_index=job.utterance_index, job_id=job.job_id, node_id=node_id)
        code = (err.code if err and err.code else None) or ErrorCode.NODE_ERROR
        message = (err.message if err and err.message else None) or "the node failed the job"
        self._finish_error(job, code, message, details)
        return True

    def on_partial(self, node_id: str, msg: AsrPartial, frame: str | bytes) -> bool:
        job = self._node_jobs.get(node_id, {}).get(msg.job_id)
        if job is None or job.session.session_id != msg.session_id:
            return False
        job.session.push(
            codec.asr_partial(
                codec.raw_fields(frame),
                session_id=job.session.session_id,
                utterance_index=job.utterance_index,
            )
        )
        return True

    # --- failures ---------------------------------------------------------------------------

    def _timed_out(self, job: Job, attempt: int) -> None:
        if job.state is JobState.ASSIGNED and job.attempt == attempt:
            self._fail_over(job, reason="timeout", code=ErrorCode.JOB_TIMEOUT, cancel=True)

    def _fail_over(self, job: Job, *, reason: str, code: ErrorCode, cancel: bool) -> None:
        self._end_attempt(job, cancel=reason if cancel else None)
        self._metrics.failovers.labels(reason).inc()
        if job.attempt >= self._cfg.max_attempts:
            self._finish_error(job, code, f"gave up after {job.attempt} attempts ({reason})")
            return
        job.state = JobState.PLACING
        job.wait_error = code
        job.wait_since = time.monotonic()
        self._spawn(self._place_or_wait(job))

    def _end_attempt(self, job: Job, *, cancel: str | None = None) -> None:
        """Stop the current attempt's timer and give its slot back; with ``cancel`` (the
        reason), only once ``job_cancel`` is on its way to the node.  A slot freed first can
        go to the next job at once, and its ``job_assign`` then reaches the node before the
        cancel: the node runs one job over its capacity (the connection storm of
        docs/reliability.md on the in-process store, whose placement runs inline)."""
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        node_id = job.node_id
        if node_id is not None:
            counted = self._node_jobs.get(node_id, {}).pop(job.job_id, None) is not None
            holder = job.holder(job.attempt)
            link = self._nodes.get(node_id)
            if cancel is None or link is None:
                self._release(node_id, holder, counted=counted)
            else:
                frame = codec.job_cancel(job.job_id, job.trace_id, cancel)
                self._spawn(self._cancel_then_release(link, frame, node_id, holder, counted))
            job.node_id = None

    async def _cancel_then_release(
        self, link: NodeLink, frame: bytes, node_id: str, holder: str, counted: bool
    ) -> None:
        try:
            await link.send(frame)
        finally:
            self._release(node_id, holder, counted=counted)

    # --- answers to sessions ----------------------------------------------------------------

    def _finish_error(
        self,
        job: Job,
        code: str,
        message: str,
        details: dict[str, object] | None = None,
        *,
        cancel: str | None = None,
    ) -> None:
        if job.state is JobState.DONE:
            return
        info: dict[str, object] = details or {
            "utterance_index": job.utterance_index,
            "job_id": job.job_id,
        }
        self.failed_total += 1
        # Nodes choose their own codes: label only ours, so a node cannot grow the metric.
        kind = code if code in _OUR_CODES else "node_error"
        self._metrics.answers.labels(kind).inc()
        self._finish(job, codec.error(code, message, info), cancel=cancel)

    def _finish(self, job: Job, frame: bytes, *, cancel: str | None = None) -> None:
        if job.state is JobState.DONE:
            return
        self._close_job(job, cancel=cancel)
        session = job.session
        session.line.answer(job.job_id, frame)
        for ready in session.line.ready():
            session.push(ready)

    def _close_job(self, job: Job, *, cancel: str | None = None) -> None:
        if job.state is JobState.WAITING:
            self._unwait(job)
        job.state = JobState.DONE
        self._end_attempt(job, cancel=cancel)
        if job.session.pending.get(job.utterance_index) is job:
            del job.session.pending[job.utterance_index]
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()
        self._metrics.jobs_in_flight.dec()

    def drop_session(self, session: SessionLink) -> None:
        """The session ended: its pending jobs are cancelled on their nodes, unanswered."""
        for job in list(session.pending.values()):
            self._close_job(job, cancel="session closed")
            session.line.drop(job.job_id)

    def fail_session(self, session: SessionLink, code: ErrorCode, message: str) -> None:
        """Answer every pending job of a session with an error (server shutdown)."""
        for job in list(session.pending.values()):
            # cancel= goes through _end_attempt, which writes job_cancel before the release
            self._finish_error(job, code, message, cancel=message)

    # --- the store --------------------------------------------------------------------------

    def _release(
        self, node_id: str, holder: str, *, counted: bool = False, wake: bool = True
    ) -> None:
        """Give a slot back.  ``counted``: the slot is in this scheduler's own load count,
        which drops only once the store has released it, so the local count never shows a
        slot free that the store still holds (a futile reservation and a wait would follow).
        The in-process store releases at once, inline; Redis in the background (batched).
        ``wake``: the slot may go to a waiting job (not so for a node that has left)."""
        if self._store.synchronous:
            drive_sync(self._release_now(node_id, holder, counted=counted, wake=wake))
        else:
            self._spawn(self._release_now(node_id, holder, counted=counted, wake=wake))

    async def _release_now(self, node_id: str, holder: str, *, counted: bool, wake: bool) -> None:
        try:
            await self._store.release(node_id, holder)
        except StoreUnavailable:
            self._store_failed()
            self._unreleased.add((node_id, holder))  # the lease expires anyway; retry sooner
        finally:
            if counted and node_id in self._load:
                self._load[node_id] -= 1
                if self._load[node_id] <= 0:
                    del self._load[node_id]
        if wake:
            self._kick()

    def _store_failed(self) -> None:
        if self.store_up:
            log.warning("reservation store unreachable")
        self.store_up = False

    async def _maintain(self) -> None:
        """Renew live jobs' leases every third of a lease, retry refused releases, and probe
        the store every second so ``/health`` notices an outage even while idle."""
        tick = min(self._cfg.reservation_lease / 3, 1.0)
        renew_every = self._cfg.reservation_lease / 3
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            try:
                if time.monotonic() - last_renewal >= renew_every:
                    last_renewal = time.monotonic()
                    await self._renew_all()
                for node_id, holder in list(self._unreleased):
                    await self._store.release(node_id, holder)
                    self._unreleased.discard((node_id, holder))
            except StoreUnavailable:
                self._store_failed()
            up = await self._store.ping()
            if up and not self.store_up:
                log.info("reservation store reachable again")
                self.store_up = True
                self._kick()
            elif not up:
                self._store_failed()

    async def _renew_all(self) -> None:
        leases = [
            (node_id, job.holder(job.attempt))
            for node_id, jobs in self._node_jobs.items()
            for job in jobs.values()
        ]
        if leases:
            await self._store.renew(leases, lease_s=self._cfg.reservation_lease)
