"""``RoomRegistry``: every live room of this instance, and which room each session is in.

Pure bookkeeping (lingua-parity §5): each method is one decision, made synchronously, with
time passed in; the room channel (``server/room_channel.py``) sends what follows from it.  A
refused request returns a :class:`RoomError` instead of raising.

A session is in at most one room: creating or joining a second one while in a room is
``ALREADY_IN_ROOM`` (Lingua lets a session sit in several and then routes its speech by
whichever room a hash map yields first).

Across instances, this is the seam: a registry shared through the store would answer the same
calls for members held by other instances (docs/protocol.md "Rooms across instances").
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from switchboard.rooms.model import Member, Room, RoomError, RoomErrorCode

CODE_MIN = 100_000
CODE_MAX = 999_999
_NOT_FOUND = RoomError(RoomErrorCode.ROOM_NOT_FOUND, "no such room")
_NOT_A_MEMBER = RoomError(RoomErrorCode.ROOM_NOT_FOUND, "no such room among yours")
_ALREADY = RoomError(RoomErrorCode.ALREADY_IN_ROOM, "already in that room")
_IN_ANOTHER = RoomError(RoomErrorCode.ALREADY_IN_ROOM, "already in a room: leave it first")


def _uuid() -> str:
    return str(uuid.uuid4())


class RoomRegistry:
    def __init__(
        self,
        *,
        idle: float,
        rng: random.Random | None = None,
        new_id: Callable[[], str] = _uuid,
    ) -> None:
        if idle <= 0:
            raise ValueError(f"idle must be positive, got {idle}")
        self.idle = idle
        self._rng = rng if rng is not None else random.SystemRandom()
        self._new_id = new_id
        # Least recently active first (a touch moves a room to the end), so expiry stops at
        # the first room still in use.
        self._rooms: dict[str, Room] = {}
        self._by_session: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, code: str) -> Room | None:
        return self._rooms.get(code)

    def room_of(self, session_id: str) -> Room | None:
        return self._by_session.get(session_id)

    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    # --- membership -----------------------------------------------------------------------

    def create(
        self,
        session_id: str,
        *,
        display_name: str | None,
        preferred_lang: str | None,
        now: float,
        wall: float,
    ) -> Room | RoomError:
        """A new room with ``session_id`` as its first member."""
        if session_id in self._by_session:
            return _IN_ANOTHER
        room = Room(self._free_code(), self._new_id(), now)
        self._rooms[room.code] = room
        self._add(room, Member(session_id, display_name, preferred_lang, wall))
        return room

    def join(
        self,
        code: str,
        session_id: str,
        *,
        display_name: str | None,
        preferred_lang: str | None,
        now: float,
        wall: float,
    ) -> Room | RoomError:
        room = self._rooms.get(code)
        if room is None:
            return _NOT_FOUND
        current = self._by_session.get(session_id)
        if current is not None:
            return _ALREADY if current is room else _IN_ANOTHER
        self._add(room, Member(session_id, display_name, preferred_lang, wall))
        self.touch(room, now)
        return room

    def leave(self, code: str, session_id: str) -> Room | RoomError:
        """Take ``session_id`` out of room ``code``; the room, possibly now empty (and then
        deleted)."""
        room = self._rooms.get(code)
        if room is None:
            return _NOT_FOUND
        if self._by_session.get(session_id) is not room:
            return _NOT_A_MEMBER
        self._remove(room, session_id)
        return room

    def leave_any(self, session_id: str) -> Room | None:
        """The session is gone (socket closed, ``session_close``): out of its room, if any."""
        room = self._by_session.get(session_id)
        if room is not None:
            self._remove(room, session_id)
        return room

    def set_raw_voice(
        self, code: str, session_id: str, target: str, receive: bool
    ) -> Room | RoomError:
        """The member's wish to receive ``target``'s raw voice (WebRTC) or not."""
        room = self._rooms.get(code)
        member = None if room is None else room.members.get(session_id)
        if room is None or member is None:
            return _NOT_FOUND if room is None else _NOT_A_MEMBER
        if member.raw_voice is None:
            member.raw_voice = {}
        member.raw_voice[target] = receive
        return room

    def may_relay(self, code: str, sender: str, to: str) -> bool:
        """lingua-parity §6: ``to`` is a member of ``code`` and has not refused ``sender``'s
        raw voice.  (Whether ``to`` is connected is the caller's to check.)"""
        room = self._rooms.get(code)
        member = None if room is None else room.members.get(to)
        return member is not None and member.receives_raw_voice_of(sender)

    # --- activity and expiry ------------------------------------------------------------------

    def touch(self, room: Room, now: float) -> None:
        """Activity: a join, or a room translation delivered."""
        room.last_active = now
        rooms = self._rooms
        if rooms.get(room.code) is room:
            del rooms[room.code]
            rooms[room.code] = room

    def expire(self, now: float) -> list[Room]:
        """Delete and return the rooms idle for ``idle`` or longer; their members are out."""
        expired: list[Room] = []
        for room in self._rooms.values():
            if now - room.last_active < self.idle:
                break  # the rest were active later
            expired.append(room)
        for room in expired:
            del self._rooms[room.code]
            for session_id in room.members:
                self._by_session.pop(session_id, None)
        return expired

    # --- inside -------------------------------------------------------------------------------

    def _add(self, room: Room, member: Member) -> None:
        room.members[member.session_id] = member
        self._by_session[member.session_id] = room

    def _remove(self, room: Room, session_id: str) -> None:
        del room.members[session_id]
        del self._by_session[session_id]
        if not room.members:
            del self._rooms[room.code]

    def _free_code(self) -> str:
        if len(self._rooms) > (CODE_MAX - CODE_MIN) // 2:
            # Far beyond any real use; refusing beats a long search for a free code.
            raise RuntimeError("no free room code")
        while True:
            code = str(self._rng.randint(CODE_MIN, CODE_MAX))
            if code not in self._rooms:
                return code
