"""A streaming session's buffer and its one loop timer (docs/protocol.md §2 "Streaming").

Made at a session's first ``audio_chunk`` with audio and dropped as soon as nothing is
buffered, so a session that is not streaming holds nothing (an idle session's budget is 16 KiB).
The timer is one loop handle, moved only when the buffer's deadline comes *earlier*: a chunk
pushes the pause deadline later, and re-creating a handle for every chunk would cost more than
letting the old one fire early, find nothing due and re-arm once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVarTuple, Unpack

from switchboard.config import Settings
from switchboard.sessions.streaming import StreamBuffer, StreamLimits

_Args = TypeVarTuple("_Args")


def stream_limits(settings: Settings) -> StreamLimits:
    return StreamLimits(
        pause_ms=settings.pause_ms,
        max_utterance_ms=settings.max_utterance_ms,
        max_utterance_bytes=settings.max_utterance_bytes,
    )


class SessionStream:
    __slots__ = ("_handle", "_when", "buffer")

    def __init__(self, buffer: StreamBuffer) -> None:
        self.buffer = buffer
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0

    def arm(self, callback: Callable[[Unpack[_Args]], object], *args: *_Args) -> bool:
        """Have ``callback(*args)`` called by the buffer's deadline; ``False`` when nothing is
        buffered (then no timer is left and the stream can be dropped)."""
        deadline = self.buffer.deadline
        if deadline is None:
            self.cancel()
            return False
        if self._handle is None or self._when > deadline:
            self.cancel()
            self._handle = asyncio.get_running_loop().call_at(deadline, callback, *args)
            self._when = deadline
        return True

    def fired(self) -> float:
        """The timer went off: the time it was set for (the loop may run it a clock tick
        early, and it is due then all the same)."""
        self._handle = None
        return max(self._when, asyncio.get_running_loop().time())

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
