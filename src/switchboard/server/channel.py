"""What both WebSocket channels share: opening, the first frame, refusals, bad frames."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aiohttp import WSMsgType, web

from switchboard.config import Settings
from switchboard.errors import ProtocolError
from switchboard.protocol import codec
from switchboard.protocol.codes import CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY_VIOLATION, ErrorCode
from switchboard.server.connections import send
from switchboard.server.scheduler import SCHEDULER, Scheduler

Conn = TypeVar("Conn")
_BINARY_REFUSED = codec.error(
    ErrorCode.INVALID_MESSAGE, "binary frames are not part of the contract"
)


class Channel(Generic[Conn]):
    """One WebSocket channel: how its first frame opens a peer, how later frames are handled,
    and what happens when the peer is gone.  ``handle`` is the part both channels share."""

    def __init__(
        self,
        *,
        open_peer: Callable[[Scheduler, web.WebSocketResponse, bytes], Awaitable[Conn | None]],
        on_text: Callable[[Scheduler, Conn, bytes, float], Awaitable[bool]],
        reply: Callable[[Conn, bytes], Awaitable[None]],
        gone: Callable[[Scheduler, Conn], Awaitable[None]],
    ) -> None:
        self._open = open_peer
        self._on_text = on_text
        self._reply = reply  # the peer's own outgoing path, so replies keep their order
        self._gone = gone

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sched = request.app[SCHEDULER]
        ws = await open_socket(request, sched.settings)
        frame = await first_frame(ws, sched.settings.handshake_timeout)
        if frame is None:
            return ws
        conn = await self._open(sched, ws, frame)
        if conn is None:
            return ws
        try:
            await self._serve(sched, ws, conn)
        finally:
            await self._gone(sched, conn)
        return ws

    async def _serve(self, sched: Scheduler, ws: web.WebSocketResponse, conn: Conn) -> None:
        async for message in ws:
            received = time.perf_counter()  # "read off the socket" for the latency metric
            if message.type is WSMsgType.TEXT:
                if await self._on_text(sched, conn, message.data, received):
                    return
            elif message.type is WSMsgType.BINARY:
                await self._reply(conn, _BINARY_REFUSED)
            elif message.type is WSMsgType.ERROR:
                return


async def open_socket(request: web.Request, settings: Settings) -> web.WebSocketResponse:
    # Compression off: permessage-deflate costs ~4x memory per connection (issue 2 §8).
    # decode_text=False hands us bytes, which msgspec decodes without an extra str copy.
    ws = web.WebSocketResponse(
        compress=False,
        max_msg_size=settings.max_frame_bytes,
        decode_text=False,
        autoping=True,
    )
    await ws.prepare(request)
    return ws


async def refuse(ws: web.WebSocketResponse, code: str, message: str) -> None:
    """A bad first frame or a wrong token: the error, then close 1008 (contract §3)."""
    await send(ws, codec.error(code, message))
    with contextlib.suppress(ConnectionError, RuntimeError, OSError):
        await ws.close(code=CLOSE_POLICY_VIOLATION)


async def first_frame(ws: web.WebSocketResponse, limit_s: float) -> bytes | None:
    """The first text frame, or ``None`` after refusing the connection."""
    try:
        async with asyncio.timeout(limit_s):
            message = await ws.receive()
    except TimeoutError:
        await refuse(ws, ErrorCode.UNAUTHORIZED, "no handshake frame in time")
        return None
    if message.type is WSMsgType.TEXT:
        data: bytes = message.data
        return data
    if message.type is WSMsgType.ERROR:
        await too_big_or_broken(ws)
        return None
    if message.type is WSMsgType.BINARY:
        await refuse(ws, ErrorCode.INVALID_MESSAGE, "binary frames are not part of the contract")
    return None


async def too_big_or_broken(ws: web.WebSocketResponse) -> None:
    """aiohttp reports an oversized frame as an ERROR message and closes with 1009."""
    exc = ws.exception()
    if ws.close_code == CLOSE_MESSAGE_TOO_BIG or "too big" in str(exc).lower():
        with contextlib.suppress(ConnectionError, RuntimeError, OSError):
            await ws.close(code=CLOSE_MESSAGE_TOO_BIG)


def bad_frame_error(exc: ProtocolError, frame: bytes) -> bytes:
    """The ``error`` for a bad frame; the connection lives on (contract §3)."""
    details: dict[str, object] = dict(exc.details)
    index = codec.peek_utterance_index(frame)
    if index is not None:
        details["utterance_index"] = index
    return codec.error(exc.code, exc.message, details)
