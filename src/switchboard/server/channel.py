"""What both WebSocket channels share: opening, the first frame, refusals, bad frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aiohttp import WSMsgType, web

from switchboard.config import Settings
from switchboard.errors import ProtocolError
from switchboard.protocol import codec
from switchboard.protocol.codes import CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY_VIOLATION, ErrorCode
from switchboard.server.connections import send
from switchboard.server.limits import FrameBudget
from switchboard.server.scheduler import SCHEDULER, Scheduler
from switchboard.server.sockets import ServerSocket, close_within, open_socket

log = logging.getLogger("switchboard.server")

Conn = TypeVar("Conn")
_BINARY_REFUSED = codec.error(
    ErrorCode.INVALID_MESSAGE, "binary frames are not part of the contract"
)
_CONTROL = (WSMsgType.PING, WSMsgType.PONG)
_INTERNAL = codec.error(ErrorCode.INTERNAL_ERROR, "internal error while handling the frame")


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
        # One coroutine for the socket's whole life, on purpose: every level of an await chain
        # is a frame that each idle connection keeps (~250 B apiece; the budget for an idle
        # session is 16 KiB).
        sched = request.app[SCHEDULER]
        # Counted from before the upgrade to the end of the handler (docs/security.md).
        address = request.remote or "unknown"
        admitted = sched.addresses.open(address)
        try:
            ws = await open_socket(
                request, sched.settings, on_refused=sched.metrics.dispatch.refused
            )
            frame = await (
                first_frame(ws, sched.settings.handshake_timeout)
                if admitted
                else _too_many_connections(ws, sched.settings)
            )
            if frame is None:
                return ws
            conn = await self._open(sched, ws, frame)
            if conn is None:
                return ws
            sched.pings.watch(ws)
            try:
                limited = sched.settings.max_frames_per_second > 0
                # Made at the first frame, full: an idle connection (most sessions, most of
                # the time) never holds one, and a bucket idle that long would be full anyway.
                budget: FrameBudget | None = None
                async for message in ws:
                    received = time.perf_counter()  # "read off the socket", for the latency
                    ws.last_seen = received  # any frame, a pong too: the peer lives
                    # Every frame is charged, good or bad, pings too: reading it is the cost.
                    if limited:
                        if budget is None:
                            budget = frame_budget(sched.settings, now=received)
                        if not budget.take(received):
                            await rate_limited(ws, sched.settings)
                            return ws
                    if message.type is WSMsgType.TEXT:
                        if await self._text(sched, conn, message.data, received):
                            return ws
                    elif message.type is WSMsgType.PING:
                        ws.answer_ping(message.data)
                    elif message.type is WSMsgType.BINARY:
                        await self._reply(conn, _BINARY_REFUSED)
                    elif message.type is WSMsgType.ERROR:
                        return ws
            finally:
                sched.pings.forget(ws)
                await self._gone(sched, conn)
            return ws
        finally:
            sched.addresses.close(address)

    async def _text(self, sched: Scheduler, conn: Conn, data: bytes, received: float) -> bool:
        # A bug in handling one frame costs that frame an INTERNAL_ERROR, not the connection
        # (and with it every pending utterance of a session, or every job of a node).
        try:
            return await self._on_text(sched, conn, data, received)
        except Exception:
            log.exception("handling a frame failed")
            await self._reply(conn, _INTERNAL)
            return False


async def _too_many_connections(ws: web.WebSocketResponse, settings: Settings) -> None:
    limit = settings.max_connections_per_address
    await refuse(
        ws,
        ErrorCode.TOO_MANY_CONNECTIONS,
        f"too many connections from this address (limit {limit})",
    )


async def refuse(ws: web.WebSocketResponse, code: str, message: str) -> None:
    """A bad first frame, a wrong token or a limit: the error, then close 1008 (contract §3).

    The close is bounded: a peer that reads nothing must not keep its handler alive.
    """
    _count_refusal(ws, code)
    await send(ws, codec.error(code, message))
    await close_within(ws, code=CLOSE_POLICY_VIOLATION)


def _count_refusal(ws: web.WebSocketResponse, code: str) -> None:
    if isinstance(ws, ServerSocket) and ws.on_refused is not None:
        ws.on_refused(code)


def frame_budget(settings: Settings, *, now: float) -> FrameBudget:
    """A connection's ``--max-frames-per-second`` / ``--frame-burst`` bucket, full at ``now``."""
    return FrameBudget(settings.max_frames_per_second, settings.frame_burst, now=now)


async def rate_limited(ws: web.WebSocketResponse, settings: Settings) -> None:
    """A peer over its frame rate: ``RATE_LIMITED``, then close 1008 (docs/protocol.md §3).

    The connection is cut rather than the frame dropped: a peer this far above any real node's
    or client's rate is broken or hostile, and each frame it sends costs the loop a read and a
    decode that other connections are waiting for.  Returning from the receive loop runs the
    usual "peer gone" path (jobs failed over or cancelled, slots released).
    """
    limit, burst = settings.max_frames_per_second, settings.frame_burst
    farewell = codec.error(
        ErrorCode.RATE_LIMITED,
        f"more than {limit} frames per second (burst {burst}): connection closed",
        {"max_frames_per_second": limit, "frame_burst": burst},
    )
    log.warning("closing a connection over %d frames/s (burst %d)", limit, burst)
    _count_refusal(ws, ErrorCode.RATE_LIMITED)
    with contextlib.suppress(ConnectionError, RuntimeError, OSError):  # gone already: done
        await close_within(ws, code=CLOSE_POLICY_VIOLATION, farewell=farewell)


async def first_frame(
    ws: web.WebSocketResponse, limit_s: float, *, waited: float | None = None
) -> bytes | None:
    """The first text frame, or ``None`` after refusing the connection (``waited``: the
    handshake limit the refusal names, when ``limit_s`` is what is left of it)."""
    try:
        async with asyncio.timeout(limit_s):
            message = await ws.receive()
            while message.type in _CONTROL:  # autoping is off (sockets.py): ours to answer
                if message.type is WSMsgType.PING and isinstance(ws, ServerSocket):
                    ws.answer_ping(message.data)
                message = await ws.receive()
    except TimeoutError:
        # Its own code (not UNAUTHORIZED): nothing says the peer's credentials are wrong, and
        # a node agent must retry after it rather than give up (docs/protocol.md §3).
        await refuse(
            ws,
            ErrorCode.HANDSHAKE_TIMEOUT,
            f"no node_register or session_init within {waited or limit_s:g} s",
        )
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
