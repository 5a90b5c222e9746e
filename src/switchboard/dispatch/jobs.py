"""A job (one accepted utterance, across its attempts, until its one answer) and its session.

Plain values owned by the dispatch core (``core.py``): nothing here performs I/O or knows an
event loop.  ``Job.state`` is written in one place only, ``DispatchCore._set_state``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from switchboard.dispatch.tenants import Tenant
from switchboard.protocol.codec import RawFields
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.cuts import Cut
from switchboard.protocol.profile import SessionProfile
from switchboard.sessions.groups import GroupState
from switchboard.sessions.manager import SessionEntry
from switchboard.sessions.ordering import AnswerLine


class JobState(enum.Enum):
    PLACING = "placing"  # being decided (session decision, candidates): never seen between events
    RESERVING = "reserving"  # a reservation for its next attempt is with the store
    WAITING = "waiting"  # no free slot: in the waiting line, woken by a release or a snapshot
    ASSIGNED = "assigned"  # job_assign handed to the driver for the current attempt
    DONE = "done"  # answered, or dropped with its session


class TimerKind(enum.Enum):
    JOB = "job"  # the current attempt's --job-timeout
    WAIT = "wait"  # --pending-timeout while the job waits for a slot


class SessionPeer(Protocol):
    """Where a session's frames go (the server's connection); the driver calls it."""

    def push(self, frame: bytes) -> None:
        """Queue a frame for the client without waiting (a slow client must not block us)."""


class NodePeer(Protocol):
    """A connected node as the driver sees it."""

    node_id: str

    def write(self, frame: bytes) -> bool:
        """Write a frame without waiting, in order with earlier writes; ``False`` if the
        connection is gone."""


@dataclass(slots=True, eq=False)
class Session:
    """Dispatch's record of one open session: the one owner of its pending utterances and of
    the order its answers leave in (contract §2 "Exactly one answer, in order").  The
    session's decision state (bound pair, preferred pool) is ``entry``, in the session domain.
    """

    session_id: str
    entry: SessionEntry
    peer: SessionPeer
    profile: SessionProfile  # what session_init said, for every job (lingua-parity §1)
    tenant: Tenant  # who it schedules as in the waiting line (tenants.py), shared
    priority: int = 0  # its priority class, higher first (tenants.py)
    pending: dict[int, Job] = field(default_factory=dict)  # utterance_index → unanswered job
    line: AnswerLine = field(default_factory=AnswerLine)
    # One index sequence for utterance frames and streamed cuts (lingua-parity §3
    # "Answers"): above every index accepted so far, so a streamed job never takes an index
    # that a pending utterance holds.
    next_index: int = 0
    groups: GroupState | None = None  # made at the first result with text (§4)
    # New utterances may be refused OVERLOADED (overload.py); not a room's lane, whose
    # speaker's utterance is checked once for all its languages (server/room_fanout.py).
    sheddable: bool = True


class Cancellable(Protocol):
    """A timer's handle on the loop (asyncio's and uvloop's ``TimerHandle`` alike)."""

    def cancel(self) -> None: ...


@dataclass(slots=True, eq=False)
class Timer:
    """A timer the core asked for.  The driver hangs its loop handle on ``handle``; the core
    knows a timer is current by identity (``job.timer is timer``), so a late one is ignored."""

    kind: TimerKind
    job: Job
    handle: Cancellable | None = None


@dataclass(slots=True, eq=False)
class Job:
    job_id: str
    session: Session
    utterance_index: int
    src_lang: str  # normalised (contract §2 "Binding")
    tgt_lang: str
    services: frozenset[str]
    pipeline: dict[str, bool]
    raw: RawFields
    trace_id: str
    received_at: float  # perf_counter() when the frame was read off the socket
    cut: Cut | None = None  # how the utterance was cut, for job_assign's flags (parity §2)
    seq: int = 0  # acceptance order: the waiting line is kept in it
    state: JobState = JobState.PLACING
    attempt: int = 0  # the attempt that holds (or last held) a node
    node_id: str | None = None
    tried: set[str] = field(default_factory=set)
    timer: Timer | None = None  # the current attempt's job timeout
    deadline: Timer | None = None  # the pending timeout while waiting
    expired: bool = False  # the pending timeout passed while a wake round tried it
    wait_since: float = 0.0  # start of the current placement (acceptance or failover)
    queued_at: float = 0.0  # when it last joined the waiting line
    assigned_at: float = 0.0  # when the current attempt's job_assign was made (node job time)
    wait_error: ErrorCode = ErrorCode.NO_AVAILABLE_NODE

    def holder(self, attempt: int) -> str:
        """The reservation holder of one attempt (reservations are idempotent per holder)."""
        return f"{self.job_id}:{attempt}"

    @property
    def key(self) -> tuple[str, str, frozenset[str]]:
        """Jobs with equal keys compete for the same nodes: FIFO among them."""
        return (self.src_lang, self.tgt_lang, self.services)
