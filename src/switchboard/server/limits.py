"""Per-peer limits (docs/security.md): pure bookkeeping, no I/O, no clock of its own.

:class:`AddressCounter` counts what one remote address holds open.  For
``--max-connections-per-address`` the WebSocket channel opens an entry before the upgrade and
closes it when its handler ends, whatever happened in between, so a connection counts from its
first byte to its last — handshakes that never finish and refused connections still closing
included.  For ``--max-http-requests-per-address`` a second counter does the same around each
plain HTTP request.

:class:`FrameBudget` is the token bucket of ``--max-frames-per-second`` / ``--frame-burst``,
one per WebSocket connection, charged once per received frame.
"""

from __future__ import annotations

from collections import Counter


class AddressCounter:
    """Open connections per remote address, against a limit (0: no limit)."""

    __slots__ = ("_limit", "_open")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        self._limit = limit
        self._open: Counter[str] = Counter()

    def open(self, address: str) -> bool:
        """Count one more connection from ``address``; ``False`` if that is one too many.

        The connection counts either way, and must be :meth:`close`\\ d either way.
        """
        self._open[address] += 1
        return not self._limit or self._open[address] <= self._limit

    def close(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    @property
    def limit(self) -> int:
        return self._limit

    def count(self, address: str) -> int:
        return self._open.get(address, 0)

    def __len__(self) -> int:
        """Addresses with at least one open connection."""
        return len(self._open)


class FrameBudget:
    """A token bucket: ``burst`` frames at once, refilled at ``rate`` frames per second.

    :meth:`take` is on the hot path (every frame of every connection), so it is a handful of
    float operations on slots, and the caller passes the time it already read for the frame.
    The bucket starts full: a peer's opening burst (a session sending its first utterances, a
    node answering a batch of jobs) is never charged for the time before it connected.  The
    channel makes it at a connection's first frame after the handshake, so idle connections
    hold none (about 120 bytes each otherwise).
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, *, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got {rate} and {burst}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = self._burst
        self._last = now

    def take(self, now: float) -> bool:
        """Charge one frame received at ``now`` (seconds, a monotonic clock); ``False`` when
        the bucket is empty, i.e. the peer is over its rate."""
        tokens = self._tokens + (now - self._last) * self._rate
        self._last = now
        if tokens > self._burst:
            tokens = self._burst
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
