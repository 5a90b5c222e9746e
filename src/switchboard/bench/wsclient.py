"""A minimal WebSocket client (RFC 6455) for the load generator, on a bare ``asyncio.Protocol``.

Why not aiohttp's client: the generator must drive 1,000 sessions and 200 nodes — and hold
10,000 idle sessions for the memory figure — from one process, and it must not be the
bottleneck.  A protocol object per connection with a callback per message costs a few KiB and
a few microseconds per frame; an aiohttp ``ClientWebSocketResponse`` costs several times both.

Scope: text frames out, text/binary/close/ping in, unfragmented or fragmented.  Client frames
are masked with a zero key: the framing is valid (the server unmasks as usual, so its cost is
unchanged), and the generator saves a XOR pass over every payload.  The handshake response is
checked for status 101 only.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import cast

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_ZERO_MASK = b"\x00\x00\x00\x00"


class HandshakeFailed(ConnectionError):
    pass


def frame_header(opcode: int, length: int, mask: bytes = _ZERO_MASK) -> bytes:
    """FIN + opcode, the MASK bit and the length, then the masking key (zero by default)."""
    first = 0x80 | opcode
    if length < 126:
        return struct.pack("!BB", first, 0x80 | length) + mask
    if length < 1 << 16:
        return struct.pack("!BBH", first, 0x80 | 126, length) + mask
    return struct.pack("!BBQ", first, 0x80 | 127, length) + mask


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One client frame masked with a random key, as RFC 6455 §5.3 asks (for the tools that
    speak raw WebSocket to test the server, where the XOR pass costs nothing that matters)."""
    mask = os.urandom(4)
    return frame_header(opcode, len(payload), mask) + _apply_mask(payload, mask)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked (server) frame from a stream: ``(opcode, payload)``."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(size)


class WSClient(asyncio.Protocol):
    """One connection; ``on_message(payload)`` for each whole text or binary message and
    ``on_close()`` once when the connection ends, whoever ends it."""

    def __init__(
        self,
        host: str,
        path: str,
        on_message: Callable[[bytes], None],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._request = _handshake_request(host, path)
        self._on_message = on_message
        self._on_close = on_close
        self._buf = bytearray()
        self._fragments: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self.opened.done() and not self._read_handshake():
            return
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(f"connection lost: {exc}"))
        self._ended()

    # --- sending ----------------------------------------------------------------------------

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> bool:
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            return False
        transport.write(frame_header(opcode, len(payload)) + payload)
        return True

    def close(self, code: int = 1000) -> None:
        """A clean close: the close frame, then the socket once the server answers."""
        if self.send(struct.pack("!H", code), OP_CLOSE) and self._transport is not None:
            # Do not wait for the server's close frame forever.
            asyncio.get_running_loop().call_later(2.0, self.abort)

    def abort(self) -> None:
        """Drop the connection without a close frame (an abandoned client)."""
        if self._transport is not None:
            self._transport.abort()

    # --- reading ----------------------------------------------------------------------------

    def _read_handshake(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buf[:end])
        del self._buf[: end + 4]
        if not head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
            self.opened.set_exception(HandshakeFailed(head.split(b"\r\n", 1)[0].decode()))
            self.abort()
            return False
        self.opened.set_result(None)
        return True

    def _read_frames(self) -> None:
        buf = self._buf
        pos = 0
        while True:
            frame = _parse_frame(buf, pos)
            if frame is None:
                break
            fin, opcode, payload, pos = frame
            self._dispatch(fin, opcode, payload)
        if pos:
            del buf[:pos]

    def _dispatch(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            self._on_message(payload)
        elif opcode == OP_PING:
            self.send(payload, OP_PONG)
        elif opcode == OP_CLOSE:
            self.send(payload[:2], OP_CLOSE)
            if self._transport is not None:
                self._transport.close()
            self._ended()

    def _ended(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            self._on_close()


def _parse_frame(buf: bytearray, pos: int) -> tuple[bool, int, bytes, int] | None:
    """(fin, opcode, payload, next position), or ``None`` until the frame is complete."""
    available = len(buf) - pos
    if available < 2:
        return None
    first, second = buf[pos], buf[pos + 1]
    length = second & 0x7F
    head = 2
    if length == 126:
        if available < 4:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        head = 4
    elif length == 127:
        if available < 10:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        head = 10
    masked = bool(second & 0x80)  # servers never mask; handled for completeness
    key_at = pos + head
    if masked:
        head += 4
    if available < head + length:
        return None
    start = pos + head
    payload = bytes(buf[start : start + length])
    if masked:
        payload = _apply_mask(payload, bytes(buf[key_at : key_at + 4]))
    return bool(first & 0x80), first & 0x0F, payload, start + length


def _apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the masking key (RFC 6455 §5.3): masks and unmasks alike."""
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little"
    )


def _handshake_request(host: str, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def connect(
    host: str,
    port: int,
    path: str,
    on_message: Callable[[bytes], None],
    *,
    on_close: Callable[[], None] | None = None,
    within: float = 10.0,
) -> WSClient:
    """Open a connection and finish the WebSocket handshake."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        _, proto = await loop.create_connection(
            lambda: WSClient(f"{host}:{port}", path, on_message, on_close), host, port
        )
        await proto.opened
    return proto
