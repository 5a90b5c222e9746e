"""Answers leave in arrival order, exactly once (contract §2), as a property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchboard.sessions.ordering import AnswerLine


@given(st.data(), st.integers(min_value=1, max_value=40))
def test_answers_leave_once_and_in_order(data: st.DataObject, count: int) -> None:
    """Whatever order answers come in, each leaves once, in enqueue order."""
    line = AnswerLine()
    jobs = [f"j{i}" for i in range(count)]
    for job in jobs:
        line.enqueue(job)
    order = data.draw(st.permutations(jobs))
    sent: list[bytes] = []
    for job in order:
        assert line.answer(job, job.encode())
        assert not line.answer(job, b"again")  # a second answer is refused
        sent.extend(line.ready())
    assert sent == [job.encode() for job in jobs]
    assert len(line) == 0


def test_dropped_places_do_not_block_the_line() -> None:
    """A dropped utterance (its session ended) never holds back the others."""
    line = AnswerLine()
    for job in ("a", "b", "c"):
        line.enqueue(job)
    line.answer("c", b"c")
    line.drop("a")
    assert list(line.ready()) == []
    line.answer("b", b"b")
    assert list(line.ready()) == [b"b", b"c"]
    assert not line.answer("zz", b"x")
