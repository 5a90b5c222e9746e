"""The ping sweeper (server/liveness.py) on sockets it is handed: who is pinged, who is
dropped, and that a sweep of many sockets lets the loop run between its slices."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from switchboard.server import liveness
from switchboard.server.liveness import PingSweeper
from switchboard.server.sockets import ServerSocket


class Socket:
    """What the sweeper touches of a ``ServerSocket``."""

    def __init__(self) -> None:
        self.last_seen = 0.0
        self.pinged_at = 0.0
        self.closed = False
        self.pings = 0
        self.aborted = False

    async def ping(self, message: bytes = b"") -> None:
        self.pings += 1

    def abort(self) -> None:
        self.aborted = True


def _watch(sweeper: PingSweeper, sock: Socket) -> Socket:
    sweeper.watch(cast(ServerSocket, sock))
    return sock


async def test_a_silent_socket_is_pinged_then_dropped_and_a_talking_one_is_left_alone() -> None:
    sweeper = PingSweeper(interval=10.0)
    silent = _watch(sweeper, Socket())
    talking = _watch(sweeper, Socket())
    answering = _watch(sweeper, Socket())
    start = time.perf_counter()
    for sock in (silent, talking, answering):
        sock.last_seen = start - 11.0  # silent for more than the interval

    talking.last_seen = start  # a frame just arrived
    sweeper._visit(cast(ServerSocket, talking), start)
    assert talking.pings == 0 and talking.pinged_at == 0.0

    for sock in (silent, answering):
        sweeper._visit(cast(ServerSocket, sock), start)
        assert sock.pings == 1 and sock.pinged_at == start

    # Within the pong timeout nothing happens; a second ping never goes out meanwhile.
    sweeper._visit(cast(ServerSocket, silent), start + 4.0)
    assert silent.pings == 1 and not silent.aborted

    answering.last_seen = start + 1.0  # its pong arrived
    sweeper._visit(cast(ServerSocket, answering), start + 6.0)
    assert answering.pinged_at == 0.0 and not answering.aborted

    sweeper._visit(cast(ServerSocket, silent), start + 6.0)
    assert silent.aborted
    assert len(sweeper) == 2  # the dropped socket is no longer watched


async def test_a_sweep_of_many_sockets_yields_to_the_loop_between_slices() -> None:
    sweeper = PingSweeper(interval=10.0)
    count = liveness.SLICE * 3 + 1
    socks = [_watch(sweeper, Socket()) for _ in range(count)]
    visited_when_other_ran: list[int] = []

    async def other() -> None:
        for _ in range(3):
            visited_when_other_ran.append(sum(s.pings for s in socks))
            await asyncio.sleep(0)

    for sock in socks:
        sock.last_seen = time.perf_counter() - 20.0
    sweep = asyncio.ensure_future(sweeper.sweep())
    helper: asyncio.Future[Any] = asyncio.ensure_future(other())
    await asyncio.gather(sweep, helper)
    assert sum(s.pings for s in socks) == count  # every socket visited once
    # The other task ran while the sweep was part-way through, not only before or after it.
    assert any(0 < seen < count for seen in visited_when_other_ran), visited_when_other_ran


async def test_pings_off_starts_nothing() -> None:
    sweeper = PingSweeper(interval=0.0)
    sweeper.start()
    assert sweeper._task is None
    await sweeper.stop()
