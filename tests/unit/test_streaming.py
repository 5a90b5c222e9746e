"""The streaming buffer (sessions/streaming.py): lingua-parity.md §3's cuts, with no loop.

Time is a number passed in; the buffer's ``deadline`` says when its owner would wake it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.sessions.streaming import (
    CutReason,
    StreamBuffer,
    StreamCut,
    StreamLimits,
    duration_ms,
)

LIMITS = StreamLimits(pause_ms=3000, max_utterance_ms=20000, max_utterance_bytes=512000)


def _buffer(limits: StreamLimits = LIMITS, audio_format: str = "pcm16") -> StreamBuffer:
    return StreamBuffer(limits, audio_format=audio_format, sample_rate=16000)


def test_the_table_fixes_each_cut_flag_hangover_and_padding() -> None:
    """§3's table, row by row."""
    assert [(r.hangover_ms, r.cut.assign_fields()) for r in CutReason] == [
        (200, (("padding_ms", 280), ("is_manual_cut", True))),
        (150, (("padding_ms", 220), ("is_timeout_triggered", True))),
        (0, (("padding_ms", 220), ("is_timeout_triggered", True))),
        (0, ()),
    ]


def test_duration_is_bytes_over_32_for_pcm16_at_16k_and_60_bytes_a_frame_for_opus() -> None:
    assert duration_ms(32000, "pcm16", 16000) == 1000
    assert duration_ms(31, "pcm16", 16000) == 0
    assert duration_ms(96000, "pcm16", 48000) == 1000
    assert duration_ms(3000, "opus", 16000) == 1000
    assert duration_ms(119, "OPUS", 16000) == 20
    assert duration_ms(10**6, "wav", 16000) is None


def test_a_final_chunk_cuts_after_its_200_ms_hangover() -> None:
    buf = _buffer()
    assert buf.push(b"ab", is_final=False, now=0.0) == []
    assert buf.push(b"cd", is_final=True, now=1.0) == []
    assert buf.deadline == 1.2
    assert buf.wake(1.19) == []
    assert buf.wake(1.2) == [StreamCut(CutReason.FINAL, b"abcd", 2)]
    assert buf.empty and buf.deadline is None


def test_a_bare_final_cuts_what_is_buffered() -> None:
    buf = _buffer()
    buf.push(b"ab", is_final=False, now=0.0)
    buf.push(b"", is_final=True, now=0.5)
    assert buf.wake(0.7) == [StreamCut(CutReason.FINAL, b"ab", 1)]


def test_chunks_in_a_final_hangover_join_that_utterance() -> None:
    """Better: the web client sends its final frame before its last encoded chunk."""
    buf = _buffer()
    buf.push(b"ab", is_final=False, now=0.0)
    buf.push(b"", is_final=True, now=1.0)
    assert buf.push(b"cd", is_final=False, now=1.1) == []
    assert buf.push(b"ef", is_final=True, now=1.15) == []
    assert buf.deadline == 1.2  # a second final does not stretch the hangover
    assert buf.wake(1.2) == [StreamCut(CutReason.FINAL, b"abcdef", 3)]
    assert buf.push(b"gh", is_final=False, now=1.25) == []  # after it: the next utterance
    assert buf.buffered_bytes == 2


def test_silence_cuts_after_pause_ms_and_its_150_ms_hangover() -> None:
    buf = _buffer()
    buf.push(b"ab", is_final=False, now=0.0)
    buf.push(b"cd", is_final=False, now=1.0)
    assert buf.deadline == 4.0
    assert buf.wake(4.0) == []  # the pause cut is decided, its hangover runs
    assert buf.deadline == 4.15
    assert buf.wake(4.15) == [StreamCut(CutReason.PAUSE, b"abcd", 2)]


def test_the_first_chunk_after_a_long_silence_starts_a_new_utterance() -> None:
    """Better: Rust makes that chunk a one-chunk job; here it opens the next utterance, and
    the old one is cut at once, whether or not its timer has fired yet."""
    for late in (3.05, 3.2, 60.0):
        buf = _buffer()
        buf.push(b"ab", is_final=False, now=0.0)
        assert buf.push(b"cd", is_final=False, now=late) == [StreamCut(CutReason.PAUSE, b"ab", 1)]
        assert buf.buffered_bytes == 2


def test_a_final_in_a_pause_hangover_makes_it_a_final_cut() -> None:
    buf = _buffer()
    buf.push(b"ab", is_final=False, now=0.0)
    assert buf.push(b"", is_final=True, now=3.1) == []
    assert buf.wake(3.31) == [StreamCut(CutReason.FINAL, b"ab", 1)]


def test_a_buffer_is_never_dropped_for_idling() -> None:
    """Better: Rust forgets a session's chunks after 60 s idle."""
    buf = _buffer(StreamLimits(pause_ms=10**9))
    buf.push(b"ab", is_final=False, now=0.0)
    assert buf.wake(3600.0) == []
    buf.push(b"cd", is_final=True, now=7200.0)
    assert buf.wake(7201.0) == [StreamCut(CutReason.FINAL, b"abcd", 2)]


def test_a_bare_final_on_an_empty_buffer_waits_its_hangover_for_the_utterance() -> None:
    """Lingua's web client sends the final before the utterance's only chunk (its first Send,
    its silence timer): that chunk, arriving in the final's hangover, is the utterance, cut
    manual at the hangover's end.  A bare final nothing follows makes nothing."""
    buf = _buffer()
    assert buf.push(b"", is_final=True, now=10.0) == []
    assert not buf.empty and buf.deadline == 10.2
    assert buf.push(b"tail", is_final=False, now=10.05) == []
    assert buf.deadline == 10.2  # the final's hangover, not a pause
    assert buf.wake(10.2) == [StreamCut(CutReason.FINAL, b"tail", 1)]
    assert buf.empty and buf.deadline is None

    assert buf.push(b"", is_final=True, now=20.0) == []
    assert buf.wake(20.2) == []  # nothing came: no utterance
    assert buf.empty and buf.deadline is None

    assert buf.push(b"", is_final=True, now=30.0) == []
    assert buf.push(b"late", is_final=False, now=30.5) == []  # after the hangover: a new one
    assert buf.deadline == 30.5 + 3.0  # ends by a pause (or a final) like any utterance
    assert buf.wake(33.65) == [StreamCut(CutReason.PAUSE, b"late", 1)]


def test_too_long_cuts_at_once_with_the_chunk_that_reached_it() -> None:
    buf = _buffer(StreamLimits(max_utterance_ms=1000))
    assert buf.push(b"x" * 16000, is_final=False, now=0.0) == []
    cuts = buf.push(b"y" * 16000, is_final=False, now=0.1)
    assert cuts == [StreamCut(CutReason.TOO_LONG, b"x" * 16000 + b"y" * 16000, 2)]
    assert buf.empty and buf.deadline is None


def test_too_long_counts_opus_at_60_bytes_a_frame() -> None:
    buf = _buffer(StreamLimits(max_utterance_ms=1000), audio_format="opus")
    assert buf.push(b"x" * 2999, is_final=False, now=0.0) == []
    assert [c.reason for c in buf.push(b"y", is_final=False, now=0.1)] == [CutReason.TOO_LONG]


def test_an_unknown_format_has_no_length_only_a_size() -> None:
    buf = _buffer(StreamLimits(max_utterance_ms=1, max_utterance_bytes=100), audio_format="wav")
    assert buf.push(b"x" * 100, is_final=False, now=0.0) == []
    assert [c.reason for c in buf.push(b"y", is_final=False, now=0.1)] == [CutReason.TOO_BIG]


def test_too_big_cuts_at_once_and_beats_a_final() -> None:
    buf = _buffer(StreamLimits(max_utterance_bytes=10))
    assert buf.push(b"x" * 10, is_final=False, now=0.0) == []  # at the limit: not over it
    cuts = buf.push(b"y", is_final=True, now=0.1)
    assert cuts == [StreamCut(CutReason.TOO_BIG, b"x" * 10 + b"y", 2)]


def test_a_final_that_reaches_too_long_keeps_its_hangover_and_its_flag() -> None:
    """Lingua's precedence: too big, then final, then too long."""
    buf = _buffer(StreamLimits(max_utterance_ms=1000))
    assert buf.push(b"x" * 32000, is_final=True, now=0.0) == []
    assert buf.wake(0.2) == [StreamCut(CutReason.FINAL, b"x" * 32000, 1)]


def test_a_full_buffer_does_not_wait_out_a_final_hangover() -> None:
    buf = _buffer(StreamLimits(max_utterance_ms=1000))
    buf.push(b"x" * 16000, is_final=True, now=0.0)
    assert buf.push(b"y" * 16000, is_final=False, now=0.1) == [
        StreamCut(CutReason.FINAL, b"x" * 16000 + b"y" * 16000, 2)
    ]


def test_cuts_with_nothing_buffered_make_nothing() -> None:
    buf = _buffer()
    assert buf.push(b"", is_final=True, now=0.0) == []
    assert buf.push(b"", is_final=False, now=1.0) == []
    assert buf.deadline is None and buf.wake(100.0) == []
    buf.push(b"ab", is_final=False, now=200.0)
    assert [c.reason for c in buf.wake(204.0)] == [CutReason.PAUSE]
    assert buf.push(b"", is_final=True, now=204.1) == []  # a bare final after a pause cut
    assert buf.wake(205.0) == []


# --- properties ---------------------------------------------------------------------------------

_event = st.one_of(
    st.tuples(
        st.just("chunk"),
        st.floats(0, 0.5),  # time since the previous event, in s
        st.integers(0, 6),  # size, in units of 6 bytes (0: an empty chunk)
        st.booleans(),  # is_final
    ),
    st.tuples(st.just("wake"), st.floats(0, 0.5), st.just(0), st.just(False)),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_event, max_size=60),
    pause_ms=st.integers(50, 400),
    max_ms=st.integers(1, 40),
    max_bytes=st.integers(1, 60),
    audio_format=st.sampled_from(["pcm16", "opus", "wav"]),
)
def test_every_chunk_lands_in_exactly_one_nonempty_cut_in_order(
    events: list[tuple[str, float, int, bool]],
    pause_ms: int,
    max_ms: int,
    max_bytes: int,
    audio_format: str,
) -> None:
    limits = StreamLimits(pause_ms=pause_ms, max_utterance_ms=max_ms, max_utterance_bytes=max_bytes)
    buf = StreamBuffer(limits, audio_format=audio_format, sample_rate=16000)
    sent: list[bytes] = []
    cuts: list[StreamCut] = []
    now = 0.0
    for number, (kind, dt, units, is_final) in enumerate(events):
        now += dt
        deadline = buf.deadline
        if kind == "wake":
            got = buf.wake(now)
            if deadline is None or now < deadline:
                assert got == []  # woken early: nothing is due
        else:
            chunk = f"{number:06d}".encode() * units  # distinct, so order shows in the join
            if chunk:
                sent.append(chunk)
            got = buf.push(chunk, is_final=is_final, now=now)
        cuts += got
        # Bounded: too big cuts at once, so what stays never exceeds the limit.
        assert buf.buffered_bytes <= max_bytes
        assert (buf.deadline is None) == buf.empty
    cuts += buf.wake(now + 3600)  # a final silence cuts whatever is left
    assert buf.empty and buf.deadline is None
    assert all(cut.audio and cut.chunks for cut in cuts)
    assert b"".join(cut.audio for cut in cuts) == b"".join(sent)
    assert sum(cut.chunks for cut in cuts) == len(sent)
    for cut in cuts:
        if cut.reason is not CutReason.TOO_BIG:
            assert len(cut.audio) <= max_bytes
        if cut.reason is CutReason.TOO_LONG:
            length = duration_ms(len(cut.audio), audio_format, 16000)
            assert length is not None and length >= max_ms
