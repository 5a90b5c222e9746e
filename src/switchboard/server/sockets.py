"""The server side of one WebSocket: aiohttp's, plus the two things contract §3 needs of it.

1. ``PAYLOAD_TOO_LARGE`` before the 1009 close.  aiohttp refuses a frame above
   ``max_msg_size`` as soon as it reads the frame's header (nothing of the payload is
   buffered), and closes the socket with 1009 *inside* ``receive()``, before our handler sees
   anything.  The close goes through :meth:`close`, so that is where the ``error`` is written,
   just ahead of the close frame.
2. Dead peers are found (``liveness.py``).  ``autoping`` is off, so pings and pongs reach the
   channel's receive loop like any frame: it answers a ping, and every frame it reads, pong
   included, stamps :attr:`ServerSocket.last_seen`.  One sweeper pings a socket silent for
   ``--ping-interval`` and drops one that stays silent half an interval more.  A half-open TCP
   connection (the peer's machine lost power, a NAT forgot the flow) sends no FIN, so without
   pings nothing would ever end it.
3. A close that cannot hang.  Writing waits while the peer's TCP window is shut, so a peer that
   stops reading (a slow consumer, a frozen process) would hold a close — and whoever awaits
   it — forever.  :meth:`close_within` gives the peer ``grace`` seconds to take its last frames
   and answer the close, then aborts the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from switchboard.config import Settings
from switchboard.protocol import codec
from switchboard.protocol.codes import CLOSE_MESSAGE_TOO_BIG, ErrorCode
from switchboard.server import access, eager

_SEND_ERRORS: Final = (ConnectionError, RuntimeError, OSError)
# aiohttp refuses a frame whose length is >= max_msg_size (reader: ``to_read >= max - partial``),
# so the largest accepted frame is max_msg_size - 1; §6 says --max-frame-bytes is the largest
# frame *accepted*.
_AIOHTTP_LIMIT_SLACK: Final = 1


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # a pong that could not go out: the socket's close says why


class ServerSocket(web.WebSocketResponse):
    """``WebSocketResponse`` that says why it closes with 1009, and can be cut off."""

    def __init__(
        self,
        *,
        max_frame_bytes: int,
        close_timeout: float,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        # Compression off: permessage-deflate costs ~4x memory per connection (issue 2 §8).
        # decode_text=False hands us bytes, which msgspec decodes without an extra str copy.
        super().__init__(
            compress=False,
            max_msg_size=max_frame_bytes + _AIOHTTP_LIMIT_SLACK,
            decode_text=False,
            # Pings and pongs come to the channel (docstring, point 2); no aiohttp heartbeat.
            autoping=False,
            timeout=close_timeout,
        )
        self._max_frame_bytes = max_frame_bytes  # for the PAYLOAD_TOO_LARGE error, made if needed
        self._transport: asyncio.Transport | None = None
        self.close_timeout = close_timeout
        # Liveness (liveness.py), perf_counter() times: the last frame of any kind read off the
        # socket, and when the ping now unanswered went out (0.0: none out).
        self.last_seen = 0.0
        self.pinged_at = 0.0
        self.on_refused = on_refused  # counts refusals by code (channel.refuse)

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter:
        self._transport = request.transport
        return await super().prepare(request)

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if code == CLOSE_MESSAGE_TOO_BIG and not self.closed:
            too_large = codec.error(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"frame larger than --max-frame-bytes ({self._max_frame_bytes} bytes)",
                {"max_frame_bytes": self._max_frame_bytes},
            )
            with contextlib.suppress(*_SEND_ERRORS):
                await self.send_frame(too_large, WSMsgType.TEXT)
        return await super().close(code=code, message=message, drain=drain)

    async def close_within(
        self, grace: float, *, code: int, message: bytes = b"", farewell: bytes | None = None
    ) -> None:
        """Send ``farewell`` (if any), then close with ``code``; a peer that does not take
        both within ``grace`` s is cut off."""
        try:
            async with asyncio.timeout(grace):
                if farewell is not None and not self.closed:
                    await self.send_frame(farewell, WSMsgType.TEXT)
                await self.close(code=code, message=message)
        except TimeoutError:
            self.abort()
        except (*_SEND_ERRORS, asyncio.CancelledError):
            self.abort()
            raise

    def answer_ping(self, data: bytes) -> None:
        """Pong now, without waiting (``autoping`` is off: the channel calls this)."""
        if self.closed:
            return
        with contextlib.suppress(*_SEND_ERRORS):
            rest = eager.start(self.pong(data))
            if rest is not None:
                rest.add_done_callback(_ignore_outcome)

    def abort(self) -> None:
        """Drop the TCP connection now, unsent frames and all.  Even when the transport is
        closing already: aiohttp's ``close()``, cut short by our timeout, leaves it closing
        with its buffer unsent, which a peer that never reads would hold open for good."""
        if self._transport is not None:
            self._transport.abort()


async def open_socket(
    request: web.Request,
    settings: Settings,
    *,
    on_refused: Callable[[str], None] | None = None,
) -> ServerSocket:
    # The close handshake (our close frame, the peer's answer) may take as long as the
    # opening one: both are the peer's turn.
    ws = ServerSocket(
        max_frame_bytes=settings.max_frame_bytes,
        close_timeout=settings.handshake_timeout,
        on_refused=on_refused,
    )
    await ws.prepare(request)
    access.handshake(request)
    return ws


async def close_within(
    ws: web.WebSocketResponse,
    *,
    code: int,
    message: bytes = b"",
    grace: float | None = None,
    farewell: bytes | None = None,
) -> None:
    """:meth:`ServerSocket.close_within` for any socket (a plain one is closed as usual);
    ``grace`` defaults to the socket's close-handshake timeout."""
    if isinstance(ws, ServerSocket):
        wait = ws.close_timeout if grace is None else grace
        await ws.close_within(wait, code=code, message=message, farewell=farewell)
        return
    with contextlib.suppress(*_SEND_ERRORS):
        if farewell is not None:
            await ws.send_frame(farewell, WSMsgType.TEXT)
        await ws.close(code=code, message=message)
