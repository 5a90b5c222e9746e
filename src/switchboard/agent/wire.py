"""The node side of contract §1 as pure functions: frames in, typed values out, and back.

Outbound frames reuse the scheduler's own message structs (``protocol.messages``) wherever the
contract defines every field, so the agent and the scheduler cannot drift apart on a name.
``job_result`` is built as a plain object because its optional fields are open-ended.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, cast

import msgspec

from switchboard import __version__
from switchboard.agent.backends import Job, Result
from switchboard.protocol.messages import (
    AsrPartial,
    CapabilityByType,
    Hardware,
    InstalledModel,
    InstalledService,
    JobAck,
    JobStarted,
    LangPair,
    LanguageCapabilities,
    NodeErrorMsg,
    NodeHeartbeatReport,
    NodeRegister,
    ResourceUsage,
)

Pair = tuple[str, str]
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode

# --- scheduler → node ---------------------------------------------------------------------------


class RegisterAck(msgspec.Struct, frozen=True):
    node_id: str
    message: str = ""
    status: str = ""


class _Pipeline(msgspec.Struct, frozen=True):
    use_asr: bool = True
    use_nmt: bool = True
    use_tts: bool = True


class JobAssign(msgspec.Struct, frozen=True):
    job_id: str
    attempt_id: int
    session_id: str
    utterance_index: int
    src_lang: str
    tgt_lang: str
    trace_id: str
    audio: str
    audio_format: str
    sample_rate: int
    pipeline: _Pipeline = _Pipeline()
    # Lingua's additions (lingua-parity §1–§2): the session's fields and the cut.  Each is
    # left out by the scheduler when unset or false.
    mode: str | None = None
    lang_a: str | None = None
    lang_b: str | None = None
    auto_langs: list[str] | None = None
    features: dict[str, Any] | None = None
    dialect: str | None = None
    tenant_id: str | None = None
    enable_streaming_asr: bool = False
    partial_update_interval_ms: int | None = None
    padding_ms: int | None = None
    is_manual_cut: bool = False
    is_pause_triggered: bool = False
    is_timeout_triggered: bool = False


class JobCancel(msgspec.Struct, frozen=True):
    job_id: str
    trace_id: str = ""
    reason: str = ""


class ErrorFrame(msgspec.Struct, frozen=True):
    code: str
    message: str = ""
    details: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Unknown:
    """A frame of a type the node does not handle (ignored: forward compatibility)."""

    type: str | None


Inbound = RegisterAck | JobAssign | JobCancel | ErrorFrame | Unknown
_TYPES: Final[Mapping[str, type[msgspec.Struct]]] = {
    "node_register_ack": RegisterAck,
    "job_assign": JobAssign,
    "job_cancel": JobCancel,
    "error": ErrorFrame,
}
# Fields a Job has its own attribute for and ``opaque`` leaves out.  Lingua's additions stay
# in ``opaque`` as well, as before they had attributes.
_ASSIGN_FIELDS: Final = frozenset(
    {
        "type",
        "job_id",
        "attempt_id",
        "session_id",
        "utterance_index",
        "src_lang",
        "tgt_lang",
        "trace_id",
        "audio",
        "audio_format",
        "sample_rate",
        "pipeline",
    }
)


class BadFrame(ValueError):
    """A scheduler frame the node cannot read; ``job`` names the job when it could be read."""

    def __init__(self, message: str, *, job: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.job = job


def decode(frame: str | bytes) -> tuple[Inbound, dict[str, Any]]:
    """A scheduler frame as a typed value, and the frame as a plain object."""
    try:
        raw = _decode(frame)
    except msgspec.DecodeError as exc:
        raise BadFrame(f"not a JSON object: {exc}") from None
    kind = raw.get("type")
    struct = _TYPES.get(kind) if isinstance(kind, str) else None
    if struct is None:
        return Unknown(kind if isinstance(kind, str) else None), raw
    try:
        return cast(Inbound, msgspec.convert(raw, struct)), raw
    except msgspec.ValidationError as exc:
        raise BadFrame(f"invalid {kind}: {exc}", job=raw) from None


def to_job(assign: JobAssign, raw: Mapping[str, Any]) -> Job:
    """The backend's view of a ``job_assign``; ``BadFrame`` when the audio is not base64."""
    try:
        audio = base64.b64decode(assign.audio, validate=True)
    except (binascii.Error, ValueError):
        raise BadFrame("audio is not valid base64", job=raw) from None
    return Job(
        job_id=assign.job_id,
        attempt_id=assign.attempt_id,
        session_id=assign.session_id,
        utterance_index=assign.utterance_index,
        src_lang=assign.src_lang,
        tgt_lang=assign.tgt_lang,
        audio=audio,
        audio_format=assign.audio_format,
        sample_rate=assign.sample_rate,
        trace_id=assign.trace_id,
        use_asr=assign.pipeline.use_asr,
        use_nmt=assign.pipeline.use_nmt,
        use_tts=assign.pipeline.use_tts,
        mode=assign.mode,
        lang_a=assign.lang_a,
        lang_b=assign.lang_b,
        auto_langs=None if assign.auto_langs is None else tuple(assign.auto_langs),
        features=None if assign.features is None else MappingProxyType(assign.features),
        dialect=assign.dialect,
        tenant_id=assign.tenant_id,
        streaming_asr=assign.enable_streaming_asr,
        partial_update_interval_ms=assign.partial_update_interval_ms,
        padding_ms=assign.padding_ms or 0,
        is_manual_cut=assign.is_manual_cut,
        is_pause_triggered=assign.is_pause_triggered,
        is_timeout_triggered=assign.is_timeout_triggered,
        opaque={k: v for k, v in raw.items() if k not in _ASSIGN_FIELDS},
    )


# --- node → scheduler ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """What a node announces about itself in ``node_register`` and heartbeats."""

    pairs: Sequence[Pair]
    services: Sequence[str]
    max_concurrency: int
    backend_name: str
    streams_partials: bool
    hardware: Mapping[str, Any]
    platform: str
    accept_public_jobs: bool = True


def _capabilities(services: Sequence[str], *, ready: bool) -> list[CapabilityByType]:
    return [CapabilityByType(type=s, ready=ready) for s in services]


def _installed_services(services: Sequence[str], *, ready: bool) -> list[InstalledService]:
    status = "running" if ready else "stopping"
    return [
        InstalledService(type=s, status=status, service_id=f"{s}-1", device="local")
        for s in services
    ]


def register(ident: Identity, *, node_id: str | None, token: str | None) -> bytes:
    """``node_register`` (contract §1), with the extensions ``max_concurrency`` and
    ``token``; pairs go both in ``language_capabilities`` and as NMT models, so the scheduler
    reads them whichever rule it applies (§1 "Pairs")."""
    models = [
        InstalledModel(
            kind="nmt",
            model_id=f"{ident.backend_name}-{src}-{tgt}",
            src_lang=src,
            tgt_lang=tgt,
            version=__version__,
        )
        for src, tgt in ident.pairs
    ]
    hw = ident.hardware
    message = NodeRegister(
        version=__version__,
        platform=ident.platform,
        hardware=Hardware(cpu_cores=hw["cpu_cores"], memory_gb=hw["memory_gb"], gpus=hw["gpus"]),
        installed_models=models,
        capability_by_type=_capabilities(ident.services, ready=True),
        features_supported={"asr_partial": ident.streams_partials},
        accept_public_jobs=ident.accept_public_jobs,
        node_id=node_id,
        installed_services=_installed_services(ident.services, ready=True),
        language_capabilities=LanguageCapabilities(
            supported_language_pairs=[LangPair(src=s, tgt=t) for s, t in ident.pairs],
            asr_languages=sorted({s for s, _ in ident.pairs}),
            tts_languages=sorted({t for _, t in ident.pairs}),
        ),
        max_concurrency=ident.max_concurrency,
        token=token,
    )
    return _encode(message)


def heartbeat(
    ident: Identity,
    *,
    node_id: str,
    cpu_percent: float,
    mem_percent: float,
    running_jobs: int,
    ready: bool,
    gpu_percent: float | None = None,
    gpu_mem_percent: float | None = None,
) -> bytes:
    """``node_heartbeat``; ``ready=False`` reports every service not ready, which makes the
    scheduler mark the node ``degraded`` and send it no new job (§1 "Status").  A GPU field
    that is None is left out of the frame (no GPU: nothing, not 0)."""
    message = NodeHeartbeatReport(
        node_id=node_id,
        timestamp=int(time.time() * 1000),
        resource_usage=ResourceUsage(
            cpu_percent=round(cpu_percent, 1),
            mem_percent=round(mem_percent, 1),
            running_jobs=running_jobs,
            gpu_percent=None if gpu_percent is None else round(gpu_percent, 1),
            gpu_mem_percent=None if gpu_mem_percent is None else round(gpu_mem_percent, 1),
        ),
        installed_services=_installed_services(ident.services, ready=ready),
        capability_by_type=_capabilities(ident.services, ready=ready),
    )
    return _encode(message)


def job_ack(job: Job, node_id: str) -> bytes:
    return _encode(
        JobAck(
            job_id=job.job_id,
            attempt_id=job.attempt_id,
            node_id=node_id,
            session_id=job.session_id,
            trace_id=job.trace_id,
        )
    )


def job_started(job: Job, node_id: str) -> bytes:
    return _encode(
        JobStarted(
            job_id=job.job_id,
            attempt_id=job.attempt_id,
            node_id=node_id,
            session_id=job.session_id,
            trace_id=job.trace_id,
        )
    )


def asr_partial(job: Job, node_id: str, text: str, *, is_final: bool) -> bytes:
    return _encode(
        AsrPartial(
            job_id=job.job_id,
            node_id=node_id,
            session_id=job.session_id,
            utterance_index=job.utterance_index,
            text=text,
            is_final=is_final,
            trace_id=job.trace_id,
        )
    )


def encode_node_error(node_id: str, code: str, message: str) -> bytes:
    return _encode(NodeErrorMsg(node_id=node_id, code=code, message=message))


@dataclass(frozen=True, slots=True)
class JobRef:
    """The ids a ``job_result`` must carry; read from a ``job_assign`` even when the rest of
    it was unusable, so that the scheduler still gets its one answer."""

    job_id: str
    attempt_id: int
    session_id: str
    utterance_index: int
    trace_id: str

    @classmethod
    def of(cls, job: Job | JobAssign) -> JobRef:
        return cls(job.job_id, job.attempt_id, job.session_id, job.utterance_index, job.trace_id)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> JobRef | None:
        try:
            return cls(
                str(raw["job_id"]),
                int(raw["attempt_id"]),
                str(raw["session_id"]),
                int(raw["utterance_index"]),
                str(raw.get("trace_id", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _result_head(ref: JobRef, node_id: str, *, success: bool) -> dict[str, Any]:
    return {
        "type": "job_result",
        "job_id": ref.job_id,
        "attempt_id": ref.attempt_id,
        "node_id": node_id,
        "session_id": ref.session_id,
        "utterance_index": ref.utterance_index,
        "success": success,
        "trace_id": ref.trace_id,
    }


def job_success(ref: JobRef, node_id: str, result: Result, *, processing_ms: int) -> bytes:
    frame = _result_head(ref, node_id, success=True)
    frame.update(
        text_asr=result.text_asr,
        text_translated=result.text_translated,
        tts_audio=result.tts_audio,
        tts_format=result.tts_format,
        processing_time_ms=processing_ms,
    )
    if result.extra:
        frame["extra"] = dict(result.extra)
    return _encode(frame)


def job_failure(
    ref: JobRef,
    node_id: str,
    *,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    processing_ms: int | None = None,
) -> bytes:
    frame = _result_head(ref, node_id, success=False)
    frame["error"] = {"code": code, "message": message, "details": dict(details or {})}
    if processing_ms is not None:
        frame["processing_time_ms"] = processing_ms
    return _encode(frame)
