"""``PseudoTranslateBackend``: the stand-in backend. It is NOT a real model.

It lets a scheduler, its nodes and its clients be run and measured without weights or a GPU:

- the "transcript" is a few words picked deterministically from a hash of the audio bytes
  (the same audio always "says" the same thing);
- the "translation" maps each word to a made-up word of the target language, also by hash, and
  is prefixed with the target code: ``"[de] lomika tesu ravo"``;
- its latency is drawn from a lognormal distribution given by its median and p99, from a
  seeded generator, so a run is reproducible;
- it can stream the transcript as ``asr_partial`` frames, word by word.

It produces no speech: ``tts_audio`` is empty.  Every result says ``extra.stand_in = true``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Final

from switchboard.agent.backends import Backend, Job, PartialSink, Result

_WORDS: Final = (
    "hello", "world", "train", "station", "coffee", "morning", "please", "thank", "you",
    "where", "is", "the", "ticket", "window", "today", "tomorrow", "meeting", "room", "left",
    "right", "water", "music", "city", "market", "bread", "open", "closed", "late", "early",
    "friend", "table", "street",
)  # fmt: skip
_SYLLABLES: Final = (
    "ka", "lo", "mi", "re", "su", "ta", "vo", "ne", "pi", "da", "ru", "se", "bo", "li", "ma",
    "te",
)  # fmt: skip
_Z99: Final = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Lognormal latency from its median and 99th percentile (seconds), seeded.

    ln(latency) ~ N(μ, σ) with μ = ln(median) and σ = ln(p99 / median) / z₀.₉₉, so both
    figures hold for the distribution; ``p99 == median`` gives a constant latency.
    """

    median_s: float = 0.15
    p99_s: float = 0.6
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.median_s < 0 or self.p99_s < self.median_s:
            raise ValueError("latency needs 0 <= median <= p99")

    @property
    def sigma(self) -> float:
        if self.median_s == 0 or self.p99_s == self.median_s:
            return 0.0
        return math.log(self.p99_s / self.median_s) / _Z99

    def sampler(self) -> random.Random:
        return random.Random(self.seed)

    def draw(self, rng: random.Random) -> float:
        if self.median_s == 0:
            return 0.0
        return rng.lognormvariate(math.log(self.median_s), self.sigma)


def pseudo_transcript(audio: bytes) -> list[str]:
    """3–8 words chosen by the SHA-256 of the audio: deterministic, and different audio
    almost always gives a different text."""
    digest = hashlib.sha256(audio).digest()
    count = 3 + digest[0] % 6
    return [
        _WORDS[int.from_bytes(digest[1 + 2 * i : 3 + 2 * i], "big") % len(_WORDS)]
        for i in range(count)
    ]


def pseudo_word(word: str, tgt_lang: str) -> str:
    """A made-up word of ``tgt_lang`` for ``word`` (two or three syllables, by hash)."""
    digest = hashlib.sha256(f"{tgt_lang}\0{word}".encode()).digest()
    length = 2 + digest[0] % 2
    return "".join(_SYLLABLES[digest[1 + i] % len(_SYLLABLES)] for i in range(length))


def pseudo_translation(words: list[str], tgt_lang: str) -> str:
    return f"[{tgt_lang}] " + " ".join(pseudo_word(w, tgt_lang) for w in words)


class PseudoTranslateBackend(Backend):
    """Stand-in: not a real model (see the module docstring)."""

    name = "pseudo-translate"

    def __init__(self, *, latency: LatencyModel | None = None, partials: bool = False) -> None:
        self.latency = latency or LatencyModel()
        self.streams_partials = partials
        self._rng = self.latency.sampler()

    async def run(self, job: Job, partials: PartialSink) -> Result:
        delay = self.latency.draw(self._rng)
        words = pseudo_transcript(job.audio)
        if self.streams_partials:
            # Spread the partials over the first half of the latency, as streaming ASR would.
            step = delay / 2 / len(words)
            for n in range(1, len(words) + 1):
                await asyncio.sleep(step)
                await partials.emit(" ".join(words[:n]), is_final=n == len(words))
            delay /= 2
        await asyncio.sleep(delay)
        text_asr = " ".join(words) if job.use_asr else ""
        return Result(
            text_asr=text_asr,
            text_translated=pseudo_translation(words, job.tgt_lang) if job.use_nmt else "",
            extra={"backend": self.name, "stand_in": True},
        )
