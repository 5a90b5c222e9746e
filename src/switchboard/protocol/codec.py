"""Decode inbound frames into typed messages; encode outbound frames.

Outbound frames are built as ``bytes`` (sent as WebSocket *text* frames: they are UTF-8 JSON).
Opaque values travel as ``msgspec.Raw`` slices of the frame they came in, so audio and a node's
extra result fields are copied byte for byte and never re-encoded (contract §1 ``job_assign``
and §2 ``translation_result``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, cast

import msgspec

from switchboard.errors import ProtocolError
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.cuts import Cut
from switchboard.protocol.messages import AudioChunk, NodeInbound, SessionInbound
from switchboard.protocol.profile import CHANNEL_COUNT, SessionProfile
from switchboard.protocol.rooms import RoomInbound

RawFields = dict[str, msgspec.Raw]

_node_decoder = msgspec.json.Decoder(NodeInbound)
# Room and WebRTC frames (lingua-parity §5–§6) arrive on the session channel too.
SessionFrame = SessionInbound | RoomInbound
_session_decoder = msgspec.json.Decoder(SessionFrame)
_raw_decoder = msgspec.json.Decoder(RawFields)
_int_decoder = msgspec.json.Decoder(int)
_str_decoder = msgspec.json.Decoder(str)
_encoder = msgspec.json.Encoder()
encode = _encoder.encode

# Fields the scheduler sets itself in a job_assign; every other utterance field is opaque.
_ASSIGN_OWN = frozenset(
    {
        "type",
        "job_id",
        "attempt_id",
        "session_id",
        "utterance_index",
        "src_lang",
        "tgt_lang",
        "pipeline",
        "trace_id",
        "token",
        # The session's, whatever the utterance says (lingua-parity §1).
        "mode",
        "lang_a",
        "lang_b",
        "auto_langs",
        "tenant_id",
        # The scheduler's own (lingua-parity §2).
        "enable_streaming_asr",
        "partial_update_interval_ms",
        "padding_ms",
        "is_manual_cut",
        "is_pause_triggered",
        "is_timeout_triggered",
    }
)
# Utterance fields that replace the session's when given, else the session's are sent.
_INHERITED = frozenset({"features", "dialect"})
_NULL = b"null"
_QUOTE = ord('"')
# lingua-parity §2: the node streams asr_partial at this interval.
PARTIAL_UPDATE_INTERVAL_MS = 1000
# Fields of a job_result that never reach the client (contract §2 translation_result).
_RESULT_DROP = frozenset(
    {
        "type",
        "success",
        "attempt_id",
        "error",
        "node_id",
        "session_id",
        "utterance_index",
        "job_id",
        "trace_id",
        "group_id",
        "part_index",
    }
)
_RESULT_DEFAULTS: Mapping[str, object] = {
    "text_asr": "",
    "text_translated": "",
    "tts_audio": "",
    "tts_format": "pcm16",
}


# Everything a hostile frame can make the decoders raise.  RecursionError: msgspec decodes
# nested arrays and objects recursively, so ``[[[[…]]]]`` a few thousand deep (well under
# --max-frame-bytes) exhausts the C stack guard; found by tests/fuzz.
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
# msgspec quotes the offending value ("Invalid value 'xxx…'"): the error must not echo a
# megabyte of the sender's frame back to it, nor grow with it.
MAX_ERROR_MESSAGE = 200


def _invalid(exc: Exception) -> ProtocolError:
    if isinstance(exc, RecursionError):
        return ProtocolError(ErrorCode.INVALID_MESSAGE, "invalid message: nested too deeply")
    text = f"invalid message: {exc}"
    if len(text) > MAX_ERROR_MESSAGE:
        text = text[: MAX_ERROR_MESSAGE - 1] + "…"
    return ProtocolError(ErrorCode.INVALID_MESSAGE, text)


def _check_utf8(frame: str | bytes) -> None:
    """Refuse a frame that is not UTF-8 throughout.  msgspec skips unknown fields without
    validating them, and opaque fields are copied verbatim into *text* frames to nodes and
    clients, whose WebSocket libraries must then fail the connection (RFC 6455 §8.1): one
    utterance could knock a node off (found by tests/fuzz).  ``isascii`` first: JSON with base64
    audio nearly always is."""
    if isinstance(frame, str) or frame.isascii():
        return
    try:
        frame.decode("utf-8")  # strict: also refuses encoded surrogates (RFC 3629)
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"invalid message: not UTF-8 (byte {exc.start})"
        ) from None


def decode_node(frame: str | bytes) -> NodeInbound:
    """A node frame as a typed message, or ``ProtocolError(INVALID_MESSAGE)``."""
    _check_utf8(frame)
    try:
        return cast(NodeInbound, _node_decoder.decode(frame))
    except _DECODE_ERRORS as exc:
        raise _invalid(exc) from None


def decode_session(frame: str | bytes) -> SessionFrame:
    """A client frame as a typed message, or ``ProtocolError(INVALID_MESSAGE)``."""
    _check_utf8(frame)
    try:
        return cast(SessionFrame, _session_decoder.decode(frame))
    except _DECODE_ERRORS as exc:
        raise _invalid(exc) from None


def raw_fields(frame: str | bytes) -> RawFields:
    """The frame's top-level values as raw JSON slices (call only on a frame that decoded)."""
    return _raw_decoder.decode(frame)


def chunk_audio(msg: AudioChunk) -> bytes:
    """An ``audio_chunk``'s payload decoded (none: empty), or ``ProtocolError(INVALID_MESSAGE)``
    when it is not strict base64 (lingua-parity §3 "Errors": such a chunk is not buffered)."""
    payload = msg.payload
    if not payload:
        return b""
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "invalid message: audio_chunk payload is not base64"
        ) from None


def peek_utterance_index(frame: str | bytes) -> int | None:
    """``utterance_index`` of a frame that failed validation, when it can still be read."""
    try:
        raw = _raw_decoder.decode(frame)
        value = _int_decoder.decode(raw["utterance_index"])
    except (*_DECODE_ERRORS, KeyError):
        return None
    return value if value >= 0 else None


# --- outbound -----------------------------------------------------------------------------------


def error(code: str, message: str, details: Mapping[str, Any] | None = None) -> bytes:
    return encode(
        {
            "type": "error",
            "code": code,
            "message": message,
            "details": dict(details) if details else {},
        }
    )


def job_assign(
    utterance: RawFields,
    *,
    job_id: str,
    attempt_id: int,
    session_id: str,
    utterance_index: int,
    src_lang: str,
    tgt_lang: str,
    pipeline: Mapping[str, bool],
    trace_id: str,
    profile: SessionProfile,
    cut: Cut | None = None,
    streaming_asr: bool = True,
) -> bytes:
    """``job_assign`` (contract §1, lingua-parity §1–§2): our fields, the session's, then every
    other utterance field verbatim.  Lingua's ``create_job_assign_message`` omits each
    optional field that is unset and each cut flag that is false; so do we."""
    frame: dict[str, object] = {
        "type": "job_assign",
        "job_id": job_id,
        "attempt_id": attempt_id,
        "session_id": session_id,
        "utterance_index": utterance_index,
        "src_lang": src_lang,
        "tgt_lang": tgt_lang,
        "pipeline": pipeline,
        "trace_id": trace_id,
    }
    _add_session_fields(frame, profile)
    if streaming_asr:
        frame["enable_streaming_asr"] = True
        frame["partial_update_interval_ms"] = PARTIAL_UPDATE_INTERVAL_MS
    if cut is not None:
        frame.update(cut.assign_fields())
    for key, value in utterance.items():
        if key in _ASSIGN_OWN:
            continue
        if key in _INHERITED and bytes(value) == _NULL:
            continue  # null is "not given" (Lingua's Option): the session's applies
        frame[key] = value
    if profile.features is not None and "features" not in frame:
        frame["features"] = profile.features
    if profile.dialect is not None and "dialect" not in frame:
        frame["dialect"] = profile.dialect
    return encode(frame)


def _add_session_fields(frame: dict[str, object], profile: SessionProfile) -> None:
    """The fields every job of the session carries, each only when the session set it."""
    if profile.mode is not None:
        frame["mode"] = profile.mode
    if profile.lang_a is not None:
        frame["lang_a"] = profile.lang_a
    if profile.lang_b is not None:
        frame["lang_b"] = profile.lang_b
    if profile.auto_langs is not None:
        frame["auto_langs"] = profile.auto_langs
    if profile.tenant_id is not None:
        frame["tenant_id"] = profile.tenant_id


def stream_fields(audio: str, *, audio_format: str, sample_rate: int) -> RawFields:
    """The opaque fields of a job that did not come from an ``utterance`` frame, as if it had
    (``job_assign`` copies them like an utterance's)."""
    return {
        "audio": msgspec.Raw(encode(audio)),
        "audio_format": msgspec.Raw(encode(audio_format)),
        "sample_rate": msgspec.Raw(encode(sample_rate)),
    }


def job_cancel(job_id: str, trace_id: str, reason: str) -> bytes:
    return encode({"type": "job_cancel", "job_id": job_id, "trace_id": trace_id, "reason": reason})


def translation_result(
    result: RawFields,
    *,
    session_id: str,
    utterance_index: int,
    job_id: str,
    trace_id: str,
    node_id: str,
    group: tuple[str, int] | None = None,
) -> bytes:
    """``translation_result`` (contract §2): the node's fields relayed, ours authoritative;
    ``group`` is ``(group_id, part_index)`` (lingua-parity §4), left out when ``None``."""
    frame: dict[str, object] = {
        "type": "translation_result",
        "session_id": session_id,
        "utterance_index": utterance_index,
        "job_id": job_id,
        "trace_id": trace_id,
        "node_id": node_id,
    }
    frame.update(_RESULT_DEFAULTS)
    for key, value in result.items():
        if key not in _RESULT_DROP:
            frame[key] = value
    if group is not None:
        frame["group_id"], frame["part_index"] = group
    return encode(frame)


def _blank(raw: msgspec.Raw | None, *, trim: bool) -> bool:
    """Whether a result field is absent, null or ``""`` (``trim``: or only blanks, as Lingua
    trims ``text_asr`` and ``text_translated``).  A value of another type counts as content:
    it is relayed, not judged.  Audio is never copied to be judged: only short values are."""
    if raw is None:
        return True
    if len(raw) <= 4:
        data = bytes(raw)
        if data == b'""' or data == _NULL:
            return True
    if not trim or memoryview(raw)[0] != _QUOTE:
        return False
    try:
        value = _str_decoder.decode(raw)
    except msgspec.DecodeError:
        return False
    return not value.strip()


def is_silent(result: RawFields) -> bool:
    """A successful result with nothing in it: ``text_asr``, ``text_translated`` and
    ``tts_audio`` all empty (lingua-parity §4, ``job_result_sending.rs``)."""
    return (
        _blank(result.get("tts_audio"), trim=False)
        and _blank(result.get("text_asr"), trim=True)
        and _blank(result.get("text_translated"), trim=True)
    )


def has_asr_text(result: RawFields) -> bool:
    """``text_asr`` is a non-empty string: the result joins a group (``group_manager.rs``,
    which does not trim)."""
    raw = result.get("text_asr")
    return raw is not None and len(raw) > 2 and memoryview(raw)[0] == _QUOTE


def missing_result(
    *,
    session_id: str,
    utterance_index: int,
    created_at_ms: int,
    trace_id: str,
    job_id: str,
    node_id: str,
    reason: str = "silence_detected",
) -> bytes:
    """``missing_result`` (lingua-parity §4); ``job_id`` and ``node_id`` are our extension."""
    return encode(
        {
            "type": "missing_result",
            "session_id": session_id,
            "utterance_index": utterance_index,
            "reason": reason,
            "created_at_ms": created_at_ms,
            "trace_id": trace_id,
            "job_id": job_id,
            "node_id": node_id,
        }
    )


def asr_partial(partial: RawFields, *, session_id: str, utterance_index: int) -> bytes:
    """``asr_partial`` relayed to the client without ``node_id`` (contract §2)."""
    frame: dict[str, object] = {key: value for key, value in partial.items() if key != "node_id"}
    frame["session_id"] = session_id
    frame["utterance_index"] = utterance_index
    return encode(frame)


def node_register_ack(node_id: str, message: str = "registered") -> bytes:
    return encode(
        {
            "type": "node_register_ack",
            "node_id": node_id,
            "message": message,
            "status": "registering",
        }
    )


def session_init_ack(
    session_id: str,
    trace_id: str,
    message: str = "session created",
    *,
    audio_format: str,
    sample_rate: int,
) -> bytes:
    """``session_init_ack`` (contract §2) with Lingua's negotiation (lingua-parity §1)."""
    return encode(
        {
            "type": "session_init_ack",
            "session_id": session_id,
            "assigned_node_id": None,
            "message": message,
            "trace_id": trace_id,
            "protocol_version": "1.0",
            "use_binary_frame": False,
            "negotiated_codec": audio_format,
            "negotiated_audio_format": audio_format,
            "negotiated_sample_rate": sample_rate,
            "negotiated_channel_count": CHANNEL_COUNT,
        }
    )


def server_heartbeat(session_id: str, timestamp: int) -> bytes:
    return encode({"type": "server_heartbeat", "session_id": session_id, "timestamp": timestamp})


def session_close_ack(session_id: str) -> bytes:
    return encode({"type": "session_close_ack", "session_id": session_id})
