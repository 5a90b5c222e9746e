# examples/whisper_ct2_backend.py: a node with a real model behind it.
"""faster-whisper (ASR) and Opus-MT on CTranslate2 (MT) as a Switchboard node backend.

Install on the node, beside ``switchboard-scheduler[agent]``::

    pip install faster-whisper ctranslate2 sentencepiece numpy

and convert one Opus-MT model per language pair once::

    ct2-transformers-converter --model Helsinki-NLP/opus-mt-en-de \\
        --output_dir /models/opus-mt-en-de-ct2 --copy_files source.spm target.spm

Then either run this file (``python examples/whisper_ct2_backend.py ws://scheduler:5010``) or
name the class to the agent from the repository root::

    WHISPER_MODEL=large-v3 CT2_MT_MODELS=en-de=/models/opus-mt-en-de-ct2 \\
        switchboard node --backend examples.whisper_ct2_backend:WhisperCT2Backend \\
        --pair en:de --services asr,nmt --max-concurrency 2

faster-whisper, CTranslate2, SentencePiece and NumPy are imported inside the methods that use
them, so this module imports (and a test checks it is a Backend) on a machine without them;
:meth:`WhisperCT2Backend.start` is where a missing library is reported. The node announces only
``asr`` and ``nmt``: there is no TTS here, so clients send ``pipeline={"use_tts": false, …}``
(docs/howto-real-model.md).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from switchboard.agent import (
    AgentConfig,
    Backend,
    BackendError,
    Job,
    PartialSink,
    Result,
    run_agent,
)

WHISPER_RATE = 16_000  # faster-whisper takes float32 mono samples at 16 kHz
Pair = tuple[str, str]


def _require(module: str, package: str) -> ModuleType:
    """Import ``module`` now, or say which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"the whisper-ct2 backend needs {package!r}: pip install faster-whisper ctranslate2"
            " sentencepiece numpy"
        ) from None


def parse_mt_models(spec: str) -> dict[Pair, str]:
    """``"en-de=/models/a,en-fr=/models/b"`` → ``{("en", "de"): "/models/a", …}``."""
    models: dict[Pair, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        pair, sep, path = item.partition("=")
        src, dash, tgt = pair.strip().partition("-")
        if not (sep and dash and src and tgt and path.strip()):
            raise ValueError(f"expected SRC-TGT=DIRECTORY, got {item!r}")
        models[(src.lower(), tgt.lower())] = path.strip()
    return models


def pcm16_to_whisper(audio: bytes, sample_rate: int) -> Any:
    """Little-endian 16-bit mono PCM at ``sample_rate`` → float32 in [-1, 1) at 16 kHz.

    Linear interpolation is enough for speech recognition (Whisper's own front end low-passes
    to 8 kHz); a client sending 16 kHz audio skips it.
    """
    np = _require("numpy", "numpy")
    if len(audio) % 2:
        raise BackendError("UNSUPPORTED_AUDIO", "pcm16 audio must have an even number of bytes")
    samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
    if sample_rate == WHISPER_RATE or samples.size == 0:
        return samples
    length = round(samples.size * WHISPER_RATE / sample_rate)
    positions = np.linspace(0, samples.size - 1, num=max(length, 1), dtype=np.float64)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


@dataclass(slots=True)
class _Translator:
    """One CTranslate2 model with its SentencePiece vocabularies."""

    model: Any
    source: Any
    target: Any

    def translate(self, text: str, beam_size: int) -> str:
        tokens = self.source.encode(text, out_type=str)
        (result,) = self.model.translate_batch([tokens], beam_size=beam_size)
        decoded: str = self.target.decode(result.hypotheses[0])
        return decoded


class WhisperCT2Backend(Backend):
    """ASR with faster-whisper, then MT with an Opus-MT model per pair on CTranslate2.

    Arguments left as ``None`` come from the environment, so that ``switchboard node
    --backend examples.whisper_ct2_backend:WhisperCT2Backend`` (which passes none) can be
    configured: ``WHISPER_MODEL`` (a size such as ``large-v3`` or a converted model's
    directory; default ``small``), ``CT2_MT_MODELS`` (``SRC-TGT=DIRECTORY,…``), ``CT2_DEVICE``
    (``auto``, ``cuda`` or ``cpu``; default ``auto``), ``CT2_COMPUTE_TYPE`` (default
    ``default``: float16 on a GPU, int8 or float32 on a CPU).
    """

    name = "whisper-ct2"
    streams_partials = True  # one partial per decoded segment

    def __init__(
        self,
        *,
        whisper_model: str | None = None,
        mt_models: Mapping[Pair, str] | None = None,
        device: str | None = None,
        compute_type: str | None = None,
        beam_size: int = 5,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.whisper_model = whisper_model or environ.get("WHISPER_MODEL", "small")
        if mt_models is None:
            mt_models = parse_mt_models(environ.get("CT2_MT_MODELS", ""))
        self.mt_models = dict(mt_models)
        self.device = device or environ.get("CT2_DEVICE", "auto")
        self.compute_type = compute_type or environ.get("CT2_COMPUTE_TYPE", "default")
        self.beam_size = beam_size
        self._asr: Any = None
        self._translators: dict[Pair, _Translator] = {}

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """The pairs this backend can translate: announce exactly these (``AgentConfig``)."""
        return tuple(sorted(self.mt_models))

    async def start(self) -> None:
        # Loaded before the first registration: a node must not announce a service it cannot
        # run yet (docs/agent.md).  Loading takes seconds to minutes; threads keep the loop free.
        whisper = _require("faster_whisper", "faster-whisper")
        ct2 = _require("ctranslate2", "ctranslate2")
        spm = _require("sentencepiece", "sentencepiece")
        _require("numpy", "numpy")
        self._asr = await asyncio.to_thread(
            whisper.WhisperModel,
            self.whisper_model,
            device=self.device,
            compute_type=self.compute_type,
        )
        for pair, directory in self.mt_models.items():
            model = await asyncio.to_thread(
                ct2.Translator, directory, device=self.device, compute_type=self.compute_type
            )
            self._translators[pair] = _Translator(
                model,
                spm.SentencePieceProcessor(model_file=os.path.join(directory, "source.spm")),
                spm.SentencePieceProcessor(model_file=os.path.join(directory, "target.spm")),
            )

    async def close(self) -> None:
        # Dropping the last reference frees the GPU memory (both libraries release on delete).
        self._asr = None
        self._translators.clear()

    async def run(self, job: Job, partials: PartialSink) -> Result:
        if self._asr is None:
            raise BackendError("NODE_NOT_READY", "models are not loaded (start() has not run)")
        if not job.use_asr:
            raise BackendError("UNSUPPORTED_PIPELINE", "this node needs audio to transcribe")
        if job.audio_format != "pcm16":
            raise BackendError("UNSUPPORTED_AUDIO", f"need pcm16 audio, got {job.audio_format!r}")
        samples = pcm16_to_whisper(job.audio, job.sample_rate)
        loop = asyncio.get_running_loop()

        def emit(text: str) -> None:  # called from the ASR thread
            asyncio.run_coroutine_threadsafe(partials.emit(text), loop)

        # Inference runs in threads: if the job is cancelled, the thread still finishes and
        # its result is dropped (a running CUDA kernel cannot be interrupted).
        text, heard_lang = await asyncio.to_thread(self._transcribe, samples, job.src_lang, emit)
        if not text:
            raise BackendError("ASR_EMPTY", "no speech recognised")
        await partials.emit(text, is_final=True)
        translated = ""
        if job.use_nmt:
            translator = self._translators.get((heard_lang, job.tgt_lang))
            if translator is None:
                raise BackendError(
                    "UNSUPPORTED_PAIR",
                    f"no MT model for {heard_lang}-{job.tgt_lang}",
                    details={"heard_language": heard_lang},
                )
            translated = await asyncio.to_thread(translator.translate, text, self.beam_size)
        return Result(
            text_asr=text,
            text_translated=translated,
            extra={"backend": self.name, "heard_language": heard_lang},
        )

    def _transcribe(
        self, samples: Any, language: str, emit: Callable[[str], None]
    ) -> tuple[str, str]:
        """The transcript and its language (Whisper's guess when the job says ``auto``)."""
        segments, info = self._asr.transcribe(
            samples,
            language=None if language == "auto" else language.split("-")[0],
            beam_size=self.beam_size,
            vad_filter=True,
        )
        heard: list[str] = []
        for segment in segments:  # a generator: each segment is decoded as it is reached
            heard.append(segment.text.strip())
            emit(" ".join(heard))
        detected = language if language != "auto" else str(info.language)
        return " ".join(heard), detected


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else "ws://127.0.0.1:5010"
    backend = WhisperCT2Backend()
    if not backend.pairs:
        print("set CT2_MT_MODELS, e.g. en-de=/models/opus-mt-en-de-ct2", file=sys.stderr)
        return 2
    # No TTS here: announce asr and nmt only, so the scheduler sends this node only jobs whose
    # pipeline has use_tts false.  Size max_concurrency to what the GPU runs at once.
    config = AgentConfig(url=url, pairs=backend.pairs, services=("asr", "nmt"), max_concurrency=2)
    return run_agent(config, backend)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
