"""The demo's client load: many concurrent sessions, each speaking in short bursts.

Each session sends a burst of 1–3 utterances back to back (a speaker's segments), awaits
their answers, checks that they arrived in the order sent (contract §2), then pauses for a
random "think time" before the next burst.  Closed loop: a slow scheduler slows the load
down instead of piling it up, so the figures measure the system, not an ever-growing queue.

With ``streaming`` a session streams each segment as ``audio_chunk`` frames of 100 ms and
ends it with ``is_final`` (docs/protocol.md §2 "Streaming"), waits out the scheduler's 200 ms
hangover before the next segment (chunks inside it would join the ended one), and takes the
answers from its stream, checking that their indexes rise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from switchboard.client.audio import sine_pcm16
from switchboard.client.errors import ClientError, ServerError
from switchboard.client.session import AudioStream, PendingTranslation, Session
from switchboard.client.translate import HANGOVER_GAP_S

SAMPLE_RATE = 16000
CHUNK_BYTES = SAMPLE_RATE * 2 // 10  # 100 ms of pcm16
PAIRS: tuple[tuple[str, str], ...] = (("en", "de"), ("en", "fr"), ("de", "en"), ("fr", "en"))


@dataclass(slots=True)
class Tally:
    """What the clients saw.  ``lost`` is sent minus answered: an utterance that got neither
    a result nor an error."""

    sent: int = 0
    results: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    session_failures: Counter[str] = field(default_factory=Counter)
    round_trips: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return self.results + sum(self.errors.values())

    @property
    def lost(self) -> int:
        return self.sent - self.answered


def make_clips(count: int = 24, *, seed: int = 7) -> list[bytes]:
    """Short tones (0.3–0.8 s) of different pitches: distinct audio, distinct pseudo-text."""
    rng = random.Random(seed)
    return [
        sine_pcm16(rng.uniform(0.3, 0.8), sample_rate=SAMPLE_RATE, frequency=rng.uniform(200, 900))
        for _ in range(count)
    ]


class Load:
    def __init__(
        self,
        url: str,
        *,
        sessions: int,
        tally: Tally,
        think_time: float = 1.0,
        seed: int = 1,
        pairs: Sequence[tuple[str, str]] = PAIRS,
        streaming: bool = False,
    ) -> None:
        self.url = url
        self.sessions = sessions
        self.tally = tally
        self.think_time = think_time
        self.seed = seed
        self.pairs = pairs
        self.streaming = streaming
        self.clips = make_clips()
        self.open_sessions = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run every session until ``stop``; each finishes its burst, then closes."""
        await asyncio.gather(*(self._session(n, stop) for n in range(self.sessions)))

    async def _session(self, n: int, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed * 100_003 + n)
        src, tgt = self.pairs[n % len(self.pairs)]
        try:
            async with Session.connect(
                self.url,
                src_lang=src,
                tgt_lang=tgt,
                heartbeat_interval=5.0,
                audio_format="pcm16",
                sample_rate=SAMPLE_RATE,
            ) as session:
                self.open_sessions += 1
                try:
                    await self._speak(session, rng, stop)
                finally:
                    self.open_sessions -= 1
        except ClientError as exc:
            self.tally.session_failures[type(exc).__name__] += 1

    async def _speak(self, session: Session, rng: random.Random, stop: asyncio.Event) -> None:
        # Start at a random moment so 50 sessions do not all speak in the same millisecond.
        await _sleep_unless(stop, rng.uniform(0, self.think_time))
        while not stop.is_set():
            if self.streaming:
                await self._stream_burst(session.stream(), rng)
                await _sleep_unless(stop, rng.expovariate(1 / self.think_time))
                continue
            handles = []
            for _ in range(rng.randint(1, 3)):
                clip = self.clips[rng.randrange(len(self.clips))]
                handles.append(await session.send(clip, sample_rate=SAMPLE_RATE))
                self.tally.sent += 1
            await self._collect(handles)
            await _sleep_unless(stop, rng.expovariate(1 / self.think_time))

    async def _collect(self, handles: list[PendingTranslation]) -> None:
        last_arrival = 0.0
        for handle in handles:
            try:
                result = await handle
            except ServerError as exc:
                if exc.code is not None:  # a real answer; code None: the session died
                    self.tally.errors[exc.code] += 1
                continue
            self.tally.results += 1
            self.tally.round_trips.append(result.latency_s)
            if handle.resends:
                continue  # resent after OVERLOADED: it takes its place after later ones
            arrival = handle.sent_at + result.latency_s
            if arrival < last_arrival:
                self.tally.out_of_order += 1
            last_arrival = arrival

    async def _stream_burst(self, stream: AudioStream, rng: random.Random) -> None:
        segments = rng.randint(1, 3)
        for number in range(segments):
            if number:
                await asyncio.sleep(HANGOVER_GAP_S)
            clip = self.clips[rng.randrange(len(self.clips))]
            for at in range(0, len(clip), CHUNK_BYTES):
                await stream.send(clip[at : at + CHUNK_BYTES])
            await stream.end()
            self.tally.sent += 1
        last_index = -1
        for _ in range(segments):
            try:
                result = await stream.answer()
            except ServerError as exc:
                if exc.code is None:  # the session died: what is left counts as lost
                    return
                self.tally.errors[exc.code] += 1
                continue
            self.tally.results += 1
            self.tally.round_trips.append(result.latency_s)
            if result.utterance_index <= last_index:
                self.tally.out_of_order += 1
            last_index = result.utterance_index


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
