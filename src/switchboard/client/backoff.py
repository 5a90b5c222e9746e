"""A session's back-off after ``OVERLOADED`` (protocol.md §3 "Saturation"), without I/O.

A saturated scheduler refuses a new utterance at once, and each refusal still costs it a frame
read and a frame written.  A client that resends only the refused utterance while it keeps
sending the others at full pace adds load instead of taking it away, so the whole session
backs off: from a refusal on, every utterance it is asked to send is held, with the refused
one, until the back-off has passed; then the held ones go out in the order they were first
asked for (a refused one before those asked for after it), and the hold lifts.

:class:`Hold` is that bookkeeping, driven by its caller with the time: the SDK's session
(``client.session``) and the E5 bench's sessions (``bench.fakes``) do the sending.  Each
utterance gets a ticket, its place in the session's order, when it is first asked for.
"""

from __future__ import annotations

import heapq
from typing import Final

# The server's hint (or this, without one), doubled at each retry of the same utterance,
# capped, and stretched by up to half again at random so refused clients do not come back in
# step.
DEFAULT_RETRY_AFTER_S: Final = 0.25
MAX_BACKOFF_S: Final = 10.0
JITTER: Final = 0.5


def backoff_delay(hint_ms: int | None, retries: int, draw: float) -> float:
    """Seconds to hold after a refusal: ``hint_ms`` (the refusal's ``retry_after_ms``) doubled
    for each time this utterance was refused before (``retries``), capped at
    :data:`MAX_BACKOFF_S`, times ``1 + JITTER × draw`` (``draw`` uniform in [0, 1))."""
    base = DEFAULT_RETRY_AFTER_S if hint_ms is None else hint_ms / 1000
    doubled: float = base * 2.0**retries
    return min(doubled, MAX_BACKOFF_S) * (1 + JITTER * draw)


class Hold:
    """Which utterances a session holds back, and until when (``until``, on the caller's
    clock; ``None``: no hold, utterances go out as they are asked for)."""

    __slots__ = ("_held", "_tickets", "until")

    def __init__(self) -> None:
        self._held: list[tuple[int, int]] = []  # a heap of (ticket, utterance index)
        self._tickets = 0
        self.until: float | None = None

    @property
    def on(self) -> bool:
        return self.until is not None

    def __len__(self) -> int:
        """Utterances held: not on the wire now."""
        return len(self._held)

    def ticket(self) -> int:
        """The place in the session's order of an utterance asked for now."""
        self._tickets += 1
        return self._tickets

    def refused(self, until: float, ticket: int | None = None, index: int = 0) -> None:
        """A refusal: hold until ``until`` at least (a later refusal can only lengthen the
        hold), and hold the refused utterance (``ticket``, ``index``) unless it is given up."""
        self.until = until if self.until is None else max(self.until, until)
        if ticket is not None:
            heapq.heappush(self._held, (ticket, index))

    def defer(self, ticket: int, index: int) -> None:
        """An utterance asked for while the hold is on: it waits its turn."""
        heapq.heappush(self._held, (ticket, index))

    def wait(self, now: float) -> float:
        """Seconds until the hold may be released (0 or less: now)."""
        return 0.0 if self.until is None else self.until - now

    def release(self) -> int | None:
        """Once the wait is over: the next held utterance to send, first asked for first; when
        none is left, ``None``, and the hold is lifted."""
        if self._held:
            return heapq.heappop(self._held)[1]
        self.until = None
        return None

    def clear(self) -> list[int]:
        """The session ended: forget every held utterance (returned, in order) and the hold."""
        held = [index for _, index in sorted(self._held)]
        self._held.clear()
        self.until = None
        return held
