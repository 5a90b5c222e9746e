"""Audio for utterances: WAV files, raw PCM, and a generated test tone (stdlib only).

The contract carries audio as base64 with ``audio_format`` and ``sample_rate`` (§2
``utterance``) and no channel count, so what Switchboard's clients send is mono 16-bit
little-endian PCM (``pcm16``), the format Lingua nodes expect.
"""

from __future__ import annotations

import array
import math
import sys
import wave
from dataclasses import dataclass
from pathlib import Path


class AudioError(ValueError):
    """Audio that cannot be sent as ``pcm16``; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Clip:
    pcm: bytes
    sample_rate: int
    audio_format: str = "pcm16"

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


def read_wav(path: str | Path) -> Clip:
    """The PCM frames of a mono 16-bit WAV file, with its sample rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioError(f"cannot read WAV file {path}: {exc}") from None
    if channels != 1 or width != 2:
        raise AudioError(
            f"{path} is {channels}-channel {8 * width}-bit audio; Switchboard sends mono"
            " 16-bit PCM (convert it, e.g. `sox in.wav -c 1 -b 16 out.wav`)"
        )
    return Clip(frames, rate)


def raw_pcm(data: bytes, sample_rate: int) -> Clip:
    """Raw mono 16-bit little-endian PCM as read from a file."""
    if sample_rate < 1:
        raise AudioError("--sample-rate must be at least 1")
    if len(data) % 2:
        raise AudioError("raw PCM16 must have an even number of bytes")
    return Clip(data, sample_rate)


def sine_pcm16(
    seconds: float, *, sample_rate: int = 16000, frequency: float = 440.0, amplitude: float = 0.3
) -> bytes:
    """A sine tone as mono 16-bit little-endian PCM: test audio that needs no file."""
    if seconds < 0 or sample_rate < 1:
        raise AudioError("a tone needs seconds >= 0 and sample_rate >= 1")
    count = round(seconds * sample_rate)
    peak = amplitude * 32767
    step = 2 * math.pi * frequency / sample_rate
    samples = array.array("h", (round(peak * math.sin(step * n)) for n in range(count)))
    if sys.byteorder == "big":
        samples.byteswap()  # the wire format is little-endian whatever the machine
    return samples.tobytes()


def write_wav(path: str | Path, pcm: bytes, *, sample_rate: int) -> None:
    """Write mono 16-bit PCM as a WAV file (for examples and tests)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
