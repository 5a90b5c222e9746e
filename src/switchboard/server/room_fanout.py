"""Fan-out (lingua-parity §5): a room speaker's utterance becomes one job per listener
language, each answered to the members who listen in that language.

Each (speaker, language) pair is a *lane*: a dispatch session of its own, with its own pending
utterances and its own answer line, so a listener gets exactly one answer per utterance of each
speaker, in that speaker's order, whatever the other languages do.  Its frames go to a
:class:`LanePeer`, which resolves the listeners when an answer is pushed, not when the
utterance arrived.  The dispatch core is unchanged: to it a lane is one more session.

On the node side a lane has its own ``session_id``, ``<speaker>-<language>``.  Lingua's node
drops a result whose ``text_asr`` equals the last one it sent for the same ``session_id``
(``node-agent-result-sender.ts``); every language's job carries the same speech, so with one
``session_id`` for all of them the second language's result is dropped and its job times out.
Apart, each language is its own stream to the node (its aggregation and its duplicate filter
included) and every language gets its answer.  Frames for listeners carry the speaker's
``session_id`` again (``protocol.rooms.for_listeners``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import msgspec

from switchboard.dispatch.driver import DispatchDriver
from switchboard.dispatch.jobs import Session
from switchboard.protocol import codec
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.cuts import Cut
from switchboard.protocol.messages import Utterance
from switchboard.protocol.rooms import for_listeners
from switchboard.rooms.model import Room
from switchboard.server.connections import SessionConnection


def lane_id(speaker: str, lang: str) -> str:
    """The node-side ``session_id`` of a speaker's lane into ``lang``."""
    return f"{speaker}-{lang}"


class LanePeer:
    """Where a lane's frames go: the room's members listening in its language, now."""

    __slots__ = ("_conns", "_on_delivered", "lang", "room", "speaker")

    def __init__(
        self,
        room: Room,
        speaker: str,
        lang: str,
        conns: Mapping[str, SessionConnection],
        on_delivered: Callable[[Room], None],
    ) -> None:
        self.room = room
        self.speaker = speaker
        self.lang = lang
        self._conns = conns
        self._on_delivered = on_delivered

    def push(self, frame: bytes) -> None:
        room = self.room
        listeners = room.listeners(self.speaker).get(self.lang, ())
        targets = [c for sid in listeners if (c := self._conns.get(sid)) is not None]
        if not targets:
            return  # nobody listens in this language any more: the answer has no taker
        out, translation = for_listeners(frame, speaker=self.speaker, room_code=room.code)
        for conn in targets:
            conn.push(out)
        if translation:
            self._on_delivered(room)


class Lanes:
    """Every speaker's lanes on this instance, made on a speaker's first fanned-out utterance
    and closed when the speaker leaves its room (pending ones cancelled, as at a session's
    end: contract §2 "Ending")."""

    def __init__(
        self,
        dispatcher: DispatchDriver,
        conns: Mapping[str, SessionConnection],
        on_delivered: Callable[[Room], None],
        max_pending: int,
    ) -> None:
        self._dispatcher = dispatcher
        self._conns = conns
        self._on_delivered = on_delivered
        self._max_pending = max_pending
        self._lanes: dict[str, dict[str, Session]] = {}  # speaker → language → lane

    def __len__(self) -> int:
        return sum(len(by_lang) for by_lang in self._lanes.values())

    async def utter(
        self,
        conn: SessionConnection,
        room: Room,
        msg: Utterance,
        frame: bytes,
        received: float,
        *,
        closing: bool,
    ) -> None:
        """One job per listener language (§5 "Fan-out"); none: an ordinary job for ``conn``."""
        speaker = conn.session_id
        groups = room.listeners(speaker)
        if not groups or msg.session_id != speaker:  # the core refuses a foreign id itself
            await self._dispatcher.accept(conn.session, msg, frame, received)
            return
        lanes = [self._lane(room, conn.session, lang) for lang in groups]
        refusal = self._refusal(lanes, msg.utterance_index, closing=closing)
        if refusal is not None:
            # To the speaker, at once, as a refused utterance always is (contract §2).
            code, text = refusal
            conn.push(codec.error(code, text, {"utterance_index": msg.utterance_index}))
            return
        if self._shed(conn, msg.utterance_index):
            return
        # Without its own trace_id, each language's job takes the lane's, which is the
        # speaker's session's: one utterance, one trace across languages.
        speaker_session = conn.session
        index = msg.utterance_index
        # The speaker's one index sequence (lingua-parity §3 "Answers") moves past it, as if
        # the speaker's own session had taken it.
        if index >= speaker_session.next_index:
            speaker_session.next_index = index + 1
        for lane, lang in zip(lanes, groups, strict=True):
            one = msgspec.structs.replace(msg, session_id=lane.session_id, tgt_lang=lang)
            await self._dispatcher.accept(lane, one, frame, received)

    def admit_streamed(
        self,
        conn: SessionConnection,
        room: Room,
        audio: str,
        *,
        audio_format: str,
        sample_rate: int,
        cut: Cut,
        received: float,
        closing: bool,
    ) -> None:
        """A streamed utterance (lingua-parity §3) from a member: the same fan-out as an
        ``utterance``'s.  It takes the speaker's next index, and every language's job that
        same index."""
        speaker_session = conn.session
        groups = room.listeners(conn.session_id)
        if not groups:
            self._dispatcher.admit_streamed(
                speaker_session,
                audio,
                audio_format=audio_format,
                sample_rate=sample_rate,
                cut=cut,
                received=received,
            )
            return
        lanes = [self._lane(room, speaker_session, lang) for lang in groups]
        index = speaker_session.next_index
        speaker_session.next_index = index + 1  # used up even if refused, as the core does
        refusal = self._refusal(lanes, index, closing=closing)
        if refusal is not None:
            code, text = refusal
            conn.push(codec.error(code, text, {"utterance_index": index}))
            return
        if self._shed(conn, index):
            return
        for lane in lanes:
            # Every index a lane holds came from this sequence, so this one is free in it.
            lane.next_index = index
            self._dispatcher.admit_streamed(
                lane,
                audio,
                audio_format=audio_format,
                sample_rate=sample_rate,
                cut=cut,
                received=received,
            )

    def _refusal(
        self, lanes: list[Session], index: int, *, closing: bool
    ) -> tuple[ErrorCode, str] | None:
        """The core's admission rules, checked for every lane before any job is made: an
        utterance is fanned out to all its languages or to none."""
        if any(index in lane.pending for lane in lanes):
            return ErrorCode.INVALID_MESSAGE, f"utterance_index {index} is already pending"
        if any(len(lane.pending) >= self._max_pending for lane in lanes):
            return ErrorCode.TOO_MANY_PENDING, "too many pending utterances"
        if closing:
            return ErrorCode.SESSION_CLOSED, "the scheduler is shutting down"
        return None

    def _shed(self, conn: SessionConnection, index: int) -> bool:
        """A saturated scheduler refuses the speaker's utterance once, for every language
        (protocol.md §3 "Saturation"); its lanes are never shed one by one."""
        speaker = conn.session
        core = self._dispatcher.core
        refusal = core.shed_refusal(index, time.monotonic(), speaker.tenant, speaker.priority)
        if refusal is None:
            return False
        conn.push(refusal)
        return True

    def _lane(self, room: Room, speaker: Session, lang: str) -> Session:
        by_lang = self._lanes.setdefault(speaker.session_id, {})
        lane = by_lang.get(lang)
        peer = lane.peer if lane is not None else None
        if lane is None or not isinstance(peer, LanePeer) or peer.room is not room:
            if lane is not None:
                self._dispatcher.close_session(lane)
            peer = LanePeer(room, speaker.session_id, lang, self._conns, self._on_delivered)
            # The speaker's session state (mode, languages, features, trace id: lingua-parity
            # §1) goes with every language's jobs; only the target is the lane's.
            profile = dataclasses.replace(speaker.profile, tgt_lang=lang)
            lane = by_lang[lang] = self._dispatcher.open_session(
                lane_id(speaker.session_id, lang), peer, profile
            )
            lane.sheddable = False
        return lane

    def close(self, speaker: str) -> None:
        """The speaker left its room or is gone: its lanes end, their pending jobs cancelled."""
        for lane in self._lanes.pop(speaker, {}).values():
            self._dispatcher.close_session(lane)

    def fail_all(self, message: str) -> None:
        """Shutdown: every pending lane job is answered ``SESSION_CLOSED``."""
        for by_lang in self._lanes.values():
            for lane in by_lang.values():
                self._dispatcher.fail_session(lane, ErrorCode.SESSION_CLOSED, message)
