"""Connection accounting (``--max-connections-per-address``; docs/security.md).

Pure bookkeeping: the channel opens an entry before the WebSocket upgrade and closes it when
its handler ends, whatever happened in between, so a connection counts from its first byte to
its last — handshakes that never finish and refused connections still closing included.
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

    def count(self, address: str) -> int:
        return self._open.get(address, 0)

    def __len__(self) -> int:
        """Addresses with at least one open connection."""
        return len(self._open)
