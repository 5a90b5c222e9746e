"""``switchboard translate``: send one utterance through a scheduler and print the answer."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from switchboard.client.audio import AudioError, Clip, raw_pcm, read_wav, sine_pcm16
from switchboard.client.errors import ClientError
from switchboard.client.session import Session, Translation

Echo = Callable[[str], None]


def load_clip(
    path: str | None,
    *,
    raw: bool = False,
    sample_rate: int | None = None,
    generate_seconds: float | None = None,
) -> Clip:
    """The audio to send: a WAV file, raw PCM16 (``raw`` + ``sample_rate``), or a tone."""
    if generate_seconds is not None:
        if path is not None:
            raise AudioError("give either an audio file or --generate-seconds, not both")
        rate = sample_rate or 16000
        return Clip(sine_pcm16(generate_seconds, sample_rate=rate), rate)
    if path is None:
        raise AudioError("give an audio file, or --generate-seconds N for a test tone")
    if not raw:
        return read_wav(path)
    if sample_rate is None:
        raise AudioError("--raw needs --sample-rate")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read {path}: {exc.strerror}") from None
    return raw_pcm(data, sample_rate)


def run_translate(
    clip: Clip,
    *,
    url: str,
    src_lang: str,
    tgt_lang: str,
    token: str | None = None,
    timeout: float = 60.0,
    echo: Echo = print,
    echo_err: Echo = lambda line: print(line, file=sys.stderr),
) -> int:
    """Translate ``clip``; print the answer (status 0) or the error (status 1)."""
    try:
        result = asyncio.run(
            _translate(clip, url=url, src=src_lang, tgt=tgt_lang, token=token, limit=timeout)
        )
    except ClientError as exc:
        echo_err(f"switchboard: error: {exc}")
        return 1
    except TimeoutError:
        echo_err(f"switchboard: error: no answer within {timeout:g}s")
        return 1
    for line in describe(result):
        echo(line)
    return 0


async def _translate(
    clip: Clip, *, url: str, src: str, tgt: str, token: str | None, limit: float
) -> Translation:
    async with (
        asyncio.timeout(limit),
        Session.connect(url, src_lang=src, tgt_lang=tgt, token=token) as session,
    ):
        return await session.translate(
            clip.pcm, sample_rate=clip.sample_rate, audio_format=clip.audio_format
        )


def describe(result: Translation) -> list[str]:
    return [
        f"text_asr:        {result.text_asr}",
        f"text_translated: {result.text_translated}",
        f"node: {result.node_id}  job: {result.job_id}  latency: {result.latency_s * 1000:.1f} ms",
    ]
