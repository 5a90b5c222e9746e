"""Rooms and WebRTC signalling end to end (lingua-parity §5–§6), against the real server.

Membership and relay are decided before the reservation store is ever asked: these run on the
memory store (fan-out, which reserves, is in ``test_room_fanout.py`` and runs on both).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import FakeSession, Frame, ServerProcess, of_type

pytestmark = MEMORY_ONLY


def member_ids(frame: Frame) -> list[str]:
    return [m["session_id"] for m in frame["members"]]


async def join(joiner: FakeSession, code: str, *others: FakeSession) -> None:
    """``joiner`` joins, and each of ``others`` has seen it join (so what a test reads next
    comes after that)."""
    joined = await joiner.join_room(code)
    assert joined["type"] == "room_members", joined
    for other in others:
        await other.wait_for(
            lambda f: f.get("type") == "room_members" and joiner.session_id in member_ids(f)
        )


async def test_create_acks_with_a_code_and_uuid_then_lists_the_creator(
    server: ServerProcess, peers: Peers
) -> None:
    """room_create → room_create_ack {6-digit code, UUID room_id}, then room_members with the
    creator in Lingua's member shape."""
    alice = await peers.session(server)
    after = len(alice.frames)
    await alice.send(
        {"type": "room_create", "client_ts": 1, "display_name": "Alice", "preferred_lang": "en"}
    )
    ack = await alice.wait_for(of_type("room_create_ack"), after=after)
    members = await alice.wait_for(of_type("room_members"), after=after)
    assert alice.frames.index(ack) < alice.frames.index(members)
    assert len(ack["room_code"]) == 6 and 100000 <= int(ack["room_code"]) <= 999999
    assert str(uuid.UUID(ack["room_id"])) == ack["room_id"]
    (me,) = members["members"]
    assert members["room_code"] == ack["room_code"]
    assert me["participant_id"] == me["session_id"] == alice.session_id
    assert me["display_name"] == "Alice" and me["preferred_lang"] == "en"
    assert me["raw_voice_preferences"] == {}
    assert datetime.fromisoformat(me["joined_at"]).tzinfo is not None


async def test_join_sends_members_to_the_joiner_then_to_the_others_and_no_ack(
    server: ServerProcess, peers: Peers
) -> None:
    alice = await peers.session(server)
    bob = await peers.session(server)
    code = await alice.create_room(preferred_lang="en")
    seen = len(alice.frames)
    joined = await bob.join_room(code, display_name="Bob", preferred_lang="de")
    assert joined["type"] == "room_members"
    assert member_ids(joined) == [alice.session_id, bob.session_id]
    update = await alice.wait_for(of_type("room_members"), after=seen)
    assert member_ids(update) == member_ids(joined)
    await bob.sync()
    assert not bob.matching(of_type("room_create_ack"))


async def test_join_errors_room_not_found_and_already_in_room(
    server: ServerProcess, peers: Peers
) -> None:
    alice = await peers.session(server)
    bob = await peers.session(server)
    code = await alice.create_room()
    other = "100000" if code != "100000" else "100001"
    missing = await bob.join_room(other)
    assert missing["type"] == "room_error" and missing["code"] == "ROOM_NOT_FOUND"
    again = await alice.join_room(code)
    assert again["type"] == "room_error" and again["code"] == "ALREADY_IN_ROOM"
    assert not alice.closed and not bob.closed


async def test_leave_tells_those_who_remain_and_the_last_one_out_deletes_the_room(
    server: ServerProcess, peers: Peers
) -> None:
    alice = await peers.session(server)
    bob = await peers.session(server)
    carol = await peers.session(server)
    code = await alice.create_room()
    await join(bob, code, alice)
    seen_bob = len(bob.frames)
    seen_alice = len(alice.frames)
    await alice.leave_room(code)
    update = await bob.wait_for(of_type("room_members"), after=seen_bob)
    assert member_ids(update) == [bob.session_id]
    await alice.sync()
    assert not alice.members(after=seen_alice)  # the leaver gets nothing
    await bob.leave_room(code)
    await bob.sync()
    gone = await carol.join_room(code)
    assert gone["type"] == "room_error" and gone["code"] == "ROOM_NOT_FOUND"


@pytest.mark.parametrize("how", ["disconnect", "session_close"])
async def test_a_member_that_goes_away_leaves_its_room(
    server: ServerProcess, peers: Peers, how: str
) -> None:
    """Better than Lingua: a closed or vanished socket leaves the room at once."""
    alice = await peers.session(server)
    bob = await peers.session(server)
    code = await alice.create_room()
    await join(bob, code, alice)
    seen = len(alice.frames)
    if how == "disconnect":
        await bob.close()
    else:
        await bob.close_session()
    update = await alice.wait_for(of_type("room_members"), after=seen)
    assert member_ids(update) == [alice.session_id]


async def test_raw_voice_preference_is_shown_to_every_member_and_non_members_are_refused(
    server: ServerProcess, peers: Peers
) -> None:
    alice = await peers.session(server)
    bob = await peers.session(server)
    outsider = await peers.session(server)
    code = await alice.create_room()
    await join(bob, code, alice)
    seen_a, seen_b = len(alice.frames), len(bob.frames)
    await bob.raw_voice(code, alice.session_id, False)
    for peer, seen in ((alice, seen_a), (bob, seen_b)):
        update = await peer.wait_for(of_type("room_members"), after=seen)
        prefs = {m["session_id"]: m["raw_voice_preferences"] for m in update["members"]}
        assert prefs[bob.session_id] == {alice.session_id: False}
    await outsider.raw_voice(code, alice.session_id, False)
    refused = await outsider.wait_for(of_type("room_error"))
    assert refused["code"] == "ROOM_NOT_FOUND"


@pytest.mark.server(room_idle=0.5)
async def test_an_idle_room_expires_and_every_member_is_told(
    server: ServerProcess, peers: Peers
) -> None:
    alice = await peers.session(server)
    bob = await peers.session(server)
    carol = await peers.session(server)
    code = await alice.create_room()
    await bob.join_room(code)
    for peer in (alice, bob):
        expired = await peer.wait_for(of_type("room_expired"))
        assert expired["room_code"] == code and expired["message"]
    late = await carol.join_room(code)
    assert late["type"] == "room_error" and late["code"] == "ROOM_NOT_FOUND"
    # Out of the expired room, alice may open another.
    assert len(await alice.create_room()) == 6


async def _pair_in_room(
    server: ServerProcess, peers: Peers
) -> tuple[FakeSession, FakeSession, str]:
    alice = await peers.session(server)
    bob = await peers.session(server)
    code = await alice.create_room()
    await join(bob, code, alice)
    return alice, bob, code


async def test_signalling_is_relayed_with_to_rewritten_to_the_sender(
    server: ServerProcess, peers: Peers
) -> None:
    """webrtc_offer / answer / ice reach `to` with `to` = the sender; sdp and candidate pass
    byte for byte."""
    alice, bob, code = await _pair_in_room(server, peers)
    sdp = '{"type": "offer", "sdp": "v=0\\r\\no=- 1 2 IN IP4 127.0.0.1"}'
    await alice.send_raw(
        f'{{"type": "webrtc_offer", "room_code": "{code}", "to": "{bob.session_id}", "sdp": {sdp}}}'
    )
    offer = await bob.wait_for(of_type("webrtc_offer"))
    assert offer["to"] == alice.session_id and offer["room_code"] == code
    assert sdp in offer.raw
    await bob.send(
        {"type": "webrtc_answer", "room_code": code, "to": alice.session_id, "sdp": {"a": 1}}
    )
    answer = await alice.wait_for(of_type("webrtc_answer"))
    assert answer["to"] == bob.session_id and answer["sdp"] == {"a": 1}
    candidate = {"candidate": "candidate:1 1 UDP 1 10.0.0.1 9 typ host", "sdpMid": "0"}
    await alice.send(
        {"type": "webrtc_ice", "room_code": code, "to": bob.session_id, "candidate": candidate}
    )
    ice = await bob.wait_for(of_type("webrtc_ice"))
    assert ice["to"] == alice.session_id and ice["candidate"] == candidate


async def test_signals_that_may_not_be_relayed_are_dropped_silently(
    server: ServerProcess, peers: Peers
) -> None:
    """Dropped, with no error to anyone: `to` not a member, `to` refused the sender's raw
    voice, the wrong room code, a sender outside the room, and a `to` that has gone."""
    alice, bob, code = await _pair_in_room(server, peers)
    outsider = await peers.session(server)
    carol = await peers.session(server)
    await join(carol, code, alice, bob)

    def ice(to: str, room: str = code) -> dict[str, object]:
        return {"type": "webrtc_ice", "room_code": room, "to": to, "candidate": {"n": to}}

    await alice.send(ice(outsider.session_id))  # not a member
    await outsider.send(ice(bob.session_id))  # the sender is not a member
    await alice.send(ice(bob.session_id, room="999999" if code != "999999" else "100000"))
    await bob.raw_voice(code, alice.session_id, False)
    await bob.sync()
    await alice.send(ice(bob.session_id))  # bob refuses alice's raw voice
    await carol.close()
    await bob.wait_for(
        lambda f: f.get("type") == "room_members" and carol.session_id not in member_ids(f)
    )
    await alice.send(ice(carol.session_id))  # gone
    # The refusal is one way: alice still takes bob's signals.
    await bob.send(ice(alice.session_id))
    await alice.wait_for(of_type("webrtc_ice"))
    for peer in (alice, bob, outsider):
        await peer.sync()
        assert not peer.matching(of_type("error")) and not peer.matching(of_type("room_error"))
    assert not bob.matching(of_type("webrtc_ice")) and not bob.matching(of_type("webrtc_offer"))
    assert not outsider.matching(of_type("webrtc_ice"))


@pytest.mark.server(max_frames_per_second=5, frame_burst=10)
async def test_relays_count_against_the_frame_rate_limit(
    server: ServerProcess, peers: Peers
) -> None:
    alice, bob, code = await _pair_in_room(server, peers)
    frame = {"type": "webrtc_ice", "room_code": code, "to": bob.session_id, "candidate": {}}
    for _ in range(40):
        if alice.closed:
            break
        try:
            await alice.send(frame)
        except ConnectionError:
            break
    limited = await alice.wait_for(of_type("error", code="RATE_LIMITED"))
    assert limited["details"]["max_frames_per_second"] == 5
    assert await alice.wait_closed() == 1008
