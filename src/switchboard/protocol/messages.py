"""Typed inbound messages of contract §1–§2, decoded straight from JSON by msgspec.

Fields the contract does not list are ignored (msgspec's default), never rejected.  Opaque
fields are not modelled here: the codec keeps the frame's top-level values as raw JSON slices
(``msgspec.Raw``) and copies them into outgoing frames byte for byte.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
Number = int | float
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
LangCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Msg(msgspec.Struct, tag_field="type", frozen=True, omit_defaults=True):
    """Base: one JSON object per frame, tagged by ``type``."""


class _Item(msgspec.Struct, frozen=True, omit_defaults=True):
    """Base for nested objects."""


# --- nested objects -----------------------------------------------------------------------------


class Hardware(_Item, frozen=True):
    cpu_cores: Number
    memory_gb: Number
    gpus: list[Any] | None = None


class InstalledModel(_Item, frozen=True):
    kind: str
    model_id: str | None = None
    src_lang: str | None = None
    tgt_lang: str | None = None
    dialect: str | None = None
    version: str | None = None


class InstalledService(_Item, frozen=True):
    type: str
    status: str
    service_id: str | None = None
    device: str | None = None


class CapabilityByType(_Item, frozen=True):
    type: str
    ready: bool


class LangPair(_Item, frozen=True):
    src: LangCode
    tgt: LangCode


class LanguageCapabilities(_Item, frozen=True):
    supported_language_pairs: list[LangPair] | None = None
    asr_languages: list[str] | None = None
    tts_languages: list[str] | None = None
    semantic_languages: list[str] | None = None


class ResourceUsage(_Item, frozen=True):
    cpu_percent: Number
    mem_percent: Number
    running_jobs: NonNegInt
    gpu_percent: Number | None = None
    gpu_mem_percent: Number | None = None


class Pipeline(_Item, frozen=True):
    use_asr: bool = True
    use_nmt: bool = True
    use_tts: bool = True


class NodeErrorInfo(_Item, frozen=True):
    code: str | None = None
    message: str | None = None
    details: dict[str, Any] | None = None


# --- node → scheduler (§1) ----------------------------------------------------------------------


class NodeRegister(_Msg, tag="node_register", frozen=True):
    version: str
    platform: str
    hardware: Hardware
    installed_models: list[InstalledModel]
    capability_by_type: list[CapabilityByType]
    features_supported: dict[str, Any]
    accept_public_jobs: bool
    node_id: Id | None = None
    installed_services: list[InstalledService] | None = None
    language_capabilities: LanguageCapabilities | None = None
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    token: str | None = None


class NodeHeartbeat(_Msg, tag="node_heartbeat", frozen=True):
    """A heartbeat as the scheduler reads it: only the fields it uses.

    A heartbeat arrives every few seconds from every node, so its decode is on the loop
    often; ``installed_services`` (information the scheduler never reads) is not modelled,
    and msgspec skips it without building its structs.  Nodes send ``NodeHeartbeatReport``.
    """

    node_id: Id
    timestamp: Number
    resource_usage: ResourceUsage
    capability_by_type: list[CapabilityByType] | None = None
    language_capabilities: LanguageCapabilities | None = None


class NodeHeartbeatReport(NodeHeartbeat, tag="node_heartbeat", frozen=True):
    """The whole heartbeat of contract §1, as a node (``switchboard.agent``) encodes it."""

    installed_services: list[InstalledService] | None = None


class _JobEvent(_Msg, frozen=True):
    job_id: Id
    attempt_id: PosInt
    node_id: Id
    session_id: Id
    trace_id: str


class JobAck(_JobEvent, tag="job_ack", frozen=True):
    pass


class JobStarted(_JobEvent, tag="job_started", frozen=True):
    pass


class JobResult(_Msg, tag="job_result", frozen=True):
    job_id: Id
    attempt_id: PosInt
    node_id: Id
    session_id: Id
    utterance_index: NonNegInt
    success: bool
    trace_id: str
    error: NodeErrorInfo | None = None


class AsrPartial(_Msg, tag="asr_partial", frozen=True):
    job_id: Id
    node_id: Id
    session_id: Id
    utterance_index: NonNegInt
    text: str
    is_final: bool
    trace_id: str


class NodeErrorMsg(_Msg, tag="node_error", frozen=True):
    node_id: Id
    code: str
    message: str
    details: dict[str, Any] | None = None


NodeInbound = (
    NodeRegister | NodeHeartbeat | JobAck | JobStarted | JobResult | AsrPartial | NodeErrorMsg
)

# --- client → scheduler (§2) --------------------------------------------------------------------


class SessionInit(_Msg, tag="session_init", frozen=True):
    client_version: str
    platform: str
    src_lang: LangCode
    tgt_lang: LangCode
    dialect: str | None = None
    features: dict[str, Any] | None = None
    tenant_id: str | None = None
    mode: str | None = None
    lang_a: str | None = None
    lang_b: str | None = None
    auto_langs: list[str] | None = None
    trace_id: str | None = None
    token: str | None = None
    # Extension (lingua-parity §1): the audio the client will send, echoed as negotiated in
    # session_init_ack.  Lingua's session_init has neither and always answers opus / 16000.
    audio_format: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    sample_rate: PosInt | None = None


class Utterance(_Msg, tag="utterance", frozen=True):
    session_id: Id
    utterance_index: NonNegInt
    src_lang: LangCode
    tgt_lang: LangCode
    audio: str
    audio_format: str
    sample_rate: PosInt
    manual_cut: bool | None = None
    pipeline: Pipeline | None = None
    trace_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class ClientHeartbeat(_Msg, tag="client_heartbeat", frozen=True):
    session_id: Id
    timestamp: Number


class SessionClose(_Msg, tag="session_close", frozen=True):
    session_id: Id
    reason: str


class TtsPlayEnded(_Msg, tag="tts_play_ended", frozen=True):
    """The client finished playing a group's audio (lingua-parity §4); never answered."""

    session_id: Id
    group_id: Id
    ts_end_ms: NonNegInt
    trace_id: str | None = None


class AudioChunk(_Msg, tag="audio_chunk", frozen=True):
    """Streamed speech (contract v1.1, lingua-parity §3): a piece of the session's audio, in
    its negotiated format, cut into utterances by the scheduler.  ``payload`` is base64 and
    checked by the server (bad base64: ``INVALID_MESSAGE``); Lingua's client leaves it out of
    a bare final frame, so it is optional.  ``seq`` is the client's and not used."""

    session_id: Id
    seq: NonNegInt
    is_final: bool
    payload: str | None = None
    client_timestamp_ms: int | None = None


SessionInbound = (
    SessionInit | Utterance | ClientHeartbeat | SessionClose | TtsPlayEnded | AudioChunk
)
