"""Rooms on a :class:`~switchboard.client.Session` (lingua-parity §5–§6): ``session.rooms``.

::

    async with Session.connect(url, src_lang="en", tgt_lang="de") as s:
        room = await s.rooms.create(display_name="Ann", preferred_lang="en")
        print(room.code)                        # tell the others
        async for event in s.rooms.events():    # members, translations of others' speech …
            match event:
                case RoomMembers(members=members): ...
                case RoomSpeech(speaker=who, translation=t): print(who, t.text_translated)

A member's utterances (``session.send``) are translated for the other members, in their
languages; it hears its own answers only when no other member has set a ``preferred_lang``.
What it receives of the others' speech arrives as :class:`RoomSpeech` events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from switchboard.client.errors import RoomRefused, ServerError, error_from_frame

SignalKind = Literal["offer", "answer", "ice"]
_ROOM_FRAMES: Final = frozenset({"room_create_ack", "room_members", "room_error", "room_expired"})
_SIGNALS: Final[Mapping[str, SignalKind]] = {
    "webrtc_offer": "offer",
    "webrtc_answer": "answer",
    "webrtc_ice": "ice",
}


@dataclass(frozen=True, slots=True)
class RoomMember:
    session_id: str
    display_name: str | None
    preferred_lang: str | None
    raw_voice_preferences: Mapping[str, bool]
    joined_at: str  # RFC 3339


@dataclass(frozen=True, slots=True)
class Room:
    """The room this session created or joined."""

    code: str
    room_id: str | None  # only the creator learns it
    members: tuple[RoomMember, ...]


@dataclass(frozen=True, slots=True)
class RoomMembers:
    """The room's members changed (a join, a leave, a preference)."""

    room_code: str
    members: tuple[RoomMember, ...]


@dataclass(frozen=True, slots=True)
class RoomExpired:
    room_code: str
    message: str


@dataclass(frozen=True, slots=True)
class RoomSpeech:
    """Another member's utterance, as this member hears it: the translation into its
    language, or the error that took its place (``translation`` is then None)."""

    speaker: str
    room_code: str
    utterance_index: int | None
    translation: Mapping[str, Any] | None
    error: ServerError | None = None
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def text_translated(self) -> str:
        return str((self.translation or {}).get("text_translated", ""))

    @property
    def missing(self) -> bool:
        """The node heard nothing (``missing_result``): ``translation`` is that frame."""
        return self.fields.get("type") == "missing_result"


@dataclass(frozen=True, slots=True)
class Signal:
    """WebRTC signalling relayed from another member (``peer``); ``payload`` is its ``sdp``
    or ``candidate`` as sent."""

    kind: SignalKind
    room_code: str
    peer: str
    payload: Any


RoomEvent = RoomMembers | RoomExpired | RoomSpeech | Signal
_END: Final = object()


class Rooms:
    """The room side of one session.  Requests run one at a time."""

    def __init__(self, session_id: str, send: Callable[[Mapping[str, Any]], Awaitable[bool]]):
        self._session_id = session_id
        self._send = send
        self._lock = asyncio.Lock()
        self._reply: asyncio.Future[Mapping[str, Any]] | None = None
        self._wanted: frozenset[str] = frozenset()
        self._ack: Mapping[str, Any] | None = None
        self._streams: set[asyncio.Queue[object]] = set()
        self._ended = False
        self.current: Room | None = None

    # --- requests -----------------------------------------------------------------------------

    async def create(
        self, *, display_name: str | None = None, preferred_lang: str | None = None
    ) -> Room:
        """``room_create``; the new room (this session its first member)."""
        request = _optional(
            {"type": "room_create", "client_ts": int(time.time() * 1000)},
            display_name=display_name,
            preferred_lang=preferred_lang,
        )
        # room_create_ack comes first and is kept; the room_members after it completes.
        members = await self._ask(request, {"room_members", "room_error"})
        ack = self._ack or {}
        self.current = Room(str(ack.get("room_code", "")), ack.get("room_id"), _members(members))
        return self.current

    async def join(
        self, code: str, *, display_name: str | None = None, preferred_lang: str | None = None
    ) -> Room:
        """``room_join``; raises :class:`RoomRefused` (``ROOM_NOT_FOUND``,
        ``ALREADY_IN_ROOM``)."""
        request = _optional(
            {"type": "room_join", "room_code": code},
            display_name=display_name,
            preferred_lang=preferred_lang,
        )
        members = await self._ask(request, {"room_members", "room_error"})
        self.current = Room(code, None, _members(members))
        return self.current

    async def leave(self) -> None:
        """``room_leave`` (no answer comes)."""
        if self.current is not None:
            code, self.current = self.current.code, None
            await self._send({"type": "room_leave", "room_code": code})

    async def raw_voice(self, target: str, receive: bool) -> None:
        """Whether to receive ``target``'s raw voice (WebRTC); every member gets the new
        ``room_members``."""
        await self._send(
            {
                "type": "room_raw_voice_preference",
                "room_code": self._code(),
                "target_session_id": target,
                "receive_raw_voice": receive,
            }
        )

    async def signal(self, kind: SignalKind, to: str, payload: Any) -> None:
        """Relay an offer, answer (``sdp``) or ICE candidate to member ``to``; the server drops
        it without a word where it may not go (§6)."""
        key = "candidate" if kind == "ice" else "sdp"
        await self._send(
            {"type": f"webrtc_{kind}", "room_code": self._code(), "to": to, key: payload}
        )

    def events(self) -> RoomEvents:
        """Room events received from now on, until the session ends."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        if self._ended:
            queue.put_nowait(_END)
        else:
            self._streams.add(queue)
        return RoomEvents(queue, self._streams)

    def _code(self) -> str:
        if self.current is None:
            raise RoomRefused("not in a room", code="ROOM_NOT_FOUND")
        return self.current.code

    async def _ask(self, request: Mapping[str, Any], wanted: set[str]) -> Mapping[str, Any]:
        async with self._lock:
            future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
            self._reply, self._wanted = future, frozenset(wanted)
            if not await self._send(request):
                raise RoomRefused("the connection to the scheduler is gone")
            try:
                reply = await future
            finally:
                self._reply = None
        if reply.get("type") == "room_error":
            code = str(reply.get("code") or "")
            raise RoomRefused(str(reply.get("message") or code), code=code)
        return reply

    # --- frames from the session's reader -----------------------------------------------------

    def on_frame(self, kind: object, frame: Mapping[str, Any]) -> bool:
        """Take a room frame, or an answer to another member's speech; ``False``: not ours."""
        if kind in _ROOM_FRAMES:
            self._on_room_frame(str(kind), frame)
            return True
        if kind in _SIGNALS:
            self._emit(
                Signal(
                    _SIGNALS[str(kind)],
                    str(frame.get("room_code", "")),
                    str(frame.get("to", "")),
                    frame.get("candidate" if kind == "webrtc_ice" else "sdp"),
                )
            )
            return True
        speaker = frame.get("speaker_session_id")
        if speaker is None or speaker == self._session_id:
            return False
        self._emit(_speech(str(kind), str(speaker), frame))
        return True

    def _on_room_frame(self, kind: str, frame: Mapping[str, Any]) -> None:
        if kind == "room_create_ack":
            self._ack = frame
        reply = self._reply
        if reply is not None and not reply.done() and kind in self._wanted:
            reply.set_result(frame)
        if kind == "room_members":
            members = _members(frame)
            if self.current is not None:
                self.current = Room(self.current.code, self.current.room_id, members)
            self._emit(RoomMembers(str(frame.get("room_code", "")), members))
        elif kind == "room_expired":
            self.current = None
            self._emit(RoomExpired(str(frame.get("room_code", "")), str(frame.get("message"))))

    def _emit(self, event: RoomEvent) -> None:
        for queue in self._streams:
            queue.put_nowait(event)

    def end(self) -> None:
        self._ended = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(RoomRefused("the session ended"))
        for queue in self._streams:
            queue.put_nowait(_END)
        self._streams.clear()


class RoomEvents:
    """``async for event in session.rooms.events()``; ``close()`` to stop early."""

    def __init__(self, queue: asyncio.Queue[object], streams: set[asyncio.Queue[object]]):
        self._queue = queue
        self._streams = streams

    def __aiter__(self) -> RoomEvents:
        return self

    async def __anext__(self) -> RoomEvent:
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._streams.discard(self._queue)
        self._queue.put_nowait(_END)


def _optional(frame: dict[str, Any], **fields: str | None) -> dict[str, Any]:
    frame.update({k: v for k, v in fields.items() if v is not None})
    return frame


def _members(frame: Mapping[str, Any]) -> tuple[RoomMember, ...]:
    return tuple(
        RoomMember(
            session_id=str(m.get("session_id", "")),
            display_name=m.get("display_name"),
            preferred_lang=m.get("preferred_lang"),
            raw_voice_preferences=dict(m.get("raw_voice_preferences") or {}),
            joined_at=str(m.get("joined_at", "")),
        )
        for m in frame.get("members") or ()
        if isinstance(m, dict)
    )


def _speech(kind: str, speaker: str, frame: Mapping[str, Any]) -> RoomSpeech:
    room_code = str(frame.get("room_code", ""))
    if kind == "error":
        error = error_from_frame(frame)
        return RoomSpeech(speaker, room_code, error.utterance_index, None, error, dict(frame))
    index = frame.get("utterance_index")
    return RoomSpeech(
        speaker,
        room_code,
        index if isinstance(index, int) else None,
        dict(frame),
        None,
        dict(frame),
    )
