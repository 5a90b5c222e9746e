"""A lane's peer (server/room_fanout.py): listeners resolved at push time, activity on a
delivered translation only."""

from __future__ import annotations

import json
import random
from typing import Any, cast

from switchboard.rooms.model import Room
from switchboard.rooms.registry import RoomRegistry
from switchboard.server.connections import SessionConnection
from switchboard.server.room_fanout import LanePeer, lane_id


class Conn:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def push(self, frame: bytes) -> None:
        self.frames.append(json.loads(frame))


def make_room() -> tuple[RoomRegistry, Room, dict[str, Conn]]:
    reg = RoomRegistry(idle=60, rng=random.Random(3))
    room = reg.create("s-a", display_name=None, preferred_lang="en", now=0, wall=0)
    assert isinstance(room, Room)
    for sid, lang in (("s-b", "de"), ("s-c", "fr")):
        reg.join(room.code, sid, display_name=None, preferred_lang=lang, now=0, wall=0)
    return reg, room, {sid: Conn() for sid in ("s-a", "s-b", "s-c")}


RESULT = b'{"type":"translation_result","session_id":"s-a-de","utterance_index":0}'
PARTIAL = b'{"type":"asr_partial","session_id":"s-a-de","utterance_index":0,"text":"h"}'


def test_answers_go_to_the_lanes_language_as_resolved_when_pushed() -> None:
    reg, room, conns = make_room()
    touched: list[Room] = []
    peer = LanePeer(room, "s-a", "de", cast(dict[str, SessionConnection], conns), touched.append)
    peer.push(PARTIAL)
    assert touched == []  # a partial is not a delivered translation
    peer.push(RESULT)
    assert touched == [room]
    assert [f["type"] for f in conns["s-b"].frames] == ["asr_partial", "translation_result"]
    assert conns["s-a"].frames == [] and conns["s-c"].frames == []
    reg.join(room.code, "s-d", display_name=None, preferred_lang="DE", now=0, wall=0)
    conns["s-d"] = Conn()
    reg.leave(room.code, "s-b")
    peer.push(RESULT)
    assert len(conns["s-b"].frames) == 2 and len(conns["s-d"].frames) == 1
    assert conns["s-d"].frames[0]["session_id"] == "s-a"


def test_with_nobody_listening_an_answer_is_dropped_and_is_no_activity() -> None:
    _, room, conns = make_room()
    touched: list[Room] = []
    peer = LanePeer(room, "s-a", "ja", cast(dict[str, SessionConnection], conns), touched.append)
    peer.push(RESULT)
    assert touched == [] and all(c.frames == [] for c in conns.values())


def test_lane_ids_are_the_speaker_and_the_language() -> None:
    assert lane_id("s-0123456789ABCDEF", "zh-cn") == "s-0123456789ABCDEF-zh-cn"
