"""Reconnect delays: exponential backoff with jitter.

When a scheduler restarts, every node it had reconnects; jitter spreads them out so the new
process is not hit by all of them in the same millisecond.  Each delay is drawn uniformly from
the upper half of the current exponential step ("equal jitter"): never shorter than half the
step, so a node does not spin, and never longer than ``maximum``.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        *,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self) -> float:
        """The delay before the next try; each call counts one more failure."""
        step = min(self.maximum, self.initial * self.factor**self._failures)
        self._failures = min(self._failures + 1, 64)  # keeps factor**n finite
        return self._rng.uniform(step / 2, step)

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from ``initial`` again."""
        self._failures = 0
