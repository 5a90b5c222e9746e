"""``--ping-interval``: one sweeper finds dead peers for every open WebSocket.

Why not aiohttp's own ``heartbeat=``: it keeps a loop timer per connection and, for every
chunk any connection receives, schedules one more loop callback to push that timer back.  On
a busy scheduler that is one extra callback per utterance and per node frame, in front of the
frames waiting behind it, and an idle session pays for its timer in memory (issue 9).

Here a socket only notes when it last heard anything (``ServerSocket.last_seen``, written by
the channel's receive loop with the time it already reads for every frame).  Four times per
interval the sweeper visits each open socket:

- silent for ``interval`` s and no ping out: it is pinged;
- a ping out for ``interval / 2`` s and nothing heard since: it is dropped (the transport is
  aborted, so its receive loop ends and the usual "peer gone" path runs: a node's jobs fail
  over, a session's are cancelled, slots are released).

So a dead peer goes within 1.5 to 2 intervals of its last frame, a live one is never pinged
while it sends anything, and a peer that answers pings stays however long it is quiet.  A sweep
walks the sockets in slices and lets the loop run between them, so 10,000 sessions never stall
dispatch for more than one slice (a few hundred µs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from switchboard.server import eager
from switchboard.server.sockets import ServerSocket

log = logging.getLogger("switchboard.server")

SLICE: Final = 256  # sockets visited per loop iteration (≈0.1 ms)
VISITS_PER_INTERVAL: Final = 4
_WRITE_ERRORS: Final = (ConnectionError, RuntimeError, OSError)


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # a ping that could not go out: the drop will follow


class PingSweeper:
    """Pings silent sockets and drops those that stay silent (module docstring)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pong_timeout = interval / 2
        self._sockets: set[ServerSocket] = set()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sockets)

    def watch(self, ws: ServerSocket) -> None:
        """From the first frame on, until :meth:`forget`."""
        ws.last_seen = time.perf_counter()
        ws.pinged_at = 0.0
        self._sockets.add(ws)

    def forget(self, ws: ServerSocket) -> None:
        self._sockets.discard(ws)

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="ping-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        period = self.interval / VISITS_PER_INTERVAL
        while True:
            await asyncio.sleep(period)
            await self.sweep()

    async def sweep(self) -> None:
        """Visit every socket once, a slice per loop iteration."""
        sockets = list(self._sockets)
        for first in range(0, len(sockets), SLICE):
            if first:
                await asyncio.sleep(0)  # frames waiting behind the sweep go first
            now = time.perf_counter()
            for ws in sockets[first : first + SLICE]:
                self._visit(ws, now)

    def _visit(self, ws: ServerSocket, now: float) -> None:
        pinged_at = ws.pinged_at
        if pinged_at:
            if ws.last_seen >= pinged_at:
                ws.pinged_at = 0.0  # heard from since the ping: alive
            elif now - pinged_at >= self.pong_timeout:
                self._drop(ws)
            return
        if now - ws.last_seen >= self.interval and not ws.closed:
            ws.pinged_at = now
            try:
                rest = eager.start(ws.ping())
            except _WRITE_ERRORS:
                return  # already broken: the next visit drops it
            if rest is not None:
                rest.add_done_callback(_ignore_outcome)

    def _drop(self, ws: ServerSocket) -> None:
        log.info("dropping a WebSocket that answered no ping within %g s", self.pong_timeout)
        self._sockets.discard(ws)
        ws.abort()
