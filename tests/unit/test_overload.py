"""The saturation gauge (dispatch/overload.py): signals in, verdict out, no loop, no clock."""

from __future__ import annotations

import pytest

from switchboard.dispatch.overload import (
    ADMIT_CUT,
    MAX_RETRY_AFTER,
    Overload,
    OverloadBounds,
    Reason,
)

BOUNDS = OverloadBounds(loop_lag=0.1, store_backlog=100, queue_age=1.0, retry_after=0.25)


def _lag(gauge: Overload, late: float, *, at: float) -> None:
    """One probe due at ``at`` that fired ``late`` seconds late."""
    gauge.probe_started(at)
    gauge.probe_fired(at + late)


def test_idle_gauge_accepts() -> None:
    """No lag, nothing owed, nobody waiting: nothing is refused."""
    gauge = Overload(BOUNDS)
    assert gauge.overloaded(10.0) is None


def test_store_backlog_past_its_bound_sheds_and_recovers_below_half() -> None:
    """Hysteresis: overload starts past the bound and ends only below half of it."""
    gauge = Overload(BOUNDS)
    gauge.store_owed = 100
    assert gauge.overloaded(1.0) is None  # at the bound, not past it
    gauge.store_owed = 101
    assert gauge.overloaded(1.0) is Reason.STORE_BACKLOG
    gauge.store_owed = 60
    assert gauge.overloaded(1.1) is Reason.STORE_BACKLOG  # still above half: keeps shedding
    gauge.store_owed = 49
    assert gauge.overloaded(1.2) is None
    gauge.store_owed = 80
    assert gauge.overloaded(1.3) is None  # below the bound again: accepting


def test_a_late_probe_cuts_the_admitted_share_and_on_time_ones_raise_it() -> None:
    """AIMD: each probe later than the bound cuts the share admitted, each well on time
    raises it by a step, back to everything; a probe in between changes nothing."""
    gauge = Overload(BOUNDS)
    assert gauge.admitted_share == 1.0
    _lag(gauge, 0.2, at=1.0)
    assert gauge.admitted_share == pytest.approx(ADMIT_CUT)
    assert gauge.overloaded(1.3) is Reason.LOOP_LAG and gauge.throttled
    _lag(gauge, 0.2, at=2.0)
    assert gauge.admitted_share == pytest.approx(ADMIT_CUT**2)
    _lag(gauge, 0.07, at=3.0)  # under the bound, not under half of it: held
    assert gauge.admitted_share == pytest.approx(ADMIT_CUT**2)
    for i in range(100):
        _lag(gauge, 0.0, at=4.0 + i)
    assert gauge.admitted_share == 1.0
    assert gauge.overloaded(200.0) is None and not gauge.throttled


def test_the_admitted_share_is_spread_evenly() -> None:
    """At a share of 0.49, about every other utterance is admitted, never long runs of
    either (a credit, not a coin), and exactly the share of them over many."""
    gauge = Overload(BOUNDS)
    for i in range(2):
        _lag(gauge, 0.2, at=1.0 + i)
    share = gauge.admitted_share
    assert gauge.overloaded(3.0) is Reason.LOOP_LAG and gauge.throttled
    admitted = [gauge.admit_one() for _ in range(1000)]
    assert abs(sum(admitted) - share * 1000) <= 1
    longest = max(len(run) for run in "".join("a" if a else "r" for a in admitted).split("a"))
    assert longest <= 2  # refusals between two admitted ones: at most 1 / share rounded up


def test_a_long_iteration_refuses_everything_while_it_lasts() -> None:
    """The running probe late past the bound is a hard refusal, not a share."""
    gauge = Overload(BOUNDS)
    gauge.probe_started(5.0)
    assert gauge.overloaded(5.2) is Reason.LOOP_LAG and not gauge.throttled


def test_a_probe_late_right_now_counts_at_once() -> None:
    """A long loop iteration shows while it lasts: the running probe is already late."""
    gauge = Overload(BOUNDS)
    gauge.probe_started(5.0)
    assert gauge.overloaded(5.05) is None
    assert gauge.overloaded(5.2) is Reason.LOOP_LAG
    gauge.probe_fired(5.2)
    assert gauge.loop_lag(5.2) < 0.1  # one sample: averaged down once it has fired
    assert gauge.admitted_share == pytest.approx(ADMIT_CUT)  # and the share cut once


def test_queue_age_uses_the_oldest_waiting_job() -> None:
    gauge = Overload(BOUNDS)
    oldest: list[float] = []
    gauge.waiting_since = lambda: oldest[0] if oldest else None
    assert gauge.overloaded(3.0) is None
    oldest.append(1.5)
    assert gauge.overloaded(2.0) is None
    assert gauge.overloaded(2.6) is Reason.QUEUE_AGE
    assert gauge.retry_after_ms(Reason.QUEUE_AGE, 2.6) == 1100  # the age beats the least hint


def test_a_bound_of_zero_turns_its_signal_off() -> None:
    gauge = Overload(OverloadBounds(loop_lag=0, store_backlog=0, queue_age=0))
    assert not gauge.bounds.enabled
    gauge.store_owed = 10**6
    gauge.waiting_since = lambda: 0.0
    _lag(gauge, 5.0, at=1.0)
    assert gauge.overloaded(100.0) is None
    assert not gauge.behind_since(0.0, 100.0)


def test_retry_hint_is_at_least_the_bound_and_at_most_the_cap() -> None:
    gauge = Overload(BOUNDS)
    assert gauge.retry_after_ms(Reason.STORE_BACKLOG, 1.0) == 250
    gauge.probe_started(1.0)
    assert gauge.retry_after_ms(Reason.LOOP_LAG, 1.3) == 600  # twice the lag now
    assert gauge.retry_after_ms(Reason.LOOP_LAG, 100.0) == int(MAX_RETRY_AFTER * 1000)


def test_behind_since_remembers_the_scheduler_falling_behind() -> None:
    """A job that waited through a spell of store backlog was kept waiting by us (protocol.md
    §3): the gauge says so even once the spell is over."""
    gauge = Overload(BOUNDS)
    assert not gauge.behind_since(0.0, 1.0)
    gauge.store_owed = 500
    assert gauge.overloaded(2.0) is Reason.STORE_BACKLOG
    gauge.store_owed = 0
    assert gauge.overloaded(3.0) is None  # the spell ended at 3.0
    assert gauge.behind_since(1.5, 4.0)
    assert gauge.behind_reason is Reason.STORE_BACKLOG
    assert not gauge.behind_since(3.5, 4.0)  # waited only after it


def test_a_long_line_alone_is_not_the_scheduler_behind() -> None:
    """Queue age sheds new work, but full nodes make long lines too: a job that waited
    through it alone is still NO_AVAILABLE_NODE's, not ours."""
    gauge = Overload(BOUNDS)
    gauge.waiting_since = lambda: 0.0
    assert gauge.overloaded(5.0) is Reason.QUEUE_AGE
    assert not gauge.behind_since(0.0, 6.0)
