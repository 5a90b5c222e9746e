"""A job: one accepted utterance, across its attempts, until its one answer."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Protocol

from switchboard.protocol.codec import RawFields
from switchboard.protocol.codes import ErrorCode
from switchboard.sessions.manager import SessionEntry
from switchboard.sessions.ordering import AnswerLine


class JobState(enum.Enum):
    PLACING = "placing"  # a placement attempt is under way (decide, reserve)
    WAITING = "waiting"  # no free slot: in the FIFO, woken by a released slot or a new snapshot
    ASSIGNED = "assigned"  # job_assign sent for the current attempt
    DONE = "done"  # answered, or dropped with its session


class SessionLink(Protocol):
    """What dispatch needs of a client session (implemented by the server)."""

    session_id: str
    entry: SessionEntry
    line: AnswerLine
    pending: dict[int, Job]  # utterance_index → job, while unanswered

    def push(self, frame: bytes) -> None:
        """Queue a frame for the client without waiting (a slow client must not block us)."""


class NodeLink(Protocol):
    """What dispatch needs of a connected node (implemented by the server)."""

    node_id: str

    async def send(self, frame: bytes) -> bool:
        """Write a frame; ``False`` if the connection is gone."""


@dataclass(slots=True, eq=False)
class Job:
    job_id: str
    session: SessionLink
    utterance_index: int
    src_lang: str  # normalised (contract §2 "Binding")
    tgt_lang: str
    services: frozenset[str]
    pipeline: dict[str, bool]
    raw: RawFields
    trace_id: str
    received_at: float  # perf_counter() when the frame was read off the socket
    seq: int = 0  # acceptance order: the waiting line is kept in it
    state: JobState = JobState.PLACING
    attempt: int = 0
    node_id: str | None = None
    tried: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    wait_deadline: asyncio.TimerHandle | None = None
    wait_since: float = 0.0  # start of the current placement (acceptance or failover)
    queued_at: float = 0.0  # when it last joined the waiting line
    wait_error: ErrorCode = ErrorCode.NO_AVAILABLE_NODE

    def holder(self, attempt: int) -> str:
        """The reservation holder of one attempt (reservations are idempotent per holder)."""
        return f"{self.job_id}:{attempt}"

    def wait_key(self) -> tuple[str, str, frozenset[str]]:
        """Jobs with equal keys compete for the same nodes: FIFO among them."""
        return (self.src_lang, self.tgt_lang, self.services)
