"""``DispatchCore``: every accepted utterance from acceptance to its one answer, sans I/O.

A synchronous state machine in the manner of ``h11`` and ``websockets``' protocol layer: each
public method is an *event* (an utterance accepted, a reservation answered, a result, a timer,
a node gone, a slot released, the store down or up) and returns the *actions* the driver must
perform (``actions.py``).  It never awaits, never reads a clock (time arrives as ``now``) and
never touches a socket or the store, so tests drive it with lists of events and check lists of
actions, with no event loop.  ``driver.py`` performs the actions with asyncio.

One placement, in the seed's order (§6):

1. read the snapshot (no lock);
2–5. take the session's lock, decide pair and preferred pool, release it;
6–8. language index → pool members → filter by the snapshot (``selection.candidates``);
9. ``Reserve``: the store's choose-and-reserve (the final word on capacity);
then ``Assign`` (``job_assign`` to the node) and the job timeout.

No candidate or no free slot: the job joins the waiting line (``waiting.py``: by priority
class, then weighted fair queueing between tenants, FIFO per pair and services within a
tenant and class), and is woken when one of our reservations is released, a snapshot is
published or the store comes back — never by polling — until ``pending_timeout``.  A wake
round reserves for the first waiting jobs in the line's serving order in one ``ReserveMany``,
which the store runs in order and atomically.  Timeouts, failed sends and departed nodes fail
the attempt over to the next one (contract §2 "Failures").  Answers leave through the
session's ``AnswerLine``, in arrival order.

Invariants (checked by ``tests/unit/test_core_properties.py``): every accepted utterance gets
exactly one answer unless its session ends first, in order; no node holds more of our jobs than
its capacity; every reservation is released.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from switchboard.dispatch import selection, steps
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
from switchboard.dispatch.jobs import (
    Job,
    JobState,
    NodePeer,
    Session,
    SessionPeer,
    Timer,
    TimerKind,
)
from switchboard.dispatch.overload import Overload, OverloadBounds, Reason
from switchboard.dispatch.spans import DROPPED, JobSpans
from switchboard.dispatch.tenants import Tenant, Tenants, TenantSpec
from switchboard.dispatch.waiting import WaitingLine
from switchboard.metrics import Metrics
from switchboard.protocol import codec, ids, langs
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.cuts import MANUAL_CUT, Cut
from switchboard.protocol.messages import AsrPartial, JobAck, JobResult, JobStarted, Utterance
from switchboard.protocol.profile import SessionProfile
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.sessions.groups import GroupState
from switchboard.sessions.manager import SessionManager
from switchboard.store.base import Candidate

log = logging.getLogger("switchboard.dispatch")
_OUR_CODES = frozenset(c.value for c in ErrorCode)
# Waiting jobs one wake round reserves for at most (one store call's worth).
WAKE_BATCH = 64
_SHUTTING_DOWN = "the scheduler is shutting down"
_STORE_DOWN = "the reservation store cannot be reached"
# A core built without bounds never sheds; the server passes --overload-* (config.py).
_NO_BOUNDS_GIVEN = OverloadBounds(loop_lag=0, store_backlog=0, queue_age=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    job_timeout: float
    pending_timeout: float
    max_attempts: int
    reservation_lease: float
    max_pending_per_session: int = 64
    streaming_asr: bool = True  # job_assign asks nodes for asr_partial (lingua-parity §2)
    # The waiting line's tenants and classes (tenants.py, waiting.py).
    tenants: tuple[TenantSpec, ...] = ()
    max_tenants: int = 1000
    priority_aging: float = 1.0
    # When new utterances get OVERLOADED (overload.py); none by default.
    overload: OverloadBounds = _NO_BOUNDS_GIVEN


class _RoundLoad(Mapping[str, int]):
    """This scheduler's load plus the slots a wake round has already promised, so one round
    asks the store for no more slots than it sees free.  ``selection`` only calls ``get``."""

    __slots__ = ("_base", "extra")

    def __init__(self, base: Mapping[str, int]) -> None:
        self._base = base
        self.extra: Counter[str] = Counter()

    def get(self, node_id: str, default: int = 0) -> int:  # type: ignore[override]
        return self._base.get(node_id, default) + self.extra[node_id]

    def __getitem__(self, node_id: str) -> int:
        return self.get(node_id)

    def __iter__(self) -> Iterator[str]:
        return iter(set(self._base) | set(self.extra))

    def __len__(self) -> int:
        return len(set(self._base) | set(self.extra))


class DispatchCore:
    def __init__(
        self,
        snapshots: SnapshotHolder,
        sessions: SessionManager,
        *,
        settings: DispatchSettings,
        metrics: Metrics,
        on_accept: Callable[[Job], None] | None = None,
        spans: JobSpans | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._sessions = sessions
        self._cfg = settings
        self._stats = metrics.dispatch  # plain attributes: the per-job metric updates
        self._steps = steps.enabled()  # read once: at the default level a step costs a branch
        self._on_accept = on_accept  # the session recorder's hook (bench), None otherwise
        self._spans = spans  # --otel's tracer (spans.py), None otherwise
        self._nodes: dict[str, NodePeer] = {}
        self._node_jobs: dict[str, dict[str, Job]] = {}
        self._load: Counter[str] = Counter()  # this scheduler's jobs per node
        self._line = WaitingLine(aging=settings.priority_aging)
        # Who each session schedules as, and what each tenant and class holds (fair shedding).
        self.tenants = Tenants(settings.tenants, max_tenants=settings.max_tenants)
        self._round: list[Reserve] | None = None  # the wake round the store is running
        self._wake_again = False
        self.unreleased: set[tuple[str, str]] = set()  # releases the store refused; retried
        self._rotation = itertools.count()
        self._accepted = itertools.count()
        self.in_flight = 0
        self.failed_total = 0
        self.store_up = True
        self.closing = False
        # Saturation (overload.py): the driver feeds its signals, we lend the line's age.
        self.overload = Overload(settings.overload)
        self.overload.waiting_since = self._oldest_wait
        self._shedding = settings.overload.enabled

    # --- the one place a job changes state ------------------------------------------------

    @staticmethod
    def _set_state(job: Job, state: JobState) -> None:
        job.state = state

    # --- sessions -----------------------------------------------------------------------------

    def open_session(
        self, session_id: str, peer: SessionPeer, profile: SessionProfile | None = None
    ) -> Session:
        """A session opened by a ``session_init`` whose ``profile`` its jobs carry (none:
        a session that asked for nothing, with a new trace id)."""
        if profile is None:
            profile = SessionProfile(trace_id=ids.trace_id(), src_lang="", tgt_lang="")
        # A tenant's token wins over the tenant_id the session names (tenants.py).
        tenant = self.tenants.join(profile.auth_tenant or profile.tenant_id)
        priority = self.tenants.class_of(tenant, profile.priority)
        entry = self._sessions.create(session_id)
        return Session(session_id, entry, peer, profile, tenant, priority)

    def close_session(self, session: Session) -> list[Action]:
        """The session ended (closed or disconnected): its pending jobs are cancelled on their
        nodes and go unanswered (contract §2 "Ending")."""
        out: list[Action] = []
        for job in list(session.pending.values()):
            self._close_job(job, out, cancel="session closed")
            session.line.drop(job.job_id)
            if self._spans is not None:
                self._spans.ended(job, DROPPED)
        if self._sessions.get(session.session_id) is session.entry:  # closed once only
            self._sessions.remove(session.session_id)
            self.tenants.leave(session.tenant)
        return out

    def fail_session(self, session: Session, code: ErrorCode, message: str) -> list[Action]:
        """Answer every pending job of a session with an error (server shutdown)."""
        out: list[Action] = []
        for job in list(session.pending.values()):
            self._finish_error(job, code, message, out, cancel=message)
        return out

    # --- jobs in ----------------------------------------------------------------------------

    def accept(
        self, session: Session, msg: Utterance, frame: bytes, *, received_at: float, now: float
    ) -> list[Action]:
        """An utterance arrived: refuse it (contract §2 "Accepting") or take it, in which case
        it will get exactly one answer unless its session ends first."""
        index = msg.utterance_index
        out: list[Action] = []
        refusal = self._refusal(session, msg)
        if refusal is not None:
            code, message = refusal
            self._stats.rejected(code)
            out.append(Push(session.peer, codec.error(code, message, {"utterance_index": index})))
            return out
        if self._shedding and self._shed(session, index, now, out):
            return out
        pipeline = msg.pipeline
        job = Job(
            job_id=ids.job_id(),
            session=session,
            utterance_index=index,
            src_lang=langs.normalize(msg.src_lang),
            tgt_lang=langs.normalize(msg.tgt_lang),
            services=selection.services_for(pipeline),
            pipeline={
                "use_asr": pipeline.use_asr if pipeline else True,
                "use_nmt": pipeline.use_nmt if pipeline else True,
                "use_tts": pipeline.use_tts if pipeline else True,
            },
            raw=codec.raw_fields(frame),
            trace_id=msg.trace_id or session.profile.trace_id,
            received_at=received_at,
            cut=MANUAL_CUT if msg.manual_cut else None,
            seq=next(self._accepted),
            wait_since=now,
        )
        self._admit(job, now, out)
        return out

    def admit_streamed(
        self,
        session: Session,
        audio: str,
        *,
        audio_format: str,
        sample_rate: int,
        cut: Cut,
        received_at: float,
        now: float,
    ) -> list[Action]:
        """A job that did not come from an ``utterance`` frame: the joined audio (base64) of
        one streamed utterance, cut as ``cut`` says (lingua-parity §3).  It takes the
        session's next ``utterance_index``; its pair, mode fields and trace id are the
        session's; it is admitted, placed and answered like an utterance.  A refusal
        (``TOO_MANY_PENDING``, ``SESSION_CLOSED``) is an ``error`` at once, outside the
        ordered stream, with the index the utterance would have had, which is used up."""
        index = session.next_index
        out: list[Action] = []
        refusal = self._admission_refusal(session)
        if refusal is not None:
            session.next_index = index + 1
            code, message = refusal
            out.append(Push(session.peer, codec.error(code, message, {"utterance_index": index})))
            return out
        if self._shedding and self._shed(session, index, now, out):
            session.next_index = index + 1
            return out
        profile = session.profile
        job = Job(
            job_id=ids.job_id(),
            session=session,
            utterance_index=index,
            src_lang=profile.src_lang,
            tgt_lang=profile.tgt_lang,
            services=selection.services_for(None),
            pipeline={"use_asr": True, "use_nmt": True, "use_tts": True},
            raw=codec.stream_fields(audio, audio_format=audio_format, sample_rate=sample_rate),
            trace_id=profile.trace_id,
            received_at=received_at,
            cut=cut,
            seq=next(self._accepted),
            wait_since=now,
        )
        self._admit(job, now, out)
        return out

    def _admit(self, job: Job, now: float, out: list[Action]) -> None:
        """Take an accepted job: it holds its place in the answer line from now on."""
        if self._on_accept is not None:
            self._on_accept(job)
        if self._spans is not None:
            self._spans.started(job)
        self.in_flight += 1
        self.tenants.hold(job.session.tenant, job.session.priority)
        if self._steps:
            steps.step(job, "accepted", detail=f"{job.src_lang}->{job.tgt_lang}")
        session = job.session
        index = job.utterance_index
        if index >= session.next_index:
            session.next_index = index + 1
        session.line.enqueue(job.job_id)
        session.pending[index] = job
        self._place(job, now, out)

    def _refusal(self, session: Session, msg: Utterance) -> tuple[ErrorCode, str] | None:
        if msg.session_id != session.session_id:  # a session speaks only for itself
            return ErrorCode.INVALID_SESSION, "session_id does not name this connection's session"
        index = msg.utterance_index
        if index in session.pending:
            return ErrorCode.INVALID_MESSAGE, f"utterance_index {index} is already pending"
        return self._admission_refusal(session)

    def _admission_refusal(self, session: Session) -> tuple[ErrorCode, str] | None:
        """The rules every job meets, whichever path it came by."""
        if len(session.pending) >= self._cfg.max_pending_per_session:
            return ErrorCode.TOO_MANY_PENDING, "too many pending utterances"
        if self.closing:
            return ErrorCode.SESSION_CLOSED, _SHUTTING_DOWN
        return None

    def _shed(self, session: Session, index: int, now: float, out: list[Action]) -> bool:
        """Refuse a new utterance at once while the scheduler is saturated (protocol.md §3
        ``OVERLOADED``): outside the ordered stream, like ``TOO_MANY_PENDING``.  O(1): the
        gauge reads a few numbers the driver keeps.  A room's lane is never shed here: its
        speaker's utterance was checked once for all its languages (``shed_refusal``)."""
        if not session.sheddable:
            return False
        frame = self.shed_refusal(index, now, session.tenant, session.priority)
        if frame is None:
            return False
        out.append(Push(session.peer, frame))
        return True

    def shed_refusal(
        self, index: int, now: float, tenant: Tenant | None = None, priority: int = 0
    ) -> bytes | None:
        """The ``OVERLOADED`` answer to new utterance ``index`` if the scheduler is saturated
        now (then counted as shed), else ``None``; for admission paths beside ``accept`` that
        answer someone else than the job's session (a room's fan-out).  Fair shedding
        (protocol.md §3 "Saturation"): a ``tenant`` below its weighted share of the held jobs
        is not shed, the tenants above theirs are, so a burst of one cannot crowd the others
        out; nor is a ``priority`` class while a lower class holds jobs: the lowest go first."""
        reason = self.overloaded(now)
        if reason is None:
            return None
        tenants = self.tenants
        if tenant is not None and (
            tenants.below_share(tenant) or tenants.above_lowest_class(priority)
        ):
            return None
        if self.overload.throttled and self.overload.admit_one():
            return None  # one of the share still admitted while the loop lags (overload.py)
        self._stats.shed_one(reason)
        details = {
            "utterance_index": index,
            "retry_after_ms": self.overload.retry_after_ms(reason, now),
            "reason": reason.value,
        }
        message = "the scheduler is saturated: retry after details.retry_after_ms"
        return codec.error(ErrorCode.OVERLOADED, message, details)

    def overloaded(self, now: float) -> Reason | None:
        """Whether new work should be refused now, and why (for admission policies beside
        this one, e.g. shedding the tenant above its share first)."""
        return self.overload.overloaded(now) if self._shedding else None

    def _oldest_wait(self) -> float | None:
        for job in self._line:  # oldest first: the first one is enough
            return job.wait_since
        return None

    def _place(self, job: Job, now: float, out: list[Action]) -> None:
        """Reserve for the job's next attempt, or put it in line."""
        self._set_state(job, JobState.PLACING)
        if self._line.ahead(job.key):
            self._wait(job, now, out)  # others are ahead of it for the same nodes: FIFO
            return
        cands = self._candidates(job, self._load)
        if not cands:
            self._wait(job, now, out)
            return
        self._set_state(job, JobState.RESERVING)
        out.append(Reserve(job, job.attempt + 1, cands))

    def _candidates(self, job: Job, load: Mapping[str, int]) -> list[Candidate]:
        snapshot = self._snapshots.current
        decision = self._sessions.decide(job.session.entry, snapshot, job.src_lang, job.tgt_lang)
        cands = selection.candidates(
            snapshot,
            decision,
            job.services,
            tried=job.tried,
            load=load,
            start=next(self._rotation),
        )
        # A node that left since this snapshot was built is still in it until the next one.
        nodes = self._nodes
        return [c for c in cands if c.node_id in nodes]

    # --- the store's answers -----------------------------------------------------------------

    def reserved(self, reserve: Reserve, node_id: str | None, *, now: float) -> list[Action]:
        """The store answered one ``Reserve``: a node, or ``None`` when all were full."""
        out: list[Action] = []
        self.store_up = True
        job, attempt = reserve.job, reserve.attempt
        if job.state is not JobState.RESERVING:  # answered or dropped meanwhile
            if node_id is not None:
                out.append(Release(node_id, reserve.holder, counted=False, wake=True))
            return out
        if node_id is None:
            self._stats.full += 1
            self._wait(job, now, out)
            return out
        node = self._nodes.get(node_id)
        if node is None:
            # The node left while we were reserving.  Giving the slot back frees nothing
            # anyone else can use: waking the line for it would only repeat this.
            out.append(Release(node_id, reserve.holder, counted=False, wake=False))
            self._wait(job, now, out)
            return out
        self._assign(job, node, attempt, out, now)
        return out

    def reserve_failed(self, reserve: Reserve, *, unreachable: bool = True) -> list[Action]:
        """The store could not be reached for one ``Reserve`` (or, ``unreachable=False``, the
        call failed otherwise: a bug or an error reply, answered ``INTERNAL_ERROR``)."""
        out: list[Action] = []
        self._reservation_lost(reserve, out, unreachable=unreachable)
        return out

    def _reservation_lost(self, reserve: Reserve, out: list[Action], *, unreachable: bool) -> None:
        if not unreachable:
            self.unreleased.update((c.node_id, reserve.holder) for c in reserve.candidates)
            if reserve.job.state is JobState.RESERVING:
                self._finish_error(
                    reserve.job, ErrorCode.INTERNAL_ERROR, "internal error while placing", out
                )
            return
        self.store_failed()
        # No answer is not "no": a stalled Redis runs the script once it resumes (CLIENT
        # PAUSE queues it), reserving a slot for a job we have answered.  Release the holder
        # on every candidate once the store is back (idempotent where it got none).
        self.unreleased.update((c.node_id, reserve.holder) for c in reserve.candidates)
        self._stats.store_down += 1
        job = reserve.job
        if job.state is JobState.RESERVING:
            self._finish_error(
                job,
                ErrorCode.SCHEDULER_DEPENDENCY_DOWN,
                _STORE_DOWN,
                out,
            )

    def round_reserved(self, results: list[str | None], *, now: float) -> list[Action]:
        """The store answered the wake round, one result per ``Reserve`` in order."""
        out: list[Action] = []
        batch, self._round = self._round or [], None
        self.store_up = True
        for reserve, node_id in zip(batch, results, strict=True):
            job = reserve.job
            if job.state is not JobState.RESERVING:  # answered or dropped meanwhile
                if node_id is not None:
                    out.append(Release(node_id, reserve.holder, counted=False, wake=True))
                continue
            node = None if node_id is None else self._nodes.get(node_id)
            if node_id is not None and node is None:
                out.append(Release(node_id, reserve.holder, counted=False, wake=False))
            if node is None:
                self._stats.full += 1
                self._back_in_line(job, now, out)
                continue
            self._unwait(job, now, out, served=True)
            self._assign(job, node, reserve.attempt, out, now)
        self._rewake(now, out)
        return out

    def round_failed(self, *, now: float, unreachable: bool = True) -> list[Action]:
        """The store could not be reached for the wake round (see ``reserve_failed``)."""
        out: list[Action] = []
        batch, self._round = self._round or [], None
        for reserve in batch:
            if reserve.job.state is JobState.RESERVING:
                self._unwait(reserve.job, now, out)
            self._reservation_lost(reserve, out, unreachable=unreachable)
        self._rewake(now, out)
        return out

    def _back_in_line(self, job: Job, now: float, out: list[Action]) -> None:
        """A round's job found no slot: it keeps its place, unless its time ran out."""
        if job.expired:
            self._line.remove(job)
            self._wait_expired(job, now, out)
        else:
            self._set_state(job, JobState.WAITING)

    def _wait_expired(self, job: Job, now: float, out: list[Action]) -> None:
        """A job's pending timeout passed while it waited: say honestly why (protocol.md §3).
        ``NO_AVAILABLE_NODE`` only if neither the store nor the scheduler itself was behind
        during its wait; a failover's own code (``NODE_UNAVAILABLE``, ``JOB_TIMEOUT``) stays."""
        code = job.wait_error
        if code is not ErrorCode.NO_AVAILABLE_NODE:
            self._finish_error(job, code, "no eligible node had a free slot in time", out)
            return
        if not self.store_up:
            self._finish_error(
                job,
                ErrorCode.SCHEDULER_DEPENDENCY_DOWN,
                "the reservation store could not be reached while the utterance waited",
                out,
            )
            return
        overload = self.overload
        if overload.behind_since(job.wait_since, now):
            reason = overload.behind_reason
            details: dict[str, object] = {
                "utterance_index": job.utterance_index,
                "job_id": job.job_id,
                "retry_after_ms": overload.retry_after_ms(reason, now),
                "reason": reason.value,
            }
            message = "the scheduler fell behind while the utterance waited"
            self._finish_error(job, ErrorCode.OVERLOADED, message, out, details)
            return
        self._finish_error(job, code, "no eligible node had a free slot in time", out)

    def _assign(
        self, job: Job, node: NodePeer, attempt: int, out: list[Action], now: float
    ) -> None:
        self._stats.reserved += 1
        node_id = node.node_id
        job.attempt = attempt
        job.node_id = node_id
        job.assigned_at = now
        if self._steps:
            steps.step(job, "reserved")
        job.tried.add(node_id)
        self._set_state(job, JobState.ASSIGNED)
        self._node_jobs.setdefault(node_id, {})[job.job_id] = job
        self._load[node_id] += 1
        session = job.session
        frame = codec.job_assign(
            job.raw,
            job_id=job.job_id,
            attempt_id=attempt,
            session_id=session.session_id,
            utterance_index=job.utterance_index,
            src_lang=job.src_lang,
            tgt_lang=job.tgt_lang,
            pipeline=job.pipeline,
            trace_id=job.trace_id,
            profile=session.profile,
            cut=job.cut,
            streaming_asr=self._cfg.streaming_asr,
        )
        # The timer first: if the write fails, the failover that follows stops it.
        timer = job.timer = Timer(TimerKind.JOB, job)
        out.append(StartTimer(timer, self._cfg.job_timeout))
        out.append(Assign(node, frame, job, attempt))

    def assign_failed(self, job: Job, attempt: int, *, now: float) -> list[Action]:
        """The node's socket broke while ``job_assign`` was written.  The node is gone for
        dispatch from now on, not only once its connection's end is noticed: a failover
        placed at once could otherwise pick it again, and a closing socket fails every write
        (found by E2's churn: three writes in a row to closing nodes used up a job's attempts).
        """
        out: list[Action] = []
        if job.state is JobState.ASSIGNED and job.attempt == attempt:
            node_id = job.node_id
            if node_id is not None:
                self._nodes.pop(node_id, None)
            self._fail_over(
                job, "send_failed", ErrorCode.NODE_UNAVAILABLE, out, now=now, cancel=False
            )
            if node_id is not None:
                self._node_lost(node_id, now, out)
        return out

    # --- slots given back ---------------------------------------------------------------------

    def released(self, release: Release, *, ok: bool, now: float) -> list[Action]:
        """The store has dropped a lease (``ok``) or could not be reached (it expires anyway,
        and is retried sooner).  Only now does the local count drop: it must never show a
        slot free that the store still holds (a futile reservation and a wait would follow)."""
        out: list[Action] = []
        if not ok:
            self.store_failed()
            self.unreleased.add((release.node_id, release.holder))
        if release.counted:
            node_id = release.node_id
            if node_id in self._load:
                self._load[node_id] -= 1
                if self._load[node_id] <= 0:
                    del self._load[node_id]
        if release.wake:
            self._wake(now, out)
        return out

    # --- waiting (in the line's serving order, woken by releases and snapshots) --------------

    def _wait(self, job: Job, now: float, out: list[Action]) -> None:
        if job.state is JobState.DONE:
            return
        if self.closing:  # shutting down: nothing will free a slot for it in time
            self._finish_error(job, ErrorCode.SESSION_CLOSED, _SHUTTING_DOWN, out)
            return
        if not self.store_up:  # no slot can be reserved: refuse now (contract §3, within 2 s)
            self._stats.store_down += 1
            self._finish_error(job, ErrorCode.SCHEDULER_DEPENDENCY_DOWN, _STORE_DOWN, out)
            return
        self._set_state(job, JobState.WAITING)
        job.queued_at = now
        self._line.add(job)
        if self._steps:
            steps.step(job, "waiting", detail="no free slot")
        if job.deadline is None:
            remaining = self._cfg.pending_timeout - (now - job.wait_since)
            timer = job.deadline = Timer(TimerKind.WAIT, job)
            out.append(StartTimer(timer, max(remaining, 0.0)))

    def _unwait(self, job: Job, now: float, out: list[Action], *, served: bool = False) -> None:
        if self._line.remove(job, served=served):
            self._stats.queue_wait.observe(now - job.queued_at)
        if job.deadline is not None:
            out.append(StopTimer(job.deadline))
            job.deadline = None
        job.expired = False

    def wake(self, *, now: float) -> list[Action]:
        """Slots or nodes may have appeared (a new snapshot, the store back): try the line."""
        out: list[Action] = []
        self._wake(now, out)
        return out

    def _wake(self, now: float, out: list[Action]) -> None:
        if self._round is not None:
            # A round is under way: one that finds no slot may need this wake-up after it.
            self._wake_again = True
            return
        if not self._line:
            return
        load = _RoundLoad(self._load)
        full: set[tuple[str, str, frozenset[str]]] = set()
        batch: list[Reserve] = []
        for job in self._line.in_order():
            key = job.key
            if key in full or job.state is not JobState.WAITING:
                continue
            cands = self._candidates(job, load)
            if not cands:
                full.add(key)  # later jobs of this key stay behind it: FIFO
                continue
            load.extra[cands[0].node_id] += 1  # the slot this round expects it to take
            self._set_state(job, JobState.RESERVING)
            batch.append(Reserve(job, job.attempt + 1, cands))
            if len(batch) >= WAKE_BATCH:
                self._wake_again = True  # the rest go in the next round
                break
        if batch:
            self._round = batch
            out.append(ReserveMany(batch))

    def _rewake(self, now: float, out: list[Action]) -> None:
        if self._wake_again:
            self._wake_again = False
            self._wake(now, out)

    # --- answers from nodes -----------------------------------------------------------------

    def _current(self, node_id: str, job_id: str, attempt: int, session_id: str) -> Job | None:
        """The job if this node holds its current attempt; else ``None`` (contract §1
        "Identity": stale or foreign messages change nothing)."""
        jobs = self._node_jobs.get(node_id)
        job = None if jobs is None else jobs.get(job_id)
        if job is None or job.attempt != attempt or job.session.session_id != session_id:
            return None
        return job

    def ack(self, node_id: str, msg: JobAck | JobStarted) -> bool:
        """``job_ack`` / ``job_started``: information only; ``False`` if stale or foreign."""
        job = self._current(node_id, msg.job_id, msg.attempt_id, msg.session_id)
        if job is None:
            return False
        if self._steps:
            steps.step(job, "acked", detail=type(msg).__name__)
        return True

    def result(
        self, node_id: str, msg: JobResult, frame: bytes, *, now: float, wall_ms: int
    ) -> list[Action]:
        """A node's ``job_result`` (``wall_ms``: the epoch time it arrived, for groups)."""
        out: list[Action] = []
        job = self._current(node_id, msg.job_id, msg.attempt_id, msg.session_id)
        if job is None:
            return out
        self._stats.node_job(node_id, now - job.assigned_at)
        if self._steps:
            steps.step(job, "result", detail="success" if msg.success else "failure")
        self._end_attempt(job, out)
        if msg.success:
            self._stats.answered("result", job.received_at)
            if self._steps:
                steps.step(job, "answered", node_id, detail="result")
            if self._spans is not None:
                self._spans.ended(job, "result")
            self._finish(job, self._success(job, node_id, frame, wall_ms), out)
            return out
        err = msg.error
        details: dict[str, object] = dict(err.details or {}) if err else {}
        details.update(utterance_index=job.utterance_index, job_id=job.job_id, node_id=node_id)
        code = (err.code if err and err.code else None) or ErrorCode.NODE_ERROR
        message = (err.message if err and err.message else None) or "the node failed the job"
        self._finish_error(job, code, message, out, details)
        return out

    @staticmethod
    def _success(job: Job, node_id: str, frame: bytes, wall_ms: int) -> bytes:
        """The answer to a successful result: ``missing_result`` when it holds nothing, else
        ``translation_result``, in a group when it has ASR text (lingua-parity §4)."""
        session = job.session
        raw = codec.raw_fields(frame)
        if codec.is_silent(raw):
            return codec.missing_result(
                session_id=session.session_id,
                utterance_index=job.utterance_index,
                created_at_ms=wall_ms,
                trace_id=job.trace_id,
                job_id=job.job_id,
                node_id=node_id,
            )
        group = None
        if codec.has_asr_text(raw):
            groups = session.groups
            if groups is None:
                groups = session.groups = GroupState(session.session_id)
            group = groups.on_result(wall_ms)
        return codec.translation_result(
            raw,
            session_id=session.session_id,
            utterance_index=job.utterance_index,
            job_id=job.job_id,
            trace_id=job.trace_id,
            node_id=node_id,
            group=group,
        )

    @staticmethod
    def play_ended(session: Session, group_id: str, ts_end_ms: int) -> bool:
        """``tts_play_ended``: the group's playback ended at ``ts_end_ms`` (lingua-parity §4);
        ``False`` when it names no current group of the session (nothing changes)."""
        groups = session.groups
        return groups is not None and groups.on_tts_play_ended(group_id, ts_end_ms)

    def partial(self, node_id: str, msg: AsrPartial, frame: bytes) -> list[Action]:
        """``asr_partial``: relayed at once, outside the ordered stream (contract §2)."""
        jobs = self._node_jobs.get(node_id)
        job = None if jobs is None else jobs.get(msg.job_id)
        if job is None or job.session.session_id != msg.session_id:
            return []
        frame_out = codec.asr_partial(
            codec.raw_fields(frame),
            session_id=job.session.session_id,
            utterance_index=job.utterance_index,
        )
        return [Push(job.session.peer, frame_out)]

    # --- timers -------------------------------------------------------------------------------

    def timer_fired(self, timer: Timer, *, now: float) -> list[Action]:
        out: list[Action] = []
        job = timer.job
        if timer.kind is TimerKind.JOB:
            if job.timer is timer and job.state is JobState.ASSIGNED:
                job.timer = None
                if self._steps:
                    steps.step(job, "timeout")
                self._fail_over(job, "timeout", ErrorCode.JOB_TIMEOUT, out, now=now, cancel=True)
        elif job.deadline is timer:
            job.deadline = None
            if job.state is JobState.WAITING:
                self._unwait(job, now, out)
                self._wait_expired(job, now, out)
            elif job.state is JobState.RESERVING:
                job.expired = True  # a wake round is trying it: its answer decides
        return out

    # --- nodes ------------------------------------------------------------------------------

    def node_attached(self, node: NodePeer) -> None:
        self._nodes[node.node_id] = node
        self._node_jobs.setdefault(node.node_id, {})

    def node_gone(self, node_id: str, *, now: float) -> list[Action]:
        """The node is gone: its jobs are retried at once (contract §2 "Failures")."""
        out: list[Action] = []
        self._node_lost(node_id, now, out)
        return out

    def _node_lost(self, node_id: str, now: float, out: list[Action]) -> None:
        self._stats.node_left(node_id)
        self._nodes.pop(node_id, None)
        self._load.pop(node_id, None)
        for job in list(self._node_jobs.pop(node_id, {}).values()):
            self._fail_over(
                job, "node_offline", ErrorCode.NODE_UNAVAILABLE, out, now=now, cancel=False
            )

    # --- failures ---------------------------------------------------------------------------

    def _fail_over(
        self,
        job: Job,
        reason: str,
        code: ErrorCode,
        out: list[Action],
        *,
        now: float,
        cancel: bool,
    ) -> None:
        if self._steps:
            steps.step(job, "failover", detail=reason)
        self._end_attempt(job, out, cancel=reason if cancel else None)
        self._stats.failover(reason)
        if job.attempt >= self._cfg.max_attempts:
            self._finish_error(job, code, f"gave up after {job.attempt} attempts ({reason})", out)
            return
        job.wait_error = code
        job.wait_since = now
        self._place(job, now, out)

    def _end_attempt(self, job: Job, out: list[Action], *, cancel: str | None = None) -> None:
        """Stop the attempt's timer and give its slot back; with ``cancel`` (the reason), only
        once ``job_cancel`` is on its way to the node (``actions.Cancel``)."""
        if job.timer is not None:
            out.append(StopTimer(job.timer))
            job.timer = None
        node_id = job.node_id
        if node_id is None:
            return
        jobs = self._node_jobs.get(node_id)
        counted = jobs is not None and jobs.pop(job.job_id, None) is not None
        release = Release(node_id, job.holder(job.attempt), counted=counted, wake=True)
        if self._steps:
            steps.step(job, "released")
        node = self._nodes.get(node_id)
        if cancel is None or node is None:
            out.append(release)
        else:
            if self._steps:
                steps.step(job, "cancel", detail=cancel)
            out.append(Cancel(node, codec.job_cancel(job.job_id, job.trace_id, cancel), release))
        job.node_id = None

    # --- answers to sessions ----------------------------------------------------------------

    def _finish_error(
        self,
        job: Job,
        code: str,
        message: str,
        out: list[Action],
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
        self._stats.answered(kind, job.received_at)
        if self._steps:
            steps.step(job, "answered", detail=code)
        if self._spans is not None:
            self._spans.ended(job, code)
        self._finish(job, codec.error(code, message, info), out, cancel=cancel)

    def _finish(
        self, job: Job, frame: bytes, out: list[Action], *, cancel: str | None = None
    ) -> None:
        if job.state is JobState.DONE:
            return
        self._close_job(job, out, cancel=cancel)
        session = job.session
        session.line.answer(job.job_id, frame)
        peer = session.peer
        for ready in session.line.ready():
            out.append(Push(peer, ready))

    def _close_job(self, job: Job, out: list[Action], *, cancel: str | None = None) -> None:
        if job.state is JobState.DONE:
            return
        self._line.remove(job)
        if job.deadline is not None:
            out.append(StopTimer(job.deadline))
            job.deadline = None
        self._set_state(job, JobState.DONE)
        self._end_attempt(job, out, cancel=cancel)
        pending = job.session.pending
        if pending.get(job.utterance_index) is job:
            del pending[job.utterance_index]
        self.in_flight -= 1
        self.tenants.drop(job.session.tenant, job.session.priority)

    # --- shutdown and the store's health -------------------------------------------------------

    def close_intake(self) -> list[Action]:
        """Shutdown: jobs waiting for a slot are answered ``SESSION_CLOSED`` now (and so are
        any that would start waiting), so the grace period goes to jobs that are running."""
        out: list[Action] = []
        self.closing = True
        for job in list(self._line):
            self._finish_error(job, ErrorCode.SESSION_CLOSED, _SHUTTING_DOWN, out)
        return out

    def store_failed(self) -> None:
        if self.store_up:
            log.warning("reservation store unreachable")
        self.store_up = False

    def store_lost(self) -> list[Action]:
        """The store cannot be reached (its health probe failed): jobs waiting for a slot are
        refused now, as new ones are (``_wait``): none can be reserved until it is back, and a
        job waiting for a slot the instance's own jobs hold would otherwise wait without a
        word for its whole pending timeout."""
        self.store_failed()
        out: list[Action] = []
        for job in list(self._line):
            self._stats.store_down += 1
            self._finish_error(job, ErrorCode.SCHEDULER_DEPENDENCY_DOWN, _STORE_DOWN, out)
        return out

    def store_recovered(self, *, now: float) -> list[Action]:
        out: list[Action] = []
        if not self.store_up:
            log.info("reservation store reachable again")
            self.store_up = True
            self._wake(now, out)
        return out

    def leases(self) -> list[tuple[str, str]]:
        """Every ``(node_id, holder)`` this scheduler holds for a running job (to renew)."""
        return [
            (node_id, job.holder(job.attempt))
            for node_id, jobs in self._node_jobs.items()
            for job in jobs.values()
        ]

    def waiting(self) -> int:
        return len(self._line)
