"""``LegacyDispatcher``: the old dispatch path, holding the global lock across the reservation.

The old selection (``selection.rs::select_node_with_types_excluding_with_breakdown``) took
``nodes.read()`` and kept it through the choice of a node; the reservation followed.  This
model holds the read side of the global lock around one whole placement attempt: the snapshot
read, the session's decision, the choice of candidates, the store's ``try_reserve`` round trip,
and the write of ``job_assign`` (one socket write, which does not suspend unless the node's
socket is backed up).

The steps inside are Switchboard's own (the base class), not the old O(n) scan of every node
with an ``await`` per skipped node: in Python that scan costs ~1.5 ms per dispatch at 200 nodes
(tens of microseconds in the Rust original), which would turn the comparison into a contest of
interpreter speed instead of one of designs.  So only the locking differs.
"""

from __future__ import annotations

from typing import Any

from switchboard.dispatch.dispatcher import Dispatcher, Placed
from switchboard.dispatch.jobs import Job
from switchboard.legacy.rwlock import FairRWLock
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.sessions.manager import SessionManager
from switchboard.store.base import ReservationStore


class LegacyDispatcher(Dispatcher):
    def __init__(
        self,
        holder: SnapshotHolder,
        sessions: SessionManager,
        store: ReservationStore,
        *,
        global_lock: FairRWLock,
        **kwargs: Any,
    ) -> None:
        super().__init__(holder, sessions, store, **kwargs)
        self.global_lock = global_lock

    async def _try_place(self, job: Job) -> Placed:
        async with self.global_lock.read():
            return await super()._try_place(job)
