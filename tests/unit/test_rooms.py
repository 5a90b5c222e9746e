"""The rooms domain (lingua-parity §5), driven synchronously with time passed in."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.protocol import codec, rooms
from switchboard.protocol.rooms import WebrtcIce, for_listeners
from switchboard.rooms.model import Room, RoomError, RoomErrorCode
from switchboard.rooms.registry import CODE_MAX, CODE_MIN, RoomRegistry

IDLE = 60.0


def registry(seed: int = 1) -> RoomRegistry:
    return RoomRegistry(idle=IDLE, rng=random.Random(seed))


def create(reg: RoomRegistry, sid: str, lang: str | None = None, now: float = 0.0) -> Room:
    room = reg.create(sid, display_name=sid.upper(), preferred_lang=lang, now=now, wall=0.0)
    assert isinstance(room, Room)
    return room


def join(reg: RoomRegistry, code: str, sid: str, lang: str | None = None, now: float = 0.0) -> Room:
    room = reg.join(code, sid, display_name=None, preferred_lang=lang, now=now, wall=0.0)
    assert isinstance(room, Room), room
    return room


def test_create_makes_the_creator_its_first_member_with_a_six_digit_code_and_a_uuid() -> None:
    reg = registry()
    room = create(reg, "s-a", "en")
    assert CODE_MIN <= int(room.code) <= CODE_MAX and len(room.code) == 6
    assert str(uuid.UUID(room.room_id)) == room.room_id
    assert list(room.members) == ["s-a"]
    assert reg.room_of("s-a") is room


def test_codes_are_unique_among_live_rooms_even_when_the_generator_repeats() -> None:
    class Repeating(random.Random):
        def __init__(self) -> None:
            super().__init__()
            self.values = iter([123456, 123456, 123456, 654321])

        def randint(self, a: int, b: int) -> int:
            return next(self.values)

    reg = RoomRegistry(idle=IDLE, rng=Repeating())
    first, second = create(reg, "s-a"), create(reg, "s-b")
    assert (first.code, second.code) == ("123456", "654321")


def test_join_unknown_code_is_room_not_found_and_joining_twice_is_already_in_room() -> None:
    reg = registry()
    room = create(reg, "s-a")
    missing = reg.join("000000", "s-b", display_name=None, preferred_lang=None, now=0, wall=0)
    assert isinstance(missing, RoomError) and missing.code is RoomErrorCode.ROOM_NOT_FOUND
    join(reg, room.code, "s-b")
    again = reg.join(room.code, "s-b", display_name=None, preferred_lang=None, now=0, wall=0)
    assert isinstance(again, RoomError) and again.code is RoomErrorCode.ALREADY_IN_ROOM


def test_a_session_is_in_one_room_at_a_time() -> None:
    reg = registry()
    room = create(reg, "s-a")
    create(reg, "s-b")
    other = reg.join(room.code, "s-b", display_name=None, preferred_lang=None, now=0, wall=0)
    assert isinstance(other, RoomError) and other.code is RoomErrorCode.ALREADY_IN_ROOM
    second = reg.create("s-a", display_name=None, preferred_lang=None, now=0, wall=0)
    assert isinstance(second, RoomError) and second.code is RoomErrorCode.ALREADY_IN_ROOM


def test_last_member_out_deletes_the_room() -> None:
    reg = registry()
    room = create(reg, "s-a")
    join(reg, room.code, "s-b")
    left = reg.leave(room.code, "s-a")
    assert left is room and list(room.members) == ["s-b"] and reg.get(room.code) is room
    assert reg.leave_any("s-b") is room
    assert reg.get(room.code) is None and len(reg) == 0 and reg.room_of("s-b") is None


def test_leave_or_set_a_preference_in_a_room_one_is_not_in_is_room_not_found() -> None:
    reg = registry()
    room = create(reg, "s-a")
    for outcome in (
        reg.leave(room.code, "s-x"),
        reg.leave("999999", "s-a") if room.code != "999999" else reg.leave("100000", "s-a"),
        reg.set_raw_voice(room.code, "s-x", "s-a", False),
    ):
        assert isinstance(outcome, RoomError) and outcome.code is RoomErrorCode.ROOM_NOT_FOUND


def test_members_payload_has_lingua_shape() -> None:
    reg = registry()
    room = reg.create("s-a", display_name="Ann", preferred_lang="zh-CN", now=0, wall=1.5)
    assert isinstance(room, Room)
    join(reg, room.code, "s-b")
    assert not isinstance(reg.set_raw_voice(room.code, "s-a", "s-b", False), RoomError)
    first, second = room.wire_members()
    assert first == {
        "participant_id": "s-a",
        "session_id": "s-a",
        "display_name": "Ann",
        "preferred_lang": "zh-CN",
        "raw_voice_preferences": {"s-b": False},
        "joined_at": "1970-01-01T00:00:01.500Z",
    }
    assert datetime.fromisoformat(first["joined_at"]).timestamp() == 1.5
    assert second["participant_id"] == "s-b" and "preferred_lang" not in second


def test_relay_needs_membership_and_no_refusal_of_the_sender() -> None:
    reg = registry()
    room = create(reg, "s-a")
    join(reg, room.code, "s-b")
    assert reg.may_relay(room.code, "s-a", "s-b")
    assert not reg.may_relay(room.code, "s-a", "s-x")
    assert not reg.may_relay("000000", "s-a", "s-b")
    reg.set_raw_voice(room.code, "s-b", "s-a", False)
    assert not reg.may_relay(room.code, "s-a", "s-b")
    assert reg.may_relay(room.code, "s-b", "s-a")
    reg.set_raw_voice(room.code, "s-b", "s-a", True)
    assert reg.may_relay(room.code, "s-a", "s-b")


def test_listeners_are_the_other_members_with_a_language_grouped_by_it() -> None:
    reg = registry()
    room = create(reg, "s-a", "en")
    join(reg, room.code, "s-b", "de")
    join(reg, room.code, "s-c")
    join(reg, room.code, "s-d", "DE")
    join(reg, room.code, "s-e", "fr")
    assert room.listeners("s-a") == {"de": ["s-b", "s-d"], "fr": ["s-e"]}
    assert room.listeners("s-b") == {"en": ["s-a"], "de": ["s-d"], "fr": ["s-e"]}


def test_rooms_expire_after_idle_and_activity_postpones_it() -> None:
    reg = registry()
    old = create(reg, "s-a", now=0.0)
    busy = create(reg, "s-b", now=0.0)
    later = create(reg, "s-c", now=10.0)
    reg.touch(busy, 30.0)
    assert reg.expire(IDLE - 1) == []
    assert reg.expire(IDLE) == [old]
    assert reg.room_of("s-a") is None and reg.get(old.code) is None
    join(reg, later.code, "s-d", now=IDLE + 5)  # a join is activity
    assert reg.expire(30.0 + IDLE) == [busy]
    assert reg.expire(IDLE + 5 + IDLE) == [later]
    assert len(reg) == 0


_ops = st.lists(
    st.tuples(
        st.sampled_from(["create", "join", "leave", "gone", "expire", "touch", "pref"]),
        st.integers(0, 5),  # the session
        st.integers(0, 3),  # which live room
        st.floats(0, 40),  # time step
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_bookkeeping_stays_consistent(ops: list[tuple[str, int, int, float]]) -> None:
    """Whatever happens: each session is in at most one room, that room lists it, no live
    room is empty, codes are unique six-digit strings, and nothing idle survives a sweep."""
    reg = registry()
    now = 0.0
    for op, who, which, step in ops:
        now += step
        sid = f"s-{who}"
        live = reg.rooms()
        room = live[which % len(live)] if live else None
        if op == "create":
            reg.create(sid, display_name=None, preferred_lang="en", now=now, wall=now)
        elif op == "join" and room is not None:
            reg.join(room.code, sid, display_name=None, preferred_lang="de", now=now, wall=now)
        elif op == "leave" and room is not None:
            reg.leave(room.code, sid)
        elif op == "gone":
            reg.leave_any(sid)
        elif op == "touch" and room is not None:
            reg.touch(room, now)
        elif op == "pref" and room is not None:
            reg.set_raw_voice(room.code, sid, "s-0", False)
        elif op == "expire":
            for gone in reg.expire(now):
                assert now - gone.last_active >= IDLE
            assert all(now - r.last_active < IDLE for r in reg.rooms())
        rooms = reg.rooms()
        codes = [r.code for r in rooms]
        assert len(set(codes)) == len(codes)
        assert all(len(c) == 6 and CODE_MIN <= int(c) <= CODE_MAX for c in codes)
        assert all(r.members for r in rooms)
        for n in range(6):
            member_of = [r for r in rooms if f"s-{n}" in r.members]
            assert len(member_of) <= 1
            assert reg.room_of(f"s-{n}") is (member_of[0] if member_of else None)
        actives = [r.last_active for r in rooms]
        assert actives == sorted(actives)  # least recently active first


def test_listener_frames_carry_the_speaker_and_keep_every_value_byte_for_byte() -> None:
    frame = (
        b'{"type":"translation_result","session_id":"s-a-de","utterance_index":3,'
        b'"tts_audio":"AAEC","extra":{"k": [1, 2.50]}}'
    )
    out, translation = for_listeners(frame, speaker="s-a", room_code="123456")
    assert translation
    assert b'"extra":{"k": [1, 2.50]}' in out
    decoded = json.loads(out)
    assert decoded["session_id"] == decoded["speaker_session_id"] == "s-a"
    assert decoded["room_code"] == "123456" and decoded["utterance_index"] == 3
    error = b'{"type":"error","code":"JOB_TIMEOUT","message":"m","details":{"utterance_index":3}}'
    out, translation = for_listeners(error, speaker="s-a", room_code="123456")
    assert not translation and json.loads(out)["speaker_session_id"] == "s-a"


def test_relayed_signals_name_the_sender_and_keep_the_payload() -> None:
    decoded = codec.decode_session(
        b'{"type":"webrtc_ice","room_code":"1","to":"s-b","candidate":{"c": "x y"}}'
    )
    assert isinstance(decoded, WebrtcIce)
    out = rooms.relayed(decoded, "s-a")
    assert out == b'{"type":"webrtc_ice","room_code":"1","to":"s-a","candidate":{"c": "x y"}}'
