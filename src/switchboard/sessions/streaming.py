"""A session's streaming buffer: ``audio_chunk`` payloads cut into utterances, sans I/O.

Contract v1.1 (lingua-parity.md §3, docs/protocol.md §2 "Streaming"): chunks append in arrival
order and the buffer is cut into one utterance when

* final: a chunk with ``is_final``; after a 200 ms hangover; ``is_manual_cut``, padding 280 ms;
* pause: no chunk for ``--pause-ms``; after a 150 ms hangover; ``is_timeout_triggered``,
  padding 220 ms;
* too long: buffered audio ≥ ``--max-utterance-ms``; at once; ``is_timeout_triggered``,
  padding 220 ms;
* too big: buffer > ``--max-utterance-bytes``; at once; no flag, no padding.

A cut with nothing buffered makes nothing.  Where Lingua's scheduler loses audio, three rules
do better:

* chunks that arrive during a final cut's hangover join that utterance (the web client sends
  its final frame before its last encoded chunk).  A bare final on an empty buffer opens the
  hangover too: Lingua's web client, on its first Send and on its silence timer, sends the final
  before the utterance's only chunk, which must not wait for the next cut and join the next
  utterance.  If nothing arrives by its end, there is no job and no index is used;
* the first chunk after a silence of ``--pause-ms`` or more starts a new utterance, even when
  it arrives before the pause cut went out: the pause cut goes at once, without that chunk
  (so a chunk in a *pause* cut's hangover, which always follows such a silence, is not joined);
* nothing is dropped for idling: the buffer keeps its audio until one of the cuts takes it.

Precedence when one chunk meets several rules follows Lingua's order: too big, then final,
then too long.  A final chunk during a pause cut's hangover turns it into a final cut (the
client says the utterance is over; its tail may still come), ending 200 ms after that chunk.

Bounds: a buffer never holds more than ``max_utterance_bytes`` plus the chunk that crossed it
(too big cuts at once), and the server counts an open buffer as one of the session's pending
utterances, so a session that streams and never pauses holds at most
``--max-pending-per-session`` utterances of audio.

Time arrives as ``now`` (seconds, any monotonic clock, the same for every call) and the buffer
says when it next needs a call (``deadline``), so its owner keeps one timer per streaming
session and the buffer itself reads no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from switchboard.protocol.cuts import Cut, CutKind


class CutReason(enum.Enum):
    """Why a buffer was cut; each reason fixes its hangover and the job's ``Cut`` (its flag
    and ``padding_ms``, §3 table)."""

    FINAL = "final"
    PAUSE = "pause"
    TOO_LONG = "too_long"
    TOO_BIG = "too_big"

    @property
    def hangover_ms(self) -> int:
        return _HANGOVER_MS[self]

    @property
    def cut(self) -> Cut:
        return _CUT[self]


_HANGOVER_MS = {
    CutReason.FINAL: 200,
    CutReason.PAUSE: 150,
    CutReason.TOO_LONG: 0,
    CutReason.TOO_BIG: 0,
}
# A pause is is_timeout_triggered, not is_pause_triggered: Lingua's pause timer finalizes
# with its "Timeout" reason (lingua-parity §3 table).
_CUT = {
    CutReason.FINAL: Cut(CutKind.MANUAL, 280),
    CutReason.PAUSE: Cut(CutKind.TIMEOUT, 220),
    CutReason.TOO_LONG: Cut(CutKind.TIMEOUT, 220),
    CutReason.TOO_BIG: Cut(CutKind.NONE, 0),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamLimits:
    """``--pause-ms``, ``--max-utterance-ms``, ``--max-utterance-bytes``."""

    pause_ms: int = 3000
    max_utterance_ms: int = 20000
    max_utterance_bytes: int = 512000


@dataclass(frozen=True, slots=True)
class StreamCut:
    """One utterance cut from the stream: its audio (the chunks joined in order) and why."""

    reason: CutReason
    audio: bytes
    chunks: int  # how many non-empty chunks it joins


def duration_ms(size: int, audio_format: str, sample_rate: int) -> int | None:
    """Audio length of ``size`` bytes, as Lingua estimates it; ``None`` for a format it cannot.

    pcm16 is 2 bytes a sample, mono (bytes/32 at the default 16 kHz); opus is estimated at 60
    bytes per 20 ms frame.  Other formats have no length, so only ``too big`` bounds them.
    """
    fmt = audio_format.lower()
    if fmt == "pcm16":
        return size * 1000 // (2 * sample_rate)
    if fmt == "opus":
        return size // 60 * 20
    return None


class StreamBuffer:
    """One session's stream: ``push`` a chunk or ``wake`` at ``deadline``; both return the
    utterances cut, oldest first."""

    __slots__ = (
        "_chunks",
        "_cut",
        "_cut_at",
        "_format",
        "_last_at",
        "_limits",
        "_rate",
        "_size",
    )

    def __init__(self, limits: StreamLimits, *, audio_format: str, sample_rate: int) -> None:
        self._limits = limits
        self._format = audio_format
        self._rate = sample_rate
        self._chunks: list[bytes] = []
        self._size = 0
        self._last_at = 0.0  # when the last chunk was buffered (meaningful while any is)
        self._cut: CutReason | None = None  # a cut in its hangover
        self._cut_at = 0.0  # when that hangover ends

    @property
    def buffered_bytes(self) -> int:
        return self._size

    @property
    def empty(self) -> bool:
        """Nothing buffered and no hangover open (then nothing is due either)."""
        return not self._chunks and self._cut is None

    @property
    def deadline(self) -> float | None:
        """When ``wake`` must next be called, or ``None`` while nothing is buffered."""
        if self._cut is not None:
            return self._cut_at
        if self._chunks:
            return self._last_at + self._limits.pause_ms / 1000
        return None

    def wake(self, now: float) -> list[StreamCut]:
        """The owner's timer: the cuts due by ``now`` (none if woken early)."""
        out: list[StreamCut] = []
        self._advance(now, out)
        return out

    def push(self, audio: bytes, *, is_final: bool, now: float) -> list[StreamCut]:
        """One chunk's decoded payload (may be empty) in arrival order."""
        out: list[StreamCut] = []
        self._advance(now, out)
        if self._cut is CutReason.PAUSE and audio:
            # After a silence of --pause-ms: the old utterance is over, this one starts anew.
            self._emit(out)
        if audio:
            self._chunks.append(audio)
            self._size += len(audio)
            self._last_at = now
        if not self._chunks:
            if is_final and self._cut is None:
                # A bare final: its utterance's audio may still be on the way (module
                # docstring); the hangover ends with a cut only if some arrived.
                self._cut = CutReason.FINAL
                self._cut_at = now + CutReason.FINAL.hangover_ms / 1000
            return out
        if self._size > self._limits.max_utterance_bytes:
            self._cut = CutReason.TOO_BIG
            self._emit(out)
        elif is_final:
            if self._cut is not CutReason.FINAL:
                self._cut = CutReason.FINAL
                self._cut_at = now + CutReason.FINAL.hangover_ms / 1000
        elif self._too_long():
            if self._cut is not CutReason.FINAL:
                self._cut = CutReason.TOO_LONG
            self._emit(out)  # a full buffer does not wait out a final's hangover
        return out

    def _too_long(self) -> bool:
        length = duration_ms(self._size, self._format, self._rate)
        return length is not None and length >= self._limits.max_utterance_ms

    def _advance(self, now: float, out: list[StreamCut]) -> None:
        if self._cut is None and self._chunks:
            silent_until = self._last_at + self._limits.pause_ms / 1000
            if now >= silent_until:
                self._cut = CutReason.PAUSE
                self._cut_at = silent_until + CutReason.PAUSE.hangover_ms / 1000
        if self._cut is not None and now >= self._cut_at:
            if self._chunks:
                self._emit(out)
            else:
                self._cut = None  # a bare final's hangover with nothing in it: no utterance

    def _emit(self, out: list[StreamCut]) -> None:
        kind = self._cut
        assert kind is not None and self._chunks  # every caller has set both
        out.append(StreamCut(kind, b"".join(self._chunks), len(self._chunks)))
        self._chunks = []
        self._size = 0
        self._cut = None
