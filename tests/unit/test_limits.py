"""The per-peer limits' bookkeeping (server/limits.py), driven with explicit times: no loop,
no clock."""

from __future__ import annotations

import pytest

from switchboard.server.limits import AddressCounter, FrameBudget


def test_a_full_bucket_takes_the_burst_at_once_then_refuses() -> None:
    budget = FrameBudget(10, 5, now=0.0)
    assert [budget.take(0.0) for _ in range(6)] == [True] * 5 + [False]


def test_the_bucket_refills_at_the_rate_and_never_beyond_the_burst() -> None:
    budget = FrameBudget(10, 5, now=0.0)
    for _ in range(5):
        assert budget.take(0.0)
    assert not budget.take(0.05)  # half a frame's worth of refill
    assert budget.take(0.1)  # one frame's worth since the last one
    # A long quiet spell refills to the burst, no more.
    assert [budget.take(100.0) for _ in range(6)] == [True] * 5 + [False]


def test_a_peer_at_the_rate_is_never_refused() -> None:
    """A steady sender at exactly the limit (a node heartbeating and answering) never runs dry."""
    budget = FrameBudget(100, 2, now=0.0)  # 2: room for float rounding of the intervals
    assert all(budget.take(i / 100) for i in range(1, 10_000))


def test_a_refused_frame_still_costs_nothing_towards_the_next() -> None:
    budget = FrameBudget(1, 1, now=0.0)
    assert budget.take(0.0)
    assert not budget.take(0.5)
    assert budget.take(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (10, 0)])
def test_nonsense_budgets_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        FrameBudget(rate, burst, now=0.0)


def test_address_counter_counts_each_address_apart_against_its_limit() -> None:
    counter = AddressCounter(2)
    assert counter.open("a") and counter.open("a")
    assert not counter.open("a")  # counted anyway: the caller closes it like the others
    assert counter.open("b")
    assert counter.count("a") == 3 and len(counter) == 2
    for _ in range(3):
        counter.close("a")
    assert counter.count("a") == 0 and len(counter) == 1
    assert AddressCounter(0).open("a")  # 0: no limit
