"""What the dispatch core asks its driver to do (``core.py`` returns lists of these).

The core decides; the driver performs, in list order, and reports back as events:

===============  ========================================  ==================================
action           the driver                                then tells the core
===============  ========================================  ==================================
``Reserve``      ``store.try_reserve`` (one job)           ``reserved`` / ``reserve_failed``
``ReserveMany``  one store call for a whole wake round     ``round_reserved`` / ``round_failed``
``Assign``       writes ``job_assign`` to the node         ``assign_failed`` if it broke
``Cancel``       writes ``job_cancel``, *then* releases    (as ``Release``)
``Release``      ``store.release``                         ``released``
``Push``         queues a frame for the session            —
``StartTimer``   ``call_later(delay)``                     ``timer_fired``
``StopTimer``    cancels it                                —
===============  ========================================  ==================================

NamedTuples: the cheapest immutable records CPython makes (a job creates three or four).
"""

from __future__ import annotations

from typing import NamedTuple

from switchboard.dispatch.jobs import Job, NodePeer, SessionPeer, Timer
from switchboard.store.base import Candidate


class Reserve(NamedTuple):
    job: Job
    attempt: int
    candidates: list[Candidate]

    @property
    def holder(self) -> str:
        return self.job.holder(self.attempt)


class ReserveMany(NamedTuple):
    """One wake round: the store runs them in order, atomically (one script on Redis), so
    the line's order holds against releases arriving meanwhile."""

    items: list[Reserve]


class Assign(NamedTuple):
    node: NodePeer
    frame: bytes
    job: Job
    attempt: int


class Release(NamedTuple):
    node_id: str
    holder: str
    counted: bool  # the slot is in the core's own load count (drops once the store confirms)
    wake: bool  # the slot may go to a waiting job (not so for a node that has left)


class Cancel(NamedTuple):
    """``job_cancel`` first, then the release: a slot freed first could go to the next job,
    whose ``job_assign`` would then reach the node before the cancel (over capacity)."""

    node: NodePeer
    frame: bytes
    release: Release


class Push(NamedTuple):
    peer: SessionPeer
    frame: bytes


class StartTimer(NamedTuple):
    timer: Timer
    delay: float


class StopTimer(NamedTuple):
    timer: Timer


Action = Reserve | ReserveMany | Assign | Release | Cancel | Push | StartTimer | StopTimer
