"""``FairRWLock``: an asyncio read/write lock with the fairness of ``tokio::sync::RwLock``.

The old scheduler guarded its node map with ``Arc<tokio::sync::RwLock<HashMap<..>>>``.  Tokio's
lock is fair: requests are served in arrival order, so once a writer waits, readers that arrive
after it wait too (no writer starvation).  That is what turns one slow reader into a convoy: a
heartbeat's write waits for every reader in flight, and every dispatch arriving meanwhile waits
for that write.  ``asyncio`` has no such lock, so the model needs its own.

An uncontended acquisition does not suspend (like ``asyncio.Lock``), so the lock costs nothing
on paths that never await while holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class FairRWLock:
    __slots__ = ("_queue", "_readers", "_writer", "waited_s")

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        # (wants_write, future) in arrival order; a future is done once granted or cancelled.
        self._queue: deque[tuple[bool, asyncio.Future[None]]] = deque()
        self.waited_s = 0.0  # total time requests spent queued (for the benchmark's report)

    @property
    def readers(self) -> int:
        return self._readers

    @property
    def writing(self) -> bool:
        return self._writer

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        if self._writer or self._queue:
            await self._wait(wants_write=False)
        else:
            self._readers += 1
        try:
            yield
        finally:
            self._readers -= 1
            self._grant()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        if self._writer or self._readers or self._queue:
            await self._wait(wants_write=True)
        else:
            self._writer = True
        try:
            yield
        finally:
            self._writer = False
            self._grant()

    async def _wait(self, *, wants_write: bool) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((wants_write, future))
        start = loop.time()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted, then cancelled before it could run: hand the grant back.
                if wants_write:
                    self._writer = False
                else:
                    self._readers -= 1
            self._grant()
            raise
        finally:
            self.waited_s += loop.time() - start

    def _grant(self) -> None:
        """Serve the queue head first: a writer when the lock is free, else every reader up to
        the next writer."""
        while self._queue:
            wants_write, future = self._queue[0]
            if future.done():  # cancelled while waiting
                self._queue.popleft()
                continue
            if wants_write:
                if self._writer or self._readers:
                    return
                self._queue.popleft()
                self._writer = True
                future.set_result(None)
                return
            if self._writer:
                return
            self._queue.popleft()
            self._readers += 1
            future.set_result(None)
