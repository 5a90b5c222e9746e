"""A slow consumer: a session that keeps sending utterances but stops reading its socket.

aiohttp's client reads ahead into memory, so a session that merely stops calling ``receive``
would still drain the kernel's buffers.  This one speaks RFC 6455 on a bare TCP socket with a
small receive buffer and does not read at all, so the scheduler's writes really block: its
answers pile up in the session's outgoing queue until ``--session-outbox-limit``, when the
scheduler must end the session (``SESSION_CLOSED``, then the close) instead of buffering on.

Once the scheduler has let the session go (it disappears from ``/api/v1/stats``), the consumer
reads everything that reached it, to see whether it was told ``SESSION_CLOSED`` and closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from switchboard.bench.wsclient import OP_CLOSE, OP_TEXT, client_frame, read_frame
from switchboard.chaos.ledger import Ledger
from switchboard.chaos.sessions import (
    SERVER_ENDED,
    Clock,
    file_answer,
    init_message,
    utterance_message,
)

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_RCVBUF: Final = 4096


@dataclass(slots=True)
class SlowOutcome:
    sent: int = 0
    frames_read: int = 0
    told_session_closed: bool = False
    close_code: int | None = None
    ended_by_server: bool = False  # the scheduler dropped it from its sessions
    socket_closed: bool = False  # and the socket really ended
    seconds_to_close: float | None = None  # from the server letting go to the socket's end
    notes: list[str] = field(default_factory=list)


class SlowConsumer:
    """Sends ``rate`` utterances a second and reads nothing until told to."""

    def __init__(
        self, host: str, port: int, ledger: Ledger, clock: Clock, *, source: str | None = None
    ) -> None:
        self.host, self.port = host, port
        self.source = source  # local address to connect from (any of 127.0.0.0/8 on Linux)
        self.ledger = ledger
        self.clock = clock
        self.outcome = SlowOutcome()
        self.line: int | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.session_id = ""

    async def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connect(), so the window it advertises stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        if self.source is not None:
            sock.bind((self.source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        # A small stream limit too: asyncio stops reading the socket once it holds this much.
        self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=_RCVBUF)
        key = base64.b64encode(os.urandom(16)).decode()
        self._writer.write(
            (
                f"GET /ws/session HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await self._reader.readuntil(b"\r\n\r\n")
        self._writer.write(client_frame(_encode(init_message("en", "de"))))
        _, ack = await self._read_frame()
        self.session_id = str(_decode(ack)["session_id"])
        self.line = self.ledger.open_line()

    async def flood(self, *, rate: float, until: asyncio.Event) -> None:
        """Send utterances at ``rate`` per second until ``until`` is set, reading nothing."""
        assert self._writer is not None and self.line is not None
        index = 0
        while not until.is_set() and not self._writer.is_closing():
            message = utterance_message(self.session_id, index, "en", "de")
            self.ledger.sent(self.line, index, self.clock())
            self._writer.write(client_frame(_encode(message)))
            self.outcome.sent += 1
            index += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(until.wait(), 1 / rate)

    async def read_all(self, *, within: float) -> None:
        """Read until the scheduler closes the socket; file every answer."""
        assert self.line is not None
        started = self.clock()
        try:
            async with asyncio.timeout(within):
                while True:
                    opcode, payload = await self._read_frame()
                    if opcode == OP_CLOSE:
                        self.outcome.close_code = int.from_bytes(payload[:2], "big") or None
                        break
                    if opcode == OP_TEXT:
                        self._file(payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # cut off without a close frame
        except TimeoutError:
            self.outcome.notes.append(f"socket still open {within:g}s after reading resumed")
            return
        self.outcome.socket_closed = True
        self.outcome.seconds_to_close = self.clock() - started
        reason = SERVER_ENDED if self.outcome.told_session_closed else "disconnected"
        self.ledger.end_line(self.line, reason, self.clock())

    def _file(self, payload: bytes) -> None:
        assert self.line is not None
        self.outcome.frames_read += 1
        code = file_answer(self.ledger, self.line, _decode(payload), self.clock())
        if code == SERVER_ENDED:
            self.outcome.told_session_closed = True

    async def _read_frame(self) -> tuple[int, bytes]:
        assert self._reader is not None
        return await read_frame(self._reader)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
