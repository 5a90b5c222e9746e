"""The stand-in backend (pure, plus a loop for its sleeps): deterministic text, the latency
distribution it promises, and partials."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from switchboard.agent import Job, LatencyModel, PseudoTranslateBackend
from switchboard.agent.pseudo import pseudo_transcript, pseudo_translation
from switchboard.demo.stats import percentile


def _job(audio: bytes, *, tgt: str = "de", use_nmt: bool = True) -> Job:
    return Job(
        job_id="job-1",
        attempt_id=1,
        session_id="s-1",
        utterance_index=0,
        src_lang="en",
        tgt_lang=tgt,
        audio=audio,
        audio_format="pcm16",
        sample_rate=16000,
        trace_id="t",
        use_nmt=use_nmt,
    )


class Partials:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    async def emit(self, text: str, *, is_final: bool = False) -> None:
        self.seen.append((text, is_final))


def test_transcript_is_a_function_of_the_audio() -> None:
    """Same bytes, same words; 200 different clips give (almost) 200 different texts."""
    assert pseudo_transcript(b"abc") == pseudo_transcript(b"abc")
    texts = {" ".join(pseudo_transcript(i.to_bytes(4, "big"))) for i in range(200)}
    assert len(texts) >= 195
    assert all(3 <= len(pseudo_transcript(i.to_bytes(4, "big"))) <= 8 for i in range(200))


def test_translation_depends_on_target_and_is_marked() -> None:
    words = pseudo_transcript(b"clip")
    de, fr = pseudo_translation(words, "de"), pseudo_translation(words, "fr")
    assert de.startswith("[de] ") and fr.startswith("[fr] ")
    assert de[5:] != fr[5:]
    assert len(de[5:].split()) == len(words)


async def test_run_is_deterministic_and_says_it_is_a_stand_in() -> None:
    backend = PseudoTranslateBackend(latency=LatencyModel(0.0, 0.0))
    first = await backend.run(_job(b"\x01\x02" * 50), Partials())
    again = await backend.run(_job(b"\x01\x02" * 50), Partials())
    assert first == again
    assert first.text_asr == " ".join(pseudo_transcript(b"\x01\x02" * 50))
    assert first.text_translated.startswith("[de] ")
    assert first.extra == {"backend": "pseudo-translate", "stand_in": True}
    no_mt = await backend.run(_job(b"x", use_nmt=False), Partials())
    assert no_mt.text_translated == "" and no_mt.text_asr


async def test_partials_grow_word_by_word_and_end_final() -> None:
    backend = PseudoTranslateBackend(latency=LatencyModel(0.001, 0.001), partials=True)
    sink = Partials()
    result = await backend.run(_job(b"speech"), sink)
    words = result.text_asr.split()
    assert [text for text, _ in sink.seen] == [
        " ".join(words[:n]) for n in range(1, len(words) + 1)
    ]
    assert [final for _, final in sink.seen] == [False] * (len(words) - 1) + [True]
    assert backend.streams_partials


def test_latency_model_holds_its_median_and_p99() -> None:
    """20 000 seeded draws land on the configured median and p99 (within sampling error)."""
    model = LatencyModel(median_s=0.1, p99_s=0.5, seed=42)
    rng = model.sampler()
    draws = sorted(model.draw(rng) for _ in range(20_000))
    median, p99 = percentile(draws, 0.5), percentile(draws, 0.99)
    assert median is not None and p99 is not None
    assert math.isclose(median, 0.1, rel_tol=0.05), median
    assert math.isclose(p99, 0.5, rel_tol=0.1), p99


def test_latency_model_is_seeded_and_degenerates_to_a_constant() -> None:
    a, b = LatencyModel(0.1, 0.4, seed=3), LatencyModel(0.1, 0.4, seed=3)
    ra, rb = a.sampler(), b.sampler()
    assert [a.draw(ra) for _ in range(5)] == [b.draw(rb) for _ in range(5)]
    constant = LatencyModel(0.2, 0.2)
    assert [constant.draw(random.Random(n)) for n in range(5)] == pytest.approx([0.2] * 5)


def test_latency_model_rejects_p99_below_median() -> None:
    with pytest.raises(ValueError):
        LatencyModel(0.5, 0.1)


async def test_sleep_is_cancellable() -> None:
    """The backend's wait is where job_cancel lands: it must raise CancelledError."""
    backend = PseudoTranslateBackend(latency=LatencyModel(10.0, 10.0))
    task = asyncio.create_task(backend.run(_job(b"x"), Partials()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
