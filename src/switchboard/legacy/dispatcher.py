"""``LegacyDriver``: the old dispatch path, holding the global lock across the reservation.

The old selection (``selection.rs::select_node_with_types_excluding_with_breakdown``) took
``nodes.read()`` and kept it through the choice of a node; the reservation followed.  This
model holds the read side of the global lock around one whole placement attempt: the snapshot
read, the session's decision, the choice of candidates, the store's ``try_reserve`` round trip,
and the write of ``job_assign`` (one socket write, which does not suspend unless the node's
socket is backed up).  With the in-process store all of that happens inside ``accept``; with
Redis the reservation's round trip and what follows it run under the lock in ``_locked``.

The steps inside are Switchboard's own (the dispatch core), not the old O(n) scan of every
node with an ``await`` per skipped node: in Python that scan costs ~1.5 ms per dispatch at 200
nodes (tens of microseconds in the Rust original), which would turn the comparison into a
contest of interpreter speed instead of one of designs.  So only the locking differs.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from switchboard.dispatch.actions import Action, Reserve, ReserveMany
from switchboard.dispatch.driver import DispatchDriver
from switchboard.dispatch.jobs import Session
from switchboard.legacy.rwlock import FairRWLock
from switchboard.protocol.messages import Utterance

Then = Callable[[Sequence[Any] | None, BaseException | None], None]


class LegacyDriver(DispatchDriver):
    global_lock: FairRWLock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The seed's driver runs no task of its own; this model waits for the lock in one.
        self._locking: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        await super().stop()
        if self._locking:
            await asyncio.gather(*self._locking, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._locking.add(task)
        task.add_done_callback(self._locking.discard)

    async def accept(self, session: Session, msg: Utterance, frame: bytes, received: float) -> None:
        async with self.global_lock.read():
            await super().accept(session, msg, frame, received)

    def _reserve(self, action: Reserve, queue: deque[Action]) -> None:
        if self._inline is not None:  # inside accept(), under the lock already
            super()._reserve(action, queue)
            return
        requests = [(action.candidates, action.holder)]
        self._overload.store_owed += 1  # the callbacks count it back down
        self._spawn(self._locked(requests, functools.partial(self._reserved, action)))

    def _reserve_round(self, action: ReserveMany, queue: deque[Action]) -> None:
        if self._inline is not None:
            super()._reserve_round(action, queue)
            return
        requests = [(r.candidates, r.holder) for r in action.items]
        self._overload.store_owed += len(requests)
        self._spawn(self._locked(requests, functools.partial(self._round_reserved, len(requests))))

    async def _locked(self, requests: list[Any], then: Then) -> None:
        """The reservation's round trip and the ``job_assign`` after it, under the lock."""
        async with self.global_lock.read():
            outcome: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
            self._store.reserve_soon(
                requests,
                lease_s=self._lease,
                done=lambda results, error: outcome.set_result((results, error)),
            )
            results, error = await outcome
            then(results, error)
