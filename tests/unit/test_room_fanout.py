"""A lane's peer (server/room_fanout.py): listeners resolved at push time, activity on a
delivered translation only."""

from __future__ import annotations

import json
import random
import time
from typing import Any, cast

from switchboard.dispatch.overload import OverloadBounds
from switchboard.protocol import codec
from switchboard.protocol.cuts import Cut, CutKind
from switchboard.protocol.messages import Utterance
from switchboard.protocol.profile import SessionProfile
from switchboard.rooms.model import Room
from switchboard.rooms.registry import RoomRegistry
from switchboard.server.connections import SessionConnection
from switchboard.server.room_fanout import LanePeer, Lanes, lane_id
from tests.unit.fakes import LinkSession, Rig


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


async def test_streamed_and_framed_speech_share_the_speakers_index_sequence_in_every_lane() -> None:
    """Fan-out through the real dispatch core and driver: a streamed utterance takes the
    speaker's next index in every language, an utterance frame moves that sequence on, and
    each listener gets its language's answers in the speaker's order."""
    rig = Rig()
    await rig.start()
    try:
        node = await rig.add_node("n-1", [("en", "de"), ("en", "fr")], capacity=8)
        reg, room, _ = make_room()
        links = {sid: LinkSession(sid) for sid in ("s-a", "s-b", "s-c")}
        profile = SessionProfile(trace_id="t-a", src_lang="en", tgt_lang="de", mode="one_way")
        links["s-a"].session = rig.dispatcher.open_session("s-a", links["s-a"], profile)
        conns = cast(dict[str, SessionConnection], links)
        lanes = Lanes(rig.dispatcher, conns, lambda _room: None, max_pending=8)
        speaker = conns["s-a"]
        cut = Cut(CutKind.MANUAL, padding_ms=280)

        def streamed() -> None:
            lanes.admit_streamed(
                speaker,
                room,
                "AAAA",
                audio_format="pcm16",
                sample_rate=16000,
                cut=cut,
                received=time.perf_counter(),
                closing=False,
            )

        streamed()
        frame = json.dumps(
            {
                "type": "utterance",
                "session_id": "s-a",
                "utterance_index": 5,
                "src_lang": "en",
                "tgt_lang": "de",
                "audio": "",
                "audio_format": "pcm16",
                "sample_rate": 16000,
            }
        ).encode()
        msg = codec.decode_session(frame)
        assert isinstance(msg, Utterance)
        await lanes.utter(speaker, room, msg, frame, time.perf_counter(), closing=False)
        streamed()
        assigns = [node.assigned.get_nowait() for _ in range(6)]
        by_lang: dict[str, list[int]] = {}
        for assign in assigns:
            by_lang.setdefault(assign["tgt_lang"], []).append(assign["utterance_index"])
            assert assign["session_id"] == lane_id("s-a", assign["tgt_lang"])
            assert assign["trace_id"] == "t-a" and assign["mode"] == "one_way"
        assert by_lang == {"de": [0, 5, 6], "fr": [0, 5, 6]}
        streamed_assign = next(a for a in assigns if a["utterance_index"] == 6)
        assert streamed_assign["is_manual_cut"] is True and streamed_assign["padding_ms"] == 280
        for assign in reversed(assigns):  # the node answers last first
            assert rig.answer(node, assign)
        for sid, lang in (("s-b", "de"), ("s-c", "fr")):
            got = links[sid].out
            assert [f["utterance_index"] for f in got] == [0, 5, 6], (lang, got)
            assert {f["session_id"] for f in got} == {"s-a"}
        assert links["s-a"].out == []
        assert reg.get(room.code) is room
    finally:
        await rig.stop()


async def test_a_saturated_scheduler_refuses_the_speaker_once_for_every_language() -> None:
    """OVERLOADED (protocol.md §3 "Saturation") goes to the speaker, once, before any
    language's job is made; no listener hears of it; a streamed one uses its index up.
    A lane is never shed on its own: a fan-out is to every language or to none."""
    rig = Rig(overload=OverloadBounds(loop_lag=0, store_backlog=10, queue_age=0))
    await rig.start()
    try:
        node = await rig.add_node("n-1", [("en", "de"), ("en", "fr")], capacity=8)
        _, room, _ = make_room()
        links = {sid: LinkSession(sid) for sid in ("s-a", "s-b", "s-c")}
        profile = SessionProfile(trace_id="t-a", src_lang="en", tgt_lang="de")
        links["s-a"].session = rig.dispatcher.open_session("s-a", links["s-a"], profile)
        conns = cast(dict[str, SessionConnection], links)
        lanes = Lanes(rig.dispatcher, conns, lambda _room: None, max_pending=8)
        speaker = conns["s-a"]
        frame = json.dumps(
            {
                "type": "utterance",
                "session_id": "s-a",
                "utterance_index": 3,
                "src_lang": "en",
                "tgt_lang": "de",
                "audio": "",
                "audio_format": "pcm16",
                "sample_rate": 16000,
            }
        ).encode()
        msg = codec.decode_session(frame)
        assert isinstance(msg, Utterance)
        rig.core.overload.store_owed = 10**6  # the driver's signal: the store is far behind
        await lanes.utter(speaker, room, msg, frame, time.perf_counter(), closing=False)
        lanes.admit_streamed(
            speaker,
            room,
            "AAAA",
            audio_format="pcm16",
            sample_rate=16000,
            cut=Cut(CutKind.MANUAL),
            received=time.perf_counter(),
            closing=False,
        )
        refusals = links["s-a"].out
        assert [(f["code"], f["details"]["utterance_index"]) for f in refusals] == [
            ("OVERLOADED", 3),
            ("OVERLOADED", 0),  # the refused 3 moved nothing; the streamed one used 0 up
        ]
        assert links["s-a"].session.next_index == 1
        assert all(f["details"]["reason"] == "store_backlog" for f in refusals)
        assert links["s-b"].out == [] and links["s-c"].out == []
        assert node.assigned.empty()
        rig.core.overload.store_owed = 0
        await lanes.utter(speaker, room, msg, frame, time.perf_counter(), closing=False)
        assigns = [await node.assigned.get() for _ in range(2)]
        assert sorted(a["tgt_lang"] for a in assigns) == ["de", "fr"]
    finally:
        await rig.stop()
