"""The chaos ledger's accounting (pure): what counts as lost, cut, duplicated, misordered, and
how the recovery time is measured (docs/reliability.md)."""

from __future__ import annotations

import pytest

from switchboard.chaos.ledger import RESULT, SHED, Ledger
from switchboard.chaos.sessions import file_answer


def test_unanswered_on_an_open_line_is_lost_and_on_an_ended_line_cut() -> None:
    """Lost means sent on a session that was still open at the end and never answered; a
    session the server closed cuts what it still owed (contract §2 "Ending")."""
    ledger = Ledger()
    open_line, closed_line = ledger.open_line(), ledger.open_line()
    for index in range(3):
        ledger.sent(open_line, index, 1.0)
        ledger.sent(closed_line, index, 1.0)
    ledger.answered(open_line, 0, RESULT, 2.0)
    ledger.answered(closed_line, 0, "JOB_TIMEOUT", 2.0)
    ledger.end_line(closed_line, "SESSION_CLOSED", 3.0)
    figures = ledger.figures()
    assert (figures.sent, figures.results, figures.errors) == (6, 1, {"JOB_TIMEOUT": 1})
    assert figures.lost == 2
    assert figures.cut == {"SESSION_CLOSED": 2}
    assert not figures.clean


def test_a_second_answer_is_a_duplicate_and_an_unknown_one_unexpected() -> None:
    ledger = Ledger()
    line = ledger.open_line()
    ledger.sent(line, 7, 0.0)
    ledger.answered(line, 7, RESULT, 0.1)
    ledger.answered(line, 7, RESULT, 0.2)
    ledger.answered(line, 8, RESULT, 0.3)
    figures = ledger.figures()
    assert (figures.results, figures.duplicated, figures.unexpected) == (1, 1, 1)
    assert not figures.clean


def test_answers_out_of_send_order_are_misordered_but_rejections_are_not() -> None:
    """Answers of the ordered stream follow the send order; rejections (TOO_MANY_PENDING …)
    come at once, outside it (contract §2)."""
    ledger = Ledger()
    line = ledger.open_line()
    for index in range(4):
        ledger.sent(line, index, 0.0)
    ledger.answered(line, 3, "TOO_MANY_PENDING", 0.1)  # a rejection: out of band
    ledger.answered(line, 1, RESULT, 0.2)
    ledger.answered(line, 0, RESULT, 0.3)  # after index 1: misordered
    ledger.answered(line, 2, RESULT, 0.4)
    figures = ledger.figures()
    assert figures.misordered == 1
    assert figures.lost == 0 and figures.duplicated == 0


def test_recovery_runs_from_the_repair_to_a_new_result_and_the_backlog_answered() -> None:
    """Recovery: from the end of the fault until a newly sent utterance gets a result and
    everything still owed at the end of the fault is answered, whichever is later."""
    ledger = Ledger()
    line = ledger.open_line()
    ledger.sent(line, 0, 9.0)  # owed when the fault ends at 10.0, answered at 10.8
    ledger.sent(line, 1, 10.2)  # the first sent after the fault: result at 10.3
    ledger.fault(8.0)
    ledger.repaired(10.0)
    ledger.answered(line, 0, RESULT, 10.8)
    ledger.answered(line, 1, RESULT, 10.3)
    assert ledger.figures().recovery_s == pytest.approx(0.8)


def test_recovery_counts_what_the_fault_held_up_after_it_began() -> None:
    """A fault the system gets over by itself (a frozen node): an utterance sent just after
    it and answered late (it sat on the frozen node) is part of the recovery, although
    others sent meanwhile were served at once."""
    ledger = Ledger()
    line = ledger.open_line()
    ledger.fault(5.0)
    ledger.sent(line, 0, 5.1)
    ledger.sent(line, 1, 5.2)
    ledger.answered(line, 1, RESULT, 5.25)
    ledger.answered(line, 0, RESULT, 6.6)
    assert ledger.figures(slow_after=0.3).recovery_s == pytest.approx(1.6)
    assert ledger.figures(slow_after=2.0).recovery_s == pytest.approx(0.25)


def test_what_the_next_fault_holds_up_is_the_next_faults() -> None:
    """Two crashes: the utterances cut by the second do not stretch the first's recovery."""
    ledger = Ledger()
    line = ledger.open_line()
    ledger.fault(1.0)
    ledger.sent(line, 0, 1.5)
    ledger.answered(line, 0, RESULT, 1.6)
    ledger.fault(5.0)
    ledger.sent(line, 1, 4.9)
    ledger.end_line(line, "disconnected", 5.0)
    second = ledger.open_line()
    ledger.sent(second, 0, 5.5)
    ledger.answered(second, 0, RESULT, 5.6)
    assert ledger.figures().recovery_s == pytest.approx(0.6)


def test_recovery_ignores_lost_utterances_and_needs_a_fault() -> None:
    ledger = Ledger()
    line = ledger.open_line()
    ledger.sent(line, 0, 1.0)
    ledger.sent(line, 1, 3.0)
    ledger.answered(line, 1, RESULT, 3.5)
    assert ledger.figures().recovery_s is None
    ledger.fault(2.0)
    figures = ledger.figures()
    assert figures.recovery_s == pytest.approx(1.5)  # not infinite: index 0 is simply lost
    assert figures.lost == 1


def test_stale_results_spoil_a_clean_run() -> None:
    ledger = Ledger()
    line = ledger.open_line()
    ledger.sent(line, 0, 0.0)
    ledger.answered(line, 0, RESULT, 0.1)
    assert ledger.figures().clean
    ledger.stale()
    assert ledger.figures().stale_relayed == 1
    assert not ledger.figures().clean


def test_ending_a_line_says_how_many_it_cut_and_first_answers_lists_each_utterance() -> None:
    """What a resending client and the cut-off check read: the count a line's end cut (once),
    and each utterance's send time with its first answer."""
    ledger = Ledger()
    line = ledger.open_line()
    ledger.sent(line, 0, at=1.0)
    ledger.sent(line, 1, at=2.0)
    ledger.sent(line, 2, at=3.0)
    ledger.answered(line, 0, "SCHEDULER_DEPENDENCY_DOWN", at=1.5)
    ledger.answered(line, 0, RESULT, at=1.7)
    assert ledger.first_answers(line) == [
        (1.0, "SCHEDULER_DEPENDENCY_DOWN", 1.5),
        (2.0, None, None),
        (3.0, None, None),
    ]
    assert ledger.end_line(line, "disconnected", at=4.0) == 2
    assert ledger.end_line(line, "disconnected", at=5.0) == 0  # ended once


def test_an_utterance_refused_overloaded_at_once_is_outside_the_ordered_stream() -> None:
    """``OVERLOADED`` without a ``job_id`` refuses a new utterance at once (like
    ``TOO_MANY_PENDING``): a later answer of an earlier utterance is not misordered by it."""
    ledger = Ledger()
    line = ledger.open_line()
    for index in (0, 1):
        ledger.sent(line, index, 0.0)
    refusal = {"type": "error", "code": "OVERLOADED", "details": {"utterance_index": 1}}
    file_answer(ledger, line, refusal, 0.1)
    file_answer(ledger, line, {"type": "translation_result", "utterance_index": 0}, 0.2)
    figures = ledger.figures()
    assert figures.misordered == 0 and figures.results == 1
    assert figures.errors == {SHED: 1}
