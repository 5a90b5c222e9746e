"""The session-wide back-off after OVERLOADED (client/backoff.py): pure, driven by the time."""

from __future__ import annotations

import pytest

from switchboard.client.backoff import MAX_BACKOFF_S, Hold, backoff_delay


def test_the_delay_follows_the_hint_doubles_per_retry_is_capped_and_jittered() -> None:
    assert backoff_delay(300, 0, 0.0) == pytest.approx(0.3)
    assert backoff_delay(300, 2, 0.0) == pytest.approx(1.2)
    assert backoff_delay(None, 0, 0.0) == pytest.approx(0.25)  # no hint: the default
    assert backoff_delay(300, 0, 0.999) == pytest.approx(0.45, abs=1e-3)  # up to half again
    assert backoff_delay(9000, 3, 0.0) == MAX_BACKOFF_S


def test_no_hold_until_a_refusal_then_until_its_time() -> None:
    hold = Hold()
    assert not hold.on and hold.wait(5.0) == 0.0 and len(hold) == 0
    first = hold.ticket()
    hold.refused(10.5, first, 0)
    assert hold.on and len(hold) == 1
    assert hold.wait(10.0) == pytest.approx(0.5)
    hold.refused(10.2)  # a shorter back-off given up on: the hold keeps its end
    assert hold.until == 10.5
    hold.refused(11.0)  # a longer one lengthens it
    assert hold.until == 11.0


def test_held_utterances_go_out_in_the_order_first_asked_for_then_the_hold_lifts() -> None:
    """Refusals may arrive in any order; each goes back to its place, before those asked for
    later, and the hold lifts only once nothing is left."""
    hold = Hold()
    tickets = {index: hold.ticket() for index in (7, 8, 9)}  # sent before the hold
    hold.refused(1.0, tickets[8], 8)
    hold.defer(hold.ticket(), 10)  # asked for during the hold
    hold.refused(1.0, tickets[7], 7)  # an earlier one's refusal, arriving later
    hold.defer(hold.ticket(), 11)
    assert [hold.release() for _ in range(4)] == [7, 8, 10, 11]
    assert hold.on  # still on: a send now would overtake nothing only once it is lifted
    assert hold.release() is None and not hold.on


def test_clear_forgets_the_held_and_the_hold() -> None:
    hold = Hold()
    hold.refused(1.0, hold.ticket(), 3)
    hold.defer(hold.ticket(), 4)
    assert hold.clear() == [3, 4]
    assert not hold.on and len(hold) == 0
