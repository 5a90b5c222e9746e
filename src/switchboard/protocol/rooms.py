"""Room and WebRTC signalling messages (lingua-parity §5–§6): typed inbound frames and the
outbound frames the room channel sends.

Inbound frames share the session channel's tag (``type``) and are decoded by the same decoder
(``codec.decode_session``).  ``sdp`` and ``candidate`` are kept as raw JSON and relayed byte
for byte, whatever they hold (§6: "passed on unchanged").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec

from switchboard.protocol.messages import Id, LangCode, Number

Name = Annotated[str, msgspec.Meta(max_length=256)]
RoomCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

_encode = msgspec.json.Encoder().encode


class _RoomMsg(msgspec.Struct, tag_field="type", frozen=True, omit_defaults=True):
    pass


class RoomCreate(_RoomMsg, tag="room_create", frozen=True):
    client_ts: Number
    display_name: Name | None = None
    preferred_lang: LangCode | None = None


class RoomJoin(_RoomMsg, tag="room_join", frozen=True):
    room_code: RoomCode
    display_name: Name | None = None
    preferred_lang: LangCode | None = None


class RoomLeave(_RoomMsg, tag="room_leave", frozen=True):
    room_code: RoomCode


class RoomRawVoicePreference(_RoomMsg, tag="room_raw_voice_preference", frozen=True):
    room_code: RoomCode
    target_session_id: Id
    receive_raw_voice: bool


class WebrtcOffer(_RoomMsg, tag="webrtc_offer", frozen=True):
    room_code: RoomCode
    to: Id
    sdp: msgspec.Raw


class WebrtcAnswer(_RoomMsg, tag="webrtc_answer", frozen=True):
    room_code: RoomCode
    to: Id
    sdp: msgspec.Raw


class WebrtcIce(_RoomMsg, tag="webrtc_ice", frozen=True):
    room_code: RoomCode
    to: Id
    candidate: msgspec.Raw


RoomRequest = RoomCreate | RoomJoin | RoomLeave | RoomRawVoicePreference
Signal = WebrtcOffer | WebrtcAnswer | WebrtcIce
RoomInbound = RoomRequest | Signal

# --- outbound -----------------------------------------------------------------------------------


def room_create_ack(room_code: str, room_id: str) -> bytes:
    return _encode({"type": "room_create_ack", "room_code": room_code, "room_id": room_id})


def room_members(room_code: str, members: Sequence[Mapping[str, Any]]) -> bytes:
    return _encode({"type": "room_members", "room_code": room_code, "members": members})


def room_error(code: str, message: str) -> bytes:
    return _encode({"type": "room_error", "code": code, "message": message})


def room_expired(room_code: str, message: str) -> bytes:
    return _encode({"type": "room_expired", "room_code": room_code, "message": message})


def relayed(signal: Signal, sender: str) -> bytes:
    """The signal for ``to``, with ``to`` rewritten to the sender (§6)."""
    frame: dict[str, object] = {"type": "", "room_code": signal.room_code, "to": sender}
    match signal:
        case WebrtcOffer():
            frame.update(type="webrtc_offer", sdp=signal.sdp)
        case WebrtcAnswer():
            frame.update(type="webrtc_answer", sdp=signal.sdp)
        case WebrtcIce():
            frame.update(type="webrtc_ice", candidate=signal.candidate)
    return _encode(frame)


_raw_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_TRANSLATION = b'"translation_result"'


def for_listeners(frame: bytes, *, speaker: str, room_code: str) -> tuple[bytes, bool]:
    """A fan-out answer (or partial) as the room's listeners get it: ``session_id`` is the
    speaker's, as in Lingua, and ``speaker_session_id`` and ``room_code`` (extensions) say
    whose speech it is even on an ``error``.  Values are copied as raw JSON, not re-parsed.
    The flag: the frame is a ``translation_result`` (room activity, §5 "Expiry")."""
    fields: dict[str, object] = dict(_raw_fields(frame))
    fields["session_id"] = speaker
    fields["speaker_session_id"] = speaker
    fields["room_code"] = room_code
    kind = fields.get("type")
    return _encode(fields), isinstance(kind, msgspec.Raw) and bytes(kind) == _TRANSLATION
