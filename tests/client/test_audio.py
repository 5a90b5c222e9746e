"""Audio helpers of the SDK and the translate command (pure, stdlib only)."""

from __future__ import annotations

import array
import wave
from pathlib import Path

import pytest

from switchboard.client.audio import AudioError, raw_pcm, read_wav, sine_pcm16, write_wav
from switchboard.client.translate import load_clip


def test_sine_is_mono_pcm16_of_the_right_length_and_level() -> None:
    pcm = sine_pcm16(1.5, sample_rate=8000, amplitude=0.5)
    assert len(pcm) == 2 * 12000
    samples = array.array("h", pcm)  # this machine is little-endian, as the wire is
    assert max(samples) == pytest.approx(0.5 * 32767, rel=0.01)
    assert min(samples) == pytest.approx(-0.5 * 32767, rel=0.01)


def test_wav_round_trip(tmp_path: Path) -> None:
    pcm = sine_pcm16(0.25, sample_rate=22050)
    write_wav(tmp_path / "a.wav", pcm, sample_rate=22050)
    clip = read_wav(tmp_path / "a.wav")
    assert (clip.pcm, clip.sample_rate, clip.audio_format) == (pcm, 22050, "pcm16")
    assert clip.seconds == pytest.approx(0.25, abs=1e-4)


def test_stereo_or_8_bit_wav_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\0" * 64)
    with pytest.raises(AudioError, match="mono"):
        read_wav(path)
    with pytest.raises(AudioError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")


def test_load_clip_sources(tmp_path: Path) -> None:
    raw = tmp_path / "speech.pcm"
    raw.write_bytes(b"\1\0" * 100)
    assert load_clip(str(raw), raw=True, sample_rate=8000).sample_rate == 8000
    assert load_clip(None, generate_seconds=0.5).pcm == sine_pcm16(0.5)
    with pytest.raises(AudioError, match="--sample-rate"):
        load_clip(str(raw), raw=True)
    with pytest.raises(AudioError, match="either"):
        load_clip(str(raw), generate_seconds=1.0)
    with pytest.raises(AudioError):
        load_clip(None)
    with pytest.raises(AudioError, match="even"):
        raw_pcm(b"\0\0\0", 16000)
