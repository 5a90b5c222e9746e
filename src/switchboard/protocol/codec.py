"""Decode inbound frames into typed messages; encode outbound frames.

Outbound frames are built as ``bytes`` (sent as WebSocket *text* frames: they are UTF-8 JSON).
Opaque values travel as ``msgspec.Raw`` slices of the frame they came in, so audio and a node's
extra result fields are copied byte for byte and never re-encoded (contract §1 ``job_assign``
and §2 ``translation_result``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import msgspec

from switchboard.errors import ProtocolError
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.messages import NodeInbound, SessionInbound
from switchboard.protocol.rooms import RoomInbound

RawFields = dict[str, msgspec.Raw]

_node_decoder = msgspec.json.Decoder(NodeInbound)
# Room and WebRTC frames (lingua-parity §5–§6) arrive on the session channel too.
SessionFrame = SessionInbound | RoomInbound
_session_decoder = msgspec.json.Decoder(SessionFrame)
_raw_decoder = msgspec.json.Decoder(RawFields)
_int_decoder = msgspec.json.Decoder(int)
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
    }
)
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
) -> bytes:
    """``job_assign`` (contract §1): our fields, then every other utterance field verbatim."""
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
    for key, value in utterance.items():
        if key not in _ASSIGN_OWN:
            frame[key] = value
    return encode(frame)


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
) -> bytes:
    """``translation_result`` (contract §2): the node's fields relayed, ours authoritative."""
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
    return encode(frame)


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


def session_init_ack(session_id: str, trace_id: str, message: str = "session created") -> bytes:
    return encode(
        {
            "type": "session_init_ack",
            "session_id": session_id,
            "assigned_node_id": None,
            "message": message,
            "trace_id": trace_id,
        }
    )


def server_heartbeat(session_id: str, timestamp: int) -> bytes:
    return encode({"type": "server_heartbeat", "session_id": session_id, "timestamp": timestamp})


def session_close_ack(session_id: str) -> bytes:
    return encode({"type": "session_close_ack", "session_id": session_id})
