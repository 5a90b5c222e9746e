"""``switchboard translate``: send one utterance through a scheduler and print the answer, or
stream the audio as ``audio_chunk`` frames (``--stream``) and print an answer per utterance."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
    overload_retries: int = 3,
    echo: Echo = print,
    echo_err: Echo = lambda line: print(line, file=sys.stderr),
) -> int:
    """Translate ``clip``; print the answer (status 0) or the error (status 1).  An
    ``OVERLOADED`` answer is retried ``overload_retries`` times (the SDK's back-off)."""
    try:
        result = asyncio.run(
            _translate(
                clip,
                url=url,
                src=src_lang,
                tgt=tgt_lang,
                token=token,
                limit=timeout,
                retries=overload_retries,
            )
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
    clip: Clip, *, url: str, src: str, tgt: str, token: str | None, limit: float, retries: int
) -> Translation:
    async with (
        asyncio.timeout(limit),
        Session.connect(
            url, src_lang=src, tgt_lang=tgt, token=token, overload_retries=retries
        ) as session,
    ):
        return await session.translate(
            clip.pcm, sample_rate=clip.sample_rate, audio_format=clip.audio_format
        )


# How long the CLI waits after ending an utterance before its next chunk: the scheduler joins
# chunks that arrive within a final cut's 200 ms hangover to the ended utterance.
HANGOVER_GAP_S = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamPlan:
    """How ``--stream`` sends a clip: ``chunk_ms`` of audio a frame, an utterance ended every
    ``utterance_seconds`` (keep it under the scheduler's ``--max-utterance-ms``), in real time
    or as fast as the socket takes it."""

    chunk_ms: int = 100
    utterance_seconds: float = 10.0
    realtime: bool = False


def utterances(clip: Clip, plan: StreamPlan) -> list[list[bytes]]:
    """The clip cut into utterances of chunks, whole samples each."""
    bytes_per_ms = clip.sample_rate * 2 / 1000
    chunk = max(2, int(plan.chunk_ms * bytes_per_ms) // 2 * 2)
    per_utterance = max(chunk, int(plan.utterance_seconds * 1000 * bytes_per_ms) // 2 * 2)
    pieces = [clip.pcm[at : at + per_utterance] for at in range(0, len(clip.pcm), per_utterance)]
    return [[piece[at : at + chunk] for at in range(0, len(piece), chunk)] for piece in pieces]


def run_translate_stream(
    clip: Clip,
    *,
    url: str,
    src_lang: str,
    tgt_lang: str,
    plan: StreamPlan,
    token: str | None = None,
    timeout: float = 60.0,
    overload_retries: int = 3,  # streamed utterances are not resent: the audio is gone
    echo: Echo = print,
    echo_err: Echo = lambda line: print(line, file=sys.stderr),
) -> int:
    """Stream ``clip``; print each utterance's answer (status 0) or stop at the first error
    (status 1)."""
    try:
        asyncio.run(
            _stream(
                clip,
                url=url,
                src=src_lang,
                tgt=tgt_lang,
                token=token,
                plan=plan,
                limit=timeout,
                echo=echo,
            )
        )
    except ClientError as exc:
        echo_err(f"switchboard: error: {exc}")
        return 1
    except TimeoutError:
        echo_err(f"switchboard: error: not every answer came within {timeout:g}s")
        return 1
    return 0


async def _stream(
    clip: Clip,
    *,
    url: str,
    src: str,
    tgt: str,
    token: str | None,
    plan: StreamPlan,
    limit: float,
    echo: Echo,
) -> None:
    pieces = utterances(clip, plan)
    async with (
        asyncio.timeout(limit),
        Session.connect(
            url,
            src_lang=src,
            tgt_lang=tgt,
            token=token,
            audio_format=clip.audio_format,
            sample_rate=clip.sample_rate,
        ) as session,
    ):
        stream = session.stream()
        for number, chunks in enumerate(pieces):
            if number:
                await asyncio.sleep(HANGOVER_GAP_S)
            for chunk in chunks:
                await stream.send(chunk)
                if plan.realtime:
                    await asyncio.sleep(len(chunk) / 2 / clip.sample_rate)
            await stream.end()
        for _ in pieces:
            result = await stream.answer()
            echo(f"utterance {result.utterance_index}")
            for line in describe(result):
                echo("  " + line)


def describe(result: Translation) -> list[str]:
    return [
        f"text_asr:        {result.text_asr}",
        f"text_translated: {result.text_translated}",
        f"node: {result.node_id}  job: {result.job_id}  latency: {result.latency_s * 1000:.1f} ms",
    ]
