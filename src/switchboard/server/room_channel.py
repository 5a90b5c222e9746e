"""Rooms and WebRTC signalling on ``/ws/session`` (lingua-parity §5–§6).

The session channel hands this module the room and signalling frames, and tells it when a
session is gone; the utterance path does not pass through here unless the speaker is in a
room (``SessionConnection.room``, one attribute read).  Decisions are the registry's
(``rooms/registry.py``, pure); this module sends what follows from them.

Across instances, this is where membership and relay would cross: ``_send`` reaches only the
sessions connected here (``Scheduler.session_conns``), and the registry holds only this
instance's rooms (docs/protocol.md "Rooms across instances").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping

from switchboard.dispatch.driver import DispatchDriver
from switchboard.protocol import rooms
from switchboard.protocol.cuts import Cut
from switchboard.protocol.messages import Utterance
from switchboard.protocol.rooms import (
    RoomCreate,
    RoomInbound,
    RoomJoin,
    RoomLeave,
    RoomRawVoicePreference,
    WebrtcAnswer,
    WebrtcIce,
    WebrtcOffer,
)
from switchboard.rooms.model import Room, RoomError
from switchboard.rooms.registry import RoomRegistry
from switchboard.server.connections import SessionConnection
from switchboard.server.room_fanout import Lanes

log = logging.getLogger("switchboard.server.rooms")

# A sweep every quarter of --room-idle, at most every 30 s: a room outlives its idle time by
# at most that much, and a sweep costs only the rooms that expire (the registry keeps them
# least recently active first).
_SWEEP_MAX = 30.0
_SWEEP_MIN = 0.01


class RoomDesk:
    """This instance's rooms, the sessions they reach, and the one expiry sweeper."""

    def __init__(
        self,
        registry: RoomRegistry,
        conns: Mapping[str, SessionConnection],
        dispatcher: DispatchDriver,
        *,
        max_pending: int,
    ) -> None:
        self.registry = registry
        self._conns = conns
        self.lanes = Lanes(dispatcher, conns, self._delivered, max_pending)
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="room-sweeper")

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def _sweep(self) -> None:
        period = max(min(self.registry.idle / 4, _SWEEP_MAX), _SWEEP_MIN)
        while True:
            await asyncio.sleep(period)
            try:
                self.expire(time.monotonic())
            except Exception:  # a bug must cost one sweep, not every later expiry
                log.exception("expiring rooms failed")

    def expire(self, now: float) -> None:
        for room in self.registry.expire(now):
            log.info("room %s expired", room.code)
            idle = self.registry.idle
            frame = rooms.room_expired(room.code, f"the room was idle for {idle:g} s")
            for session_id in room.members:
                self.lanes.close(session_id)
            for conn in self._connected(room.members):
                conn.room = None
                conn.push(frame)

    def _delivered(self, room: Room) -> None:
        """A room translation reached its listeners: activity (§5 "Expiry")."""
        self.registry.touch(room, time.monotonic())

    # --- frames ---------------------------------------------------------------------------

    def handle(self, conn: SessionConnection, msg: RoomInbound) -> None:
        match msg:
            case WebrtcOffer() | WebrtcAnswer() | WebrtcIce():
                self._relay(conn, msg)
            case RoomCreate():
                self._create(conn, msg)
            case RoomJoin():
                self._join(conn, msg)
            case RoomLeave():
                self._leave(conn, msg)
            case RoomRawVoicePreference():
                self._raw_voice(conn, msg)

    async def utter(
        self,
        conn: SessionConnection,
        msg: Utterance,
        frame: bytes,
        received: float,
        *,
        closing: bool,
    ) -> None:
        """An utterance from a member: fanned out to the room's listener languages."""
        room = conn.room
        assert room is not None, "only members' utterances come here"
        await self.lanes.utter(conn, room, msg, frame, received, closing=closing)

    def admit_streamed(
        self,
        conn: SessionConnection,
        audio: str,
        *,
        audio_format: str,
        sample_rate: int,
        cut: Cut,
        received: float,
        closing: bool,
    ) -> None:
        """A streamed utterance from a member (lingua-parity §3): fanned out the same way."""
        room = conn.room
        assert room is not None, "only members' speech comes here"
        self.lanes.admit_streamed(
            conn,
            room,
            audio,
            audio_format=audio_format,
            sample_rate=sample_rate,
            cut=cut,
            received=received,
            closing=closing,
        )

    def session_gone(self, conn: SessionConnection) -> None:
        """Closed or disconnected: out of its room, as if it had sent ``room_leave``
        (lingua-parity §5, Better: Lingua keeps it until the room expires)."""
        if conn.room is None:
            return
        conn.room = None
        self.lanes.close(conn.session_id)
        room = self.registry.leave_any(conn.session_id)
        if room is not None and room.members:
            self._tell_members(room)

    def _create(self, conn: SessionConnection, msg: RoomCreate) -> None:
        room = self.registry.create(
            conn.session_id,
            display_name=msg.display_name,
            preferred_lang=msg.preferred_lang,
            now=time.monotonic(),
            wall=time.time(),
        )
        if isinstance(room, RoomError):
            conn.push(rooms.room_error(room.code, room.message))
            return
        conn.room = room
        conn.push(rooms.room_create_ack(room.code, room.room_id))
        conn.push(rooms.room_members(room.code, room.wire_members()))

    def _join(self, conn: SessionConnection, msg: RoomJoin) -> None:
        room = self.registry.join(
            msg.room_code,
            conn.session_id,
            display_name=msg.display_name,
            preferred_lang=msg.preferred_lang,
            now=time.monotonic(),
            wall=time.time(),
        )
        if isinstance(room, RoomError):
            conn.push(rooms.room_error(room.code, room.message))
            return
        conn.room = room
        # The joiner first, then the others (no ack: room_members is the answer).
        frame = rooms.room_members(room.code, room.wire_members())
        conn.push(frame)
        for other in self._connected(room.members):
            if other is not conn:
                other.push(frame)

    def _leave(self, conn: SessionConnection, msg: RoomLeave) -> None:
        room = self.registry.leave(msg.room_code, conn.session_id)
        if isinstance(room, RoomError):
            conn.push(rooms.room_error(room.code, room.message))
            return
        conn.room = None
        self.lanes.close(conn.session_id)
        if room.members:  # the leaver gets nothing; an empty room is gone
            self._tell_members(room)

    def _raw_voice(self, conn: SessionConnection, msg: RoomRawVoicePreference) -> None:
        room = self.registry.set_raw_voice(
            msg.room_code, conn.session_id, msg.target_session_id, msg.receive_raw_voice
        )
        if isinstance(room, RoomError):
            conn.push(rooms.room_error(room.code, room.message))
            return
        self._tell_members(room)  # the sender included

    def _relay(self, conn: SessionConnection, msg: WebrtcOffer | WebrtcAnswer | WebrtcIce) -> None:
        """§6: to ``to`` with ``to`` rewritten to the sender, or dropped without a word.
        The sender must be a member of the room too (Lingua does not check)."""
        sender = conn.session_id
        room = conn.room
        if room is None or room.code != msg.room_code:
            return
        if not self.registry.may_relay(msg.room_code, sender, msg.to):
            return
        target = self._conns.get(msg.to)
        if target is None or target.ended:
            return
        target.push(rooms.relayed(msg, sender))

    # --- sending ------------------------------------------------------------------------------

    def _tell_members(self, room: Room) -> None:
        frame = rooms.room_members(room.code, room.wire_members())
        for member in self._connected(room.members):
            member.push(frame)

    def _connected(self, session_ids: Iterable[str]) -> list[SessionConnection]:
        conns = self._conns
        return [conn for sid in list(session_ids) if (conn := conns.get(sid)) is not None]
