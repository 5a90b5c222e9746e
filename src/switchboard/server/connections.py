"""Connection objects: what dispatch sees of a node socket and of a session socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from aiohttp import WSMsgType, web

from switchboard.dispatch.jobs import Session
from switchboard.rooms.model import Room
from switchboard.server import eager
from switchboard.server.observe import SessionObserver
from switchboard.server.sockets import close_within
from switchboard.server.streams import SessionStream

log = logging.getLogger("switchboard.server")

_SEND_ERRORS = (ConnectionError, RuntimeError, OSError, asyncio.CancelledError)
_WRITE_ERRORS = (ConnectionError, RuntimeError, OSError)


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    """The rest of a write that had to wait: its failure shows as the socket's close."""
    if not task.cancelled():
        task.exception()


async def send(ws: web.WebSocketResponse, frame: bytes) -> bool:
    """Write one JSON text frame; ``False`` if the socket is gone."""
    if ws.closed:
        return False
    try:
        await ws.send_frame(frame, WSMsgType.TEXT)
    except (ConnectionError, RuntimeError, OSError):
        return False
    return True


class NodeConnection:
    """A registered node's socket (``dispatch.jobs.NodePeer``)."""

    __slots__ = ("node_id", "routes", "ws")

    def __init__(self, node_id: str, ws: web.WebSocketResponse) -> None:
        self.node_id = node_id
        self.ws = ws
        # Jobs other instances placed on this node: job_id -> their instance (cluster/relay.py).
        # None until the first such job: a lone instance's connections carry nothing.
        self.routes: dict[str, str] | None = None

    def write(self, frame: bytes) -> bool:
        """Write a frame now, without waiting (``dispatch.jobs.NodePeer``); ``False`` if the
        socket is gone.  The frame is in the transport's buffer when this returns, so frames
        keep the order they were written in; only a write that must wait for the peer's TCP
        window finishes in a task (``eager.py``)."""
        ws = self.ws
        if ws.closed:
            return False
        try:
            rest = eager.start(ws.send_frame(frame, WSMsgType.TEXT))
        except _WRITE_ERRORS:
            return False
        if rest is not None:
            rest.add_done_callback(_ignore_outcome)  # a socket that broke meanwhile says so
        return True

    async def close(self, code: int, message: bytes = b"") -> None:
        # Bounded (sockets.py): a frozen node must not hold the heartbeat sweeper.
        with contextlib.suppress(*_SEND_ERRORS):
            await close_within(self.ws, code=code, message=message)


class SessionConnection:
    """An open session's socket (``dispatch.jobs.SessionPeer``) with a bounded outgoing queue.

    Frames are queued and written by a short-lived writer task, so a slow client never blocks
    the node that produced its answer.  Past ``outbox_limit`` queued frames the session is a
    slow consumer: ``on_overflow`` ends it (contract §2 "Ending": ``SESSION_CLOSED`` first).
    """

    __slots__ = (
        "_finished",
        "_outbox",
        "_overflowed",
        "_writer",
        "observer",
        "on_overflow",
        "outbox_limit",
        "room",
        "session",
        "session_id",
        "stream",
        "ws",
    )

    session: Session  # dispatch's record of it, set right after the connection is made

    def __init__(
        self,
        session_id: str,
        ws: web.WebSocketResponse,
        *,
        outbox_limit: int,
        on_overflow: Callable[[SessionConnection], None],
        observer: SessionObserver | None = None,
    ) -> None:
        self.session_id = session_id
        self.ws = ws
        self.observer = observer
        self.outbox_limit = outbox_limit
        self.on_overflow = on_overflow
        # Made on the first frame and dropped once written: an idle session holds no deque
        # (an empty one is ~600 bytes, issue 4's per-session memory budget is 16 KiB).
        self._outbox: deque[bytes] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._overflowed = False
        self._finished: asyncio.Event | None = None  # set once end() is through
        # Its audio_chunk buffer and timer (server/streams.py), only while audio is buffered.
        self.stream: SessionStream | None = None
        # The room it is in (lingua-parity §5), kept by server/room_channel.py: the utterance
        # path reads only this to know that it is not in one.
        self.room: Room | None = None

    @property
    def ended(self) -> bool:
        """The server has ended this session (slow consumer): nothing more goes out."""
        return self._overflowed

    def push(self, frame: bytes) -> None:
        if self._overflowed:
            return
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        elif len(outbox) >= self.outbox_limit:
            self._overflowed = True
            self.on_overflow(self)
            return
        outbox.append(frame)
        if self.observer is not None:  # a slow consumer's frames never leave: not reported
            self.observer.pushed(self.session_id, frame)
        if self._writer is None:
            # Written now, as the node side writes (eager.py): the writer is a task only if
            # the write must wait for the peer's TCP window.  A task per answer (its creation,
            # its step, the loop's weak set of tasks) was ~15 % of what a refusal costs.
            try:
                self._writer = eager.start(self._flush())
            except Exception:  # _flush answers its own errors; this is a bug, not the peer
                self._writer = None
                log.exception("writing to session %s failed", self.session_id)

    async def _flush(self) -> None:
        outbox = self._outbox
        try:
            while outbox:
                if not await send(self.ws, outbox.popleft()):
                    outbox.clear()
        finally:
            self._writer = None
            if self._outbox is outbox and not outbox:
                self._outbox = None

    async def drain(self) -> None:
        """Wait until every queued frame was written (before a close)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def send_now(self, frame: bytes) -> bool:
        """Bypass the queue (for the final frames of an overflowing session)."""
        return await send(self.ws, frame)

    async def end(self, frame: bytes, code: int) -> None:
        """The server ends the session (contract §2 "Ending"): queued frames are dropped,
        ``frame`` (``SESSION_CLOSED``) goes out ahead of the close, and a peer that takes
        neither within the close timeout is cut off — a slow consumer holds no memory and no
        connection for long (docs/reliability.md)."""
        self._overflowed = True
        if self._outbox is not None:
            self._outbox.clear()  # stops a writer that is under way
            self._outbox = None
        self._finished = asyncio.Event()
        try:
            with contextlib.suppress(*_SEND_ERRORS):
                await close_within(self.ws, code=code, message=b"", grace=None, farewell=frame)
        finally:
            self._finished.set()

    async def ended_and_closed(self) -> None:
        """Wait until :meth:`end` (if it began) is through.  The handler must live until
        then: once it returns, aiohttp drops the connection, and with it the frames still
        queued for a client that has only now started reading again."""
        if self._finished is not None:
            await self._finished.wait()

    async def close(self, code: int, message: bytes = b"") -> None:
        with contextlib.suppress(*_SEND_ERRORS):
            await close_within(self.ws, code=code, message=message)
