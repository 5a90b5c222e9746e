"""The session channel end to end (protocol.md §2 "Accepting", "Ending", §3 bad frames)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import (
    FakeNode,
    FakeSession,
    NodeBehaviour,
    RawWebSocket,
    ServerProcess,
    b64,
    is_error,
    of_type,
)

SILENT = NodeBehaviour(mode="none")


@MEMORY_ONLY
async def test_bad_frames_get_invalid_message_and_the_session_lives_on(
    server: ServerProcess, peers: Peers
) -> None:
    """Bad JSON, a malformed utterance (with its index when readable) and a binary frame each get
    INVALID_MESSAGE; the connection stays open and a following good utterance is served."""
    await peers.node(server)
    session = await peers.session(server)
    await session.send_raw("{this is not json")
    bad_json = await session.wait_for(is_error("INVALID_MESSAGE"))
    malformed = session.utterance_message(4)
    del malformed["audio"]
    await session.send(malformed)
    await session.wait_for(is_error("INVALID_MESSAGE", utterance_index=4))
    negative = session.utterance_message(-1)
    await session.send(negative)
    await session.wait_count(is_error("INVALID_MESSAGE"), 3)
    await session.send_bytes(b"\x00\x01binary")
    await session.wait_count(is_error("INVALID_MESSAGE"), 4)
    assert bad_json["message"]
    assert not session.closed
    await session.utter(4)
    answer = await session.wait_for(of_type("translation_result"))
    assert answer["utterance_index"] == 4


@MEMORY_ONLY
async def test_utterance_for_another_session_is_invalid_session(
    server: ServerProcess, peers: Peers
) -> None:
    """An utterance naming another session_id is rejected at once with INVALID_SESSION and
    details.utterance_index, and never dispatched; a heartbeat or session_close naming another
    session gets INVALID_SESSION too and closes nothing."""
    node = await peers.node(server)
    other = await peers.session(server)
    session = await peers.session(server)
    await session.send(session.utterance_message(2, session_id=other.session_id))
    error = await session.wait_for(of_type("error"))
    assert is_error("INVALID_SESSION", utterance_index=2)(error), error
    await session.send(session.utterance_message(3, session_id="s-NOSUCHSESSION"))
    await session.wait_for(is_error("INVALID_SESSION", utterance_index=3))
    await session.send({"type": "client_heartbeat", "session_id": other.session_id, "timestamp": 1})
    await session.send({"type": "session_close", "session_id": other.session_id, "reason": "x"})
    await session.wait_count(is_error("INVALID_SESSION"), 4)
    assert session.matching(of_type("server_heartbeat")) == []
    await session.sync()
    assert not session.closed and not other.closed
    await node.sync()
    assert node.assigns == []
    await other.sync()
    assert other.answers == []


@MEMORY_ONLY
async def test_duplicate_pending_index_is_rejected(server: ServerProcess, peers: Peers) -> None:
    """An utterance_index equal to a still-pending one is rejected at once with INVALID_MESSAGE
    (outside the ordered stream); once answered, the index may be used again."""
    node = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(7)
    first = await node.wait_assign()
    await session.utter(7)
    error = await session.wait_for(of_type("error"))
    assert is_error("INVALID_MESSAGE", utterance_index=7)(error), error
    assert "job_id" not in error["details"]
    await node.answer(first)
    await session.wait_for(of_type("translation_result", utterance_index=7))
    await session.utter(7)
    again = await node.wait_count(of_type("job_assign"), 2)
    assert again[1]["job_id"] != first["job_id"]
    assert len(node.assigns) == 2


@MEMORY_ONLY
@pytest.mark.server(max_pending_per_session=2)
async def test_too_many_pending(server: ServerProcess, peers: Peers) -> None:
    """Beyond --max-pending-per-session pending utterances, the next is rejected at once with
    TOO_MANY_PENDING (before the pending ones are answered), and is never dispatched."""
    node = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(0)
    await session.utter(1)
    await session.utter(2)
    error = await session.wait_for(of_type("error"))
    assert is_error("TOO_MANY_PENDING", utterance_index=2)(error), error
    assigns = await node.wait_count(of_type("job_assign"), 2)
    for assign in assigns:
        await node.answer(assign)
    results = await session.wait_count(of_type("translation_result"), 2)
    assert [r["utterance_index"] for r in results] == [0, 1]
    await node.sync()
    assert sorted(a["utterance_index"] for a in node.assigns) == [0, 1]
    await session.utter(3)  # a free place again
    await node.answer(await node.wait_assign(utterance_index=3))
    assert (await session.wait_answer(3))["type"] == "translation_result"


@MEMORY_ONLY
async def test_client_heartbeat_gets_server_heartbeat(server: ServerProcess, peers: Peers) -> None:
    """Each client_heartbeat is answered with a server_heartbeat for the session."""
    session = await peers.session(server)
    for _ in range(2):
        reply = await session.heartbeat()
        assert reply["session_id"] == session.session_id
        assert isinstance(reply["timestamp"], int | float)
    assert len(session.matching(of_type("server_heartbeat"))) == 2


@pytest.mark.parametrize("how", ["session_close", "disconnect"])
async def test_ending_a_session_cancels_its_jobs(
    server: ServerProcess, peers: Peers, how: str
) -> None:
    """session_close (acknowledged, then the socket is closed) or a plain disconnect: the
    session's pending jobs get job_cancel on their node, unanswered, and every slot is freed."""
    node = await peers.node(server, max_concurrency=1, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(0)
    await session.utter(1)  # waits: the node has one slot
    running = await node.wait_assign()
    await server.wait_stats(lambda s: s["jobs_in_flight"] == 2, "two jobs in flight")
    if how == "session_close":
        await session.close_session()
        ack = await session.wait_for(of_type("session_close_ack"))
        assert ack["session_id"] == session.session_id
        await session.wait_closed()
    else:
        await session.close()
    cancel = await node.wait_for(of_type("job_cancel"))
    assert cancel["job_id"] == running["job_id"]
    stats = await server.wait_stats(
        lambda s: s["jobs_in_flight"] == 0 and s["reservations_held"] == 0 and s["sessions"] == 0,
        "the session's jobs dropped and slots released",
    )
    assert stats["failed_total"] == 0
    assert session.answers == []
    await node.sync()
    assert len(node.assigns) == 1, "the waiting utterance was dispatched after the close"
    # The freed slot serves another session at once.
    node.behaviour = NodeBehaviour()
    other = await peers.session(server)
    await other.utter(0)
    assert (await other.wait_answer(0))["type"] == "translation_result"


@MEMORY_ONLY
async def test_session_init_ack_is_always_the_first_frame(
    server: ServerProcess, peers: Peers
) -> None:
    """session_init_ack is the first frame the server sends on a session, even when frames
    right behind session_init (here a bad one, in the same TCP write) are answered at once."""
    client = await RawWebSocket.connect(server, "/ws/session")
    try:
        init = FakeSession("").init_message()
        await client.send_together(json.dumps(init), "{bad json right behind the init")
        frames = await client.receive_texts(2)
    finally:
        await client.close()
    assert [f["type"] for f in frames] == ["session_init_ack", "error"], frames


@MEMORY_ONLY
@pytest.mark.server(handshake_timeout=0.5)
async def test_first_frame_must_be_session_init(server: ServerProcess, peers: Peers) -> None:
    """A first frame that is not a valid session_init (another type, bad JSON, an incomplete
    session_init, a binary frame) gets INVALID_MESSAGE, then close 1008; no first frame at all
    gets an error and close 1008 too."""
    firsts: list[str | bytes] = [
        '{"type": "client_heartbeat", "session_id": "s-1", "timestamp": 1}',
        "{not json",
        '{"type": "session_init", "client_version": "1"}',
        b"\x00binary",
    ]
    for first in firsts:
        session = await peers.raw_session(server)
        if isinstance(first, bytes):
            await session.send_bytes(first)
        else:
            await session.send_raw(first)
        assert await session.wait_closed() == 1008, first
        (error,) = session.frames
        assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE", (first, error)
    silent = await peers.raw_session(server)
    assert await silent.wait_closed() == 1008
    (error,) = silent.frames
    assert error["type"] == "error", error
    assert (await server.stats())["sessions"] == 0


@MEMORY_ONLY
async def test_first_frame_must_be_node_register(server: ServerProcess, peers: Peers) -> None:
    """On /ws/node a first frame other than node_register (or node_heartbeat, which is
    skipped: lingua-parity §7) gets an error, then close 1008."""
    node = await peers.raw_node(server)
    await node.send(
        {"type": "node_error", "node_id": "nobody", "code": "X", "message": "not registered"}
    )
    assert await node.wait_closed() == 1008
    (error,) = node.frames
    assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE", error


@MEMORY_ONLY
@pytest.mark.server(max_frame_bytes=4096)
@pytest.mark.parametrize("channel", ["session", "node"])
async def test_frame_above_max_frame_bytes_closes_with_1009(
    server: ServerProcess, peers: Peers, channel: str
) -> None:
    """A frame above --max-frame-bytes closes the connection with 1009; frames below pass."""
    big_audio = b64(b"x" * 8192)
    peer: FakeNode | FakeSession
    if channel == "session":
        await peers.node(server)
        peer = await peers.session(server)
        await peer.utter(0)
        await peer.wait_answer(0)
        await peer.send(peer.utterance_message(1, audio=big_audio))
    else:
        node = await peers.node(server)
        peer = node
        await node.sync()
        await node.send({**node.heartbeat_message(), "padding": big_audio})
    assert await peer.wait_closed() == 1009
