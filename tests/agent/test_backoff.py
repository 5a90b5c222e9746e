"""Reconnect backoff (pure): exponential, jittered, capped, reset by a success."""

from __future__ import annotations

import random

import pytest

from switchboard.agent.backoff import Backoff


def test_delays_grow_within_jitter_bounds_and_cap() -> None:
    """Each delay lies in the upper half of its exponential step, never above the cap."""
    backoff = Backoff(initial=0.5, maximum=4.0, rng=random.Random(1))
    steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for step in steps:
        delay = backoff.next_delay()
        assert step / 2 <= delay <= step
    assert backoff.failures == len(steps)


def test_jitter_spreads_nodes_apart() -> None:
    """Two nodes that lost the same scheduler do not retry at the same instant."""
    a = Backoff(rng=random.Random(1))
    b = Backoff(rng=random.Random(2))
    assert [a.next_delay() for _ in range(3)] != [b.next_delay() for _ in range(3)]


def test_reset_starts_again_from_initial() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, rng=random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_many_failures_stay_finite() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0)
    for _ in range(10_000):
        assert backoff.next_delay() <= 30.0


@pytest.mark.parametrize(("initial", "maximum", "factor"), [(0, 1, 2), (2, 1, 2), (0.5, 1, 0.5)])
def test_rejects_nonsense(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial=initial, maximum=maximum, factor=factor)
