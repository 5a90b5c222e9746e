"""examples/whisper_ct2_backend.py imports without its model libraries, is a real Backend, and
its pure parts (pair list, audio conversion) work; no model is loaded or run here."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from switchboard.agent import Backend, BackendError, Job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "whisper_ct2_backend.py"
MODEL_LIBRARIES = ("faster_whisper", "ctranslate2", "sentencepiece")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("whisper_ct2_backend", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first, as an import does: dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return _load()


def _job(**fields: object) -> Job:
    base: dict[str, object] = {
        "job_id": "job-1",
        "attempt_id": 1,
        "session_id": "s-1",
        "utterance_index": 0,
        "src_lang": "en",
        "tgt_lang": "de",
        "audio": b"\0\0" * 160,
        "audio_format": "pcm16",
        "sample_rate": 16000,
        "trace_id": "t",
    }
    base.update(fields)
    return Job(**base)  # type: ignore[arg-type]


def test_the_module_imports_without_the_model_libraries(example: ModuleType) -> None:
    """Importing the example loads none of faster-whisper, CTranslate2 or SentencePiece."""
    before = {name for name in MODEL_LIBRARIES if name in sys.modules}
    _load()
    assert {name for name in MODEL_LIBRARIES if name in sys.modules} == before


def test_the_class_is_a_backend_the_agent_can_load(example: ModuleType) -> None:
    cls = example.WhisperCT2Backend
    assert isinstance(cls, type) and issubclass(cls, Backend)
    backend: Any = example.WhisperCT2Backend(
        environ={"CT2_MT_MODELS": "en-de=/m/ende, en-fr=/m/enfr"}
    )
    assert backend.name == "whisper-ct2" and backend.streams_partials
    assert backend.pairs == (("en", "de"), ("en", "fr"))
    assert backend.whisper_model == "small" and backend.device == "auto"


def test_mt_model_specs_are_checked(example: ModuleType) -> None:
    assert example.parse_mt_models("") == {}
    assert example.parse_mt_models("EN-De=/x") == {("en", "de"): "/x"}
    with pytest.raises(ValueError, match="SRC-TGT=DIRECTORY"):
        example.parse_mt_models("en=/x")


def test_pcm16_becomes_float_samples_at_16_khz(example: ModuleType) -> None:
    pcm = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    same = example.pcm16_to_whisper(pcm, 16000)
    assert same.dtype == np.float32
    assert same.tolist() == pytest.approx([0.0, 0.5, -1.0, 32767 / 32768])
    doubled = example.pcm16_to_whisper(b"\0\0" * 800, 8000)
    assert doubled.size == 1600
    with pytest.raises(BackendError):
        example.pcm16_to_whisper(b"\0\0\0", 16000)


def test_a_job_before_start_is_refused_not_crashed(example: ModuleType) -> None:
    backend = example.WhisperCT2Backend(mt_models={("en", "de"): "/m"})
    with pytest.raises(BackendError) as caught:
        asyncio.run(backend.run(_job(), partials=None))
    assert caught.value.code == "NODE_NOT_READY"


@pytest.mark.skipif(
    importlib.util.find_spec("faster_whisper") is not None, reason="faster-whisper is installed"
)
def test_start_without_faster_whisper_names_what_to_install(example: ModuleType) -> None:
    backend = example.WhisperCT2Backend(mt_models={})
    with pytest.raises(RuntimeError, match="pip install faster-whisper"):
        asyncio.run(backend.start())
