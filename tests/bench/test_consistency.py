"""The E3 checker: each rule of contract §2 caught, and nothing flagged in a sound trace."""

from __future__ import annotations

from pathlib import Path

from switchboard.bench import consistency, trace, tracegen
from switchboard.bench.trace import Accepted, Answered, Closed, Opened, PoolsLive

SAMPLE = Path(__file__).parents[2] / "bench" / "traces" / "sample.jsonl"
DE = [("en", "de"), ("de", "en")]


def accept(t: float, index: int, job: str, pair: tuple[str, str] = ("en", "de")) -> Accepted:
    return Accepted(t=t, session="s", index=index, src=pair[0], tgt=pair[1], job_id=job)


def result(t: float, index: int, job: str, pool: int = 1, node: str = "n1") -> Answered:
    return Answered(
        t=t,
        session="s",
        kind="result",
        job_id=job,
        index=index,
        node_id=node,
        pools=[pool],
        pairs=DE,
    )


def rules(events: list[trace.Event]) -> list[str]:
    return [v.rule for v in consistency.check(events)]


def test_a_sound_session_has_no_violation() -> None:
    """Two utterances answered once each, in order, from the bound pool."""
    events = [
        Opened(t=0, session="s"),
        accept(1, 0, "a"),
        accept(2, 1, "b"),
        result(3, 0, "a"),
        result(4, 1, "b"),
    ]
    assert rules(events) == []


def test_a_duplicated_answer_is_caught() -> None:
    """The doctored trace of the round-trip test: one answer sent twice."""
    events = [Opened(t=0, session="s"), accept(1, 0, "a"), result(2, 0, "a"), result(3, 0, "a")]
    assert rules(events) == ["one answer"]


def test_answers_out_of_order_are_caught() -> None:
    events = [
        Opened(t=0, session="s"),
        accept(1, 0, "a"),
        accept(1.1, 1, "b"),
        result(2, 1, "b"),
        result(3, 0, "a"),
    ]
    assert rules(events) == ["order"]


def test_an_unanswered_utterance_is_caught_unless_the_session_ended() -> None:
    """Pending at the end of a session is allowed (contract §2 "Ending"); otherwise not."""
    open_ = [Opened(t=0, session="s"), accept(1, 0, "a")]
    assert rules(open_) == ["one answer"]
    assert rules([*open_, Closed(t=2, session="s", how="disconnect")]) == []


def test_an_answer_for_nothing_accepted_is_caught() -> None:
    assert rules([Opened(t=0, session="s"), result(1, 0, "ghost")]) == ["one answer"]


def test_a_node_that_does_not_serve_the_pair_is_caught() -> None:
    events = [Opened(t=0, session="s"), accept(1, 0, "a", ("en", "fr")), result(2, 0, "a")]
    assert rules(events) == ["language"]


def test_a_pool_hop_is_caught_while_the_bound_pool_lives() -> None:
    """Same pair, another pool, the first still has members: a broken binding."""
    base = [
        PoolsLive(t=0, live=[1, 2]),
        Opened(t=0, session="s"),
        accept(1, 0, "a"),
        result(2, 0, "a", pool=1),
    ]
    hop = [accept(3, 1, "b"), result(4, 1, "b", pool=2)]
    assert rules(base + hop) == ["pool"]
    # The bound pool lost its members: moving on is right, not a violation.
    assert rules([*base, PoolsLive(t=2.5, live=[2]), *hop]) == []


def test_a_new_pair_rebinds_without_violation() -> None:
    fr = [("en", "fr"), ("fr", "en")]
    events = [
        Opened(t=0, session="s"),
        accept(1, 0, "a"),
        result(2, 0, "a", pool=1),
        accept(3, 1, "b", ("en", "fr")),
        Answered(
            t=4, session="s", kind="result", job_id="b", index=1, node_id="n2", pools=[2], pairs=fr
        ),
    ]
    assert rules(events) == []


def test_the_shipped_sample_trace_is_the_generators_output_and_is_sound() -> None:
    """bench/traces/sample.jsonl is reproducible from its seed and breaks no rule."""
    generated = b"".join(trace.encode(e) for e in tracegen.generate(seed=7, sessions=48))
    assert SAMPLE.read_bytes() == generated
    events = trace.read_trace(SAMPLE)
    assert consistency.check(events) == []
    kinds = {e.how for e in events if isinstance(e, Closed)}
    assert kinds == {"close", "disconnect"}  # clean closes and abandoned clients
    pairs = {(e.session, (e.src, e.tgt)) for e in events if isinstance(e, Accepted)}
    assert len(pairs) > len({s for s, _ in pairs})  # some sessions switch language
