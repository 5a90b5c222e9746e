"""``LegacyDriver``: the old dispatch path, holding the global lock across the reservation.

The old selection (``selection.rs::select_node_with_types_excluding_with_breakdown``) took
``nodes.read()`` and kept it through the choice of a node; the reservation followed.  This
model holds the read side of the global lock around one whole placement attempt: the snapshot
read, the session's decision, the choice of candidates, the store's ``try_reserve`` round trip,
and the write of ``job_assign`` (one socket write, which does not suspend unless the node's
socket is backed up).  With the in-process store all of that happens inside ``accept``; with
Redis the reservation and what follows it run in ``_reserve_remote``.

The steps inside are Switchboard's own (the dispatch core), not the old O(n) scan of every
node with an ``await`` per skipped node: in Python that scan costs ~1.5 ms per dispatch at 200
nodes (tens of microseconds in the Rust original), which would turn the comparison into a
contest of interpreter speed instead of one of designs.  So only the locking differs.
"""

from __future__ import annotations

from typing import Any

from switchboard.dispatch.actions import Reserve
from switchboard.dispatch.driver import DispatchDriver
from switchboard.dispatch.jobs import Session
from switchboard.legacy.rwlock import FairRWLock
from switchboard.protocol.messages import Utterance


class LegacyDriver(DispatchDriver):
    global_lock: FairRWLock

    async def accept(self, session: Session, msg: Utterance, frame: bytes, received: float) -> None:
        async with self.global_lock.read():
            await super().accept(session, msg, frame, received)

    async def _reserve_remote(self, action: Reserve) -> None:
        async with self.global_lock.read():
            await super()._reserve_remote(action)

    async def _reserve_round_remote(self, requests: list[Any]) -> None:
        async with self.global_lock.read():
            await super()._reserve_round_remote(requests)
