"""The backend interface: what a node agent runs for each job it accepts.

A backend is the model side of a node (ASR → MT → TTS).  The agent owns the wire (contract
§1): it decodes ``job_assign`` into a :class:`Job`, calls :meth:`Backend.run` in its own
asyncio task, turns the :class:`Result` (or a :class:`BackendError`) into ``job_result``, and
forwards whatever the backend emits on its :class:`PartialSink` as ``asr_partial``.

Cancellation is part of the interface: when the scheduler sends ``job_cancel`` (or the
connection is lost) the agent cancels the task running :meth:`Backend.run`, so the backend sees
``asyncio.CancelledError`` at its current ``await`` and must let it propagate.  A backend that
computes in a thread (``asyncio.to_thread``) cannot stop the thread; the agent still drops the
result, and the thread's work is simply wasted.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One ``job_assign`` (contract §1), with its audio already decoded from base64.

    The session's fields and the cut (lingua-parity §1–§2) have attributes of their own:
    ``mode`` (``one_way`` | ``two_way_auto``), ``lang_a``, ``lang_b``, ``auto_langs``,
    ``features``, ``dialect``, ``tenant_id``; ``streaming_asr`` and
    ``partial_update_interval_ms`` (the scheduler asks for partials at that interval);
    ``padding_ms`` (silence to append, 0: none) and the cut flags.  ``opaque`` holds every
    field of the ``job_assign`` but the ids, languages, trace id, audio and pipeline: the
    fields just named too (as before they had attributes), ``manual_cut`` and unknown
    fields, exactly as the scheduler relayed them.
    """

    job_id: str
    attempt_id: int
    session_id: str
    utterance_index: int
    src_lang: str
    tgt_lang: str
    audio: bytes
    audio_format: str
    sample_rate: int
    trace_id: str
    use_asr: bool = True
    use_nmt: bool = True
    use_tts: bool = True
    mode: str | None = None
    lang_a: str | None = None
    lang_b: str | None = None
    auto_langs: tuple[str, ...] | None = None
    features: Mapping[str, Any] | None = None
    dialect: str | None = None
    tenant_id: str | None = None
    streaming_asr: bool = False
    partial_update_interval_ms: int | None = None
    padding_ms: int = 0
    is_manual_cut: bool = False
    is_pause_triggered: bool = False
    is_timeout_triggered: bool = False
    opaque: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What a backend answers; the agent adds the ids and ``processing_time_ms``.

    ``tts_audio`` is base64 text, as on the wire.  ``extra`` travels as the ``extra`` field of
    ``job_result`` and reaches the client unchanged (contract §2 ``translation_result``).
    """

    text_asr: str
    text_translated: str
    tts_audio: str = ""
    tts_format: str = "pcm16"
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


class PartialSink(Protocol):
    """Where a streaming backend sends partial transcripts (→ ``asr_partial``)."""

    async def emit(self, text: str, *, is_final: bool = False) -> None:
        """Send one partial; never raises when the connection is gone (it is dropped)."""


class BackendError(Exception):
    """A job the backend could not do: answered ``success: false`` with this error.

    ``code`` is the node's own error code (contract §2 "Failures": the client receives it
    as-is), e.g. ``ASR_FAILED`` or ``UNSUPPORTED_AUDIO``.
    """

    def __init__(
        self, code: str, message: str, *, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: Mapping[str, Any] = dict(details or {})


class Backend(abc.ABC):
    """Subclass this to put a model behind a node.

    ``start`` runs once before the agent first registers (load weights there: a node should
    not announce services it cannot run yet); ``close`` once when the agent exits.  ``run`` is
    called concurrently, up to the agent's ``max_concurrency`` at once.
    """

    name: str = "backend"
    """Short name, used in ``installed_models`` ids and logs."""

    streams_partials: bool = False
    """Whether ``run`` emits partials (announced in ``features_supported``); a subclass may
    set it per instance."""

    async def start(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Load models; the default does nothing."""

    async def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Release models; the default does nothing."""

    @abc.abstractmethod
    async def run(self, job: Job, partials: PartialSink) -> Result:
        """Do one job; raise :class:`BackendError` for a failure the client should see."""


def load_backend(spec: str, **options: Any) -> Backend:
    """``MODULE:ATTR`` → an instance of that Backend subclass (``ATTR(**options)``).

    Lets ``switchboard node --backend mypackage.models:WhisperBackend`` run any importable
    backend without its own entry point.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"backend {spec!r} is not of the form MODULE:CLASS")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import backend module {module_name!r}: {exc}") from None
    target = getattr(module, attr, None)
    if not (isinstance(target, type) and issubclass(target, Backend)):
        raise ValueError(f"{spec!r} is not a subclass of switchboard.agent.Backend")
    return target(**options)
