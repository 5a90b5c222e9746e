"""``switchboard demo --rooms``: the client load as conversations in rooms (lingua-parity §5).

Sessions sit in rooms of three (or two), one language each (en, de, fr).  Each member speaks
in bursts; every utterance is translated for each other member into its language, and the
speaker waits until all of them have heard the burst before it thinks and speaks again
(closed loop, as the plain load).  The tally counts deliveries: ``sent`` is one per utterance
per listener, ``results``/``errors`` what the listeners got, ``out_of_order`` an answer that
came before an earlier one of the same speaker, and a round trip runs from the speaker's
send to the listener's receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence

from switchboard.client.errors import ClientError
from switchboard.client.rooms import RoomSpeech
from switchboard.client.session import Session
from switchboard.demo.load import SAMPLE_RATE, Tally, make_clips

LANGS = ("en", "de", "fr")
ROOM_PAIRS = tuple((a, b) for a in LANGS for b in LANGS if a != b)
HEARD_WITHIN = 30.0  # seconds a speaker waits for its burst to be heard before going on


def room_sizes(sessions: int) -> list[int]:
    """Rooms of three, the last one or two of two, so that nobody sits alone."""
    if sessions < 2:
        raise ValueError("--rooms needs at least 2 sessions")
    threes, rest = divmod(sessions, 3)
    if rest == 0:
        return [3] * threes
    if rest == 2:
        return [3] * threes + [2]
    return [3] * (threes - 1) + [2, 2]


class _Room:
    """What one room's members share: who heard what, and when it was sent."""

    def __init__(self) -> None:
        self.heard: Counter[tuple[str, int]] = Counter()
        self.sent_at: dict[tuple[str, int], float] = {}
        self.changed = asyncio.Condition()


class RoomLoad:
    def __init__(
        self,
        url: str,
        *,
        sessions: int,
        tally: Tally,
        think_time: float = 1.0,
        seed: int = 1,
    ) -> None:
        self.url = url
        self.sizes = room_sizes(sessions)
        self.tally = tally
        self.think_time = think_time
        self.seed = seed
        self.clips = make_clips()
        self.open_sessions = 0

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._room(n, size, stop) for n, size in enumerate(self.sizes)))

    async def _room(self, n: int, size: int, stop: asyncio.Event) -> None:
        shared = _Room()
        try:
            async with contextlib.AsyncExitStack() as stack:
                members: list[Session] = []
                for lang in LANGS[:size]:
                    other = LANGS[1] if lang == LANGS[0] else LANGS[0]
                    members.append(
                        await stack.enter_async_context(
                            Session.connect(
                                self.url, src_lang=lang, tgt_lang=other, heartbeat_interval=5.0
                            )
                        )
                    )
                listeners = [asyncio.create_task(self._listen(m, shared)) for m in members]
                code = (await members[0].rooms.create(preferred_lang=LANGS[0])).code
                for member, lang in zip(members[1:], LANGS[1:size], strict=False):
                    await member.rooms.join(code, preferred_lang=lang)
                self.open_sessions += size
                try:
                    await asyncio.gather(
                        *(
                            self._speak(
                                m,
                                size - 1,
                                shared,
                                random.Random(self.seed * 1009 + n * 7 + i),
                                stop,
                            )
                            for i, m in enumerate(members)
                        )
                    )
                finally:
                    self.open_sessions -= size
                    for task in listeners:
                        task.cancel()
        except ClientError as exc:
            self.tally.session_failures[type(exc).__name__] += 1

    async def _listen(self, session: Session, shared: _Room) -> None:
        last: dict[str, int] = {}
        async for event in session.rooms.events():
            if not isinstance(event, RoomSpeech) or event.utterance_index is None:
                continue
            key = (event.speaker, event.utterance_index)
            if event.error is not None:
                self.tally.errors[event.error.code or "UNKNOWN"] += 1
            else:
                self.tally.results += 1
                if key in shared.sent_at:
                    self.tally.round_trips.append(time.perf_counter() - shared.sent_at[key])
            if event.utterance_index < last.get(event.speaker, -1):
                self.tally.out_of_order += 1
            last[event.speaker] = event.utterance_index
            async with shared.changed:
                shared.heard[key] += 1
                shared.changed.notify_all()

    async def _speak(
        self,
        session: Session,
        listeners: int,
        shared: _Room,
        rng: random.Random,
        stop: asyncio.Event,
    ) -> None:
        await _sleep_unless(stop, rng.uniform(0, self.think_time))
        while not stop.is_set():
            burst: list[tuple[str, int]] = []
            for _ in range(rng.randint(1, 3)):
                clip = self.clips[rng.randrange(len(self.clips))]
                # Its own answer never comes while others listen: the handle is not awaited.
                handle = await session.send(clip, sample_rate=SAMPLE_RATE)
                key = (session.session_id, handle.utterance_index)
                shared.sent_at[key] = handle.sent_at
                burst.append(key)
                self.tally.sent += listeners
            await self._heard(shared, burst, listeners)
            await _sleep_unless(stop, rng.expovariate(1 / self.think_time))

    @staticmethod
    async def _heard(shared: _Room, burst: Sequence[tuple[str, int]], listeners: int) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEARD_WITHIN), shared.changed:
                await shared.changed.wait_for(
                    lambda: all(shared.heard[key] >= listeners for key in burst)
                )


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
