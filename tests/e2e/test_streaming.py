"""Streamed speech end to end (docs/protocol.md §2 "Streaming", lingua-parity.md §3): a session's
``audio_chunk`` frames cut into utterances, each one job with its flags and one answer.

Tests that must see no pause cut run with a --pause-ms of ten minutes (NO_PAUSE): a final
cut that waited for the pause timer instead of its own 200 ms hangover would then miss every
wait; the pause tests use a short one.  "Nothing happened" is checked behind
barriers: a heartbeat round trip on the session (its earlier frames were handled), then one on
the node (whatever those frames sent it has arrived).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import (
    JSON,
    FakeNode,
    FakeSession,
    Frame,
    NodeBehaviour,
    RawWebSocket,
    ServerProcess,
    b64,
    is_error,
    of_type,
)

SILENT = NodeBehaviour(mode="none")
NO_PAUSE = 600_000  # ms
CUT_FIELDS = ("is_manual_cut", "is_pause_triggered", "is_timeout_triggered", "padding_ms")


def chunk(session: FakeSession, audio: bytes, *, final: bool = False, seq: int = 0) -> JSON:
    return {
        "type": "audio_chunk",
        "session_id": session.session_id,
        "seq": seq,
        "is_final": final,
        "payload": b64(audio),
    }


async def stream_session(server: ServerProcess, peers: Peers) -> FakeSession:
    session = await peers.raw_session(server)
    await session.init(audio_format="pcm16", sample_rate=16000)
    return session


def audio_of(assign: Frame) -> bytes:
    return base64.b64decode(assign["audio"])


def cut_of(assign: Frame) -> dict[str, Any]:
    return {key: assign[key] for key in CUT_FIELDS if key in assign}


async def settled(session: FakeSession, node: FakeNode) -> None:
    """Every frame sent so far was handled, and whatever it made reached the node."""
    await session.sync()
    await node.sync()


@pytest.mark.server(pause_ms=NO_PAUSE)
async def test_a_final_chunk_cuts_one_manual_utterance(server: ServerProcess, peers: Peers) -> None:
    """Chunks join in order; nothing reaches the node before the final chunk; then one
    job_assign with the joined audio, is_manual_cut and padding_ms 280, the session's pair and
    index 0, and its one answer."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"one ", seq=0))
    await session.send(chunk(session, b"two ", seq=1))
    await settled(session, node)
    assert node.assigns == []
    await session.send(chunk(session, b"three", final=True, seq=2))
    assign = await node.wait_assign()
    assert audio_of(assign) == b"one two three"
    assert cut_of(assign) == {"is_manual_cut": True, "padding_ms": 280}
    assert (assign["utterance_index"], assign["src_lang"], assign["tgt_lang"]) == (0, "en", "de")
    assert (assign["audio_format"], assign["sample_rate"]) == ("pcm16", 16000)
    answer = await session.wait_for(of_type("translation_result"))
    assert answer["utterance_index"] == 0 and answer["job_id"] == assign["job_id"]


@pytest.mark.server(pause_ms=1000)
async def test_silence_cuts_a_timeout_triggered_utterance(
    server: ServerProcess, peers: Peers
) -> None:
    """No chunk for --pause-ms: the buffer is cut with is_timeout_triggered and padding 220."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"spoken "))
    await session.send(chunk(session, b"words"))
    assign = await node.wait_assign()
    assert audio_of(assign) == b"spoken words"
    assert cut_of(assign) == {"is_timeout_triggered": True, "padding_ms": 220}
    assert (await session.wait_for(of_type("translation_result")))["utterance_index"] == 0


@pytest.mark.server(max_utterance_ms=1000, pause_ms=NO_PAUSE)
async def test_too_long_cuts_at_once_with_the_chunk_that_reached_it(
    server: ServerProcess, peers: Peers
) -> None:
    """pcm16 at 16 kHz is 32 bytes a millisecond: 32000 bytes reach 1000 ms and are cut at once
    (no final, no pause) with is_timeout_triggered and padding 220; a bare final after it cuts
    nothing more."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"a" * 16000))
    await settled(session, node)
    assert node.assigns == []
    await session.send(chunk(session, b"b" * 16000))
    assign = await node.wait_assign()
    assert audio_of(assign) == b"a" * 16000 + b"b" * 16000
    assert cut_of(assign) == {"is_timeout_triggered": True, "padding_ms": 220}
    await session.send(chunk(session, b"", final=True))
    await session.wait_for(of_type("translation_result"))
    await settled(session, node)
    assert len(node.assigns) == 1


@pytest.mark.server(max_utterance_bytes=1000, pause_ms=NO_PAUSE)
async def test_too_big_cuts_at_once_without_flags(server: ServerProcess, peers: Peers) -> None:
    """A buffer over --max-utterance-bytes is cut at once, with no flag and no padding_ms."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"x" * 600))
    await session.send(chunk(session, b"y" * 600))
    assign = await node.wait_assign()
    assert audio_of(assign) == b"x" * 600 + b"y" * 600
    assert cut_of(assign) == {}


@pytest.mark.server(pause_ms=200)
async def test_cuts_with_nothing_buffered_make_nothing_and_use_no_index(
    server: ServerProcess, peers: Peers
) -> None:
    """A bare final on a fresh session, and one right after a pause cut, make no job and no
    answer; the next utterance takes the next index (1, not 3)."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"", final=True))
    await settled(session, node)
    assert node.assigns == [] and session.answers == []
    await session.send(chunk(session, b"first"))
    first = await node.wait_assign()
    await session.wait_for(of_type("translation_result"))
    await session.send(chunk(session, b"", final=True))
    await session.send({**chunk(session, b""), "payload": None})
    await settled(session, node)
    assert len(node.assigns) == 1 and len(session.answers) == 1
    await session.send(chunk(session, b"second", final=True))
    second = await node.wait_assign(utterance_index=1)
    assert (first["utterance_index"], audio_of(second)) == (0, b"second")


@MEMORY_ONLY
@pytest.mark.server(pause_ms=NO_PAUSE)
async def test_chunks_in_a_final_hangover_join_that_utterance(
    server: ServerProcess, peers: Peers
) -> None:
    """Better than Lingua: a chunk right behind the final frame (the web client sends its last
    encoded chunk after it) joins the utterance instead of becoming the next one.  Both frames
    go in one TCP write, so the server reads them together, well inside the 200 ms."""
    node = await peers.node(server)
    client = await RawWebSocket.connect(server, "/ws/session")
    try:
        init = FakeSession("").init_message(audio_format="pcm16", sample_rate=16000)
        await client.send_together(json.dumps(init))
        (ack,) = await client.receive_texts(1)
        session = FakeSession("")
        session.session_id = ack["session_id"]
        await client.send_together(
            json.dumps(chunk(session, b"head ")),
            json.dumps(chunk(session, b"", final=True)),
            json.dumps(chunk(session, b"tail")),
        )
        (answer,) = await client.receive_texts(1)
    finally:
        await client.close()
    assert answer["type"] == "translation_result" and answer["utterance_index"] == 0
    await node.sync()
    assert [audio_of(a) for a in node.assigns] == [b"head tail"]
    assert cut_of(node.assigns[0]) == {"is_manual_cut": True, "padding_ms": 280}


@pytest.mark.server(pause_ms=NO_PAUSE)
async def test_a_chunk_right_after_a_bare_final_is_that_utterance(
    server: ServerProcess, peers: Peers
) -> None:
    """Lingua's web client, on its first Send and on its silence timer, sends the final frame
    before the utterance's only chunk (seen with its own code, 29a05c0): the chunk is that
    utterance, one manual cut answered once, not audio left waiting for the next cut."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"", final=True))
    await session.send(chunk(session, b"only chunk"))
    assign = await node.wait_assign()
    answer = await session.wait_for(of_type("translation_result"))
    assert answer["utterance_index"] == 0 == assign["utterance_index"]
    assert audio_of(assign) == b"only chunk"
    assert cut_of(assign) == {"is_manual_cut": True, "padding_ms": 280}
    await session.send(chunk(session, b"next", final=True))
    second = await node.wait_assign(utterance_index=1)
    assert audio_of(second) == b"next"


@pytest.mark.server(pause_ms=1000)
async def test_after_a_silence_the_next_chunk_opens_a_new_utterance_and_nothing_is_dropped(
    server: ServerProcess, peers: Peers
) -> None:
    """Better than Lingua: the first chunk after a silence is not made a one-chunk job (it
    starts the next utterance, which goes on until its own cut), and a session that has been
    idle keeps every chunk it sends."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"before"))
    first = await node.wait_assign()
    await session.wait_for(of_type("translation_result"))
    await session.send(chunk(session, b"after "))
    await session.send(chunk(session, b"silence", final=True))
    second = await node.wait_assign(utterance_index=1)
    assert audio_of(first) == b"before"
    assert audio_of(second) == b"after silence"
    assert cut_of(second) == {"is_manual_cut": True, "padding_ms": 280}
    assert len(node.assigns) == 2


@MEMORY_ONLY
@pytest.mark.server(pause_ms=NO_PAUSE)
async def test_bad_base64_is_invalid_message_and_not_buffered(
    server: ServerProcess, peers: Peers
) -> None:
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"good "))
    await session.send({**chunk(session, b""), "payload": "not base64!"})
    error = await session.wait_for(is_error("INVALID_MESSAGE"))
    assert "base64" in error["message"]
    await session.send(chunk(session, b"end", final=True))
    assign = await node.wait_assign()
    assert audio_of(assign) == b"good end"
    assert not session.closed


@MEMORY_ONLY
@pytest.mark.server(pause_ms=NO_PAUSE)
async def test_a_chunk_for_another_session_is_invalid_session_and_not_buffered(
    server: ServerProcess, peers: Peers
) -> None:
    node = await peers.node(server)
    other = await stream_session(server, peers)
    session = await stream_session(server, peers)
    await session.send(chunk(other, b"foreign", final=True))
    await session.wait_for(is_error("INVALID_SESSION"))
    await settled(session, node)
    await other.sync()
    assert node.assigns == [] and other.answers == []
    await session.send(chunk(session, b"mine", final=True))
    assert audio_of(await node.wait_assign()) == b"mine"


@pytest.mark.server(pause_ms=NO_PAUSE)
async def test_streamed_and_plain_utterances_share_one_sequence_and_one_order(
    server: ServerProcess, peers: Peers
) -> None:
    """An utterance (index 0), a streamed one (the next index: 1), an utterance with index 5
    and a streamed one (6): the node answers them in reverse, the client gets them in the
    order they were accepted."""
    node = await peers.node(server, behaviour=SILENT, max_concurrency=8)
    session = await stream_session(server, peers)
    await session.utter(0)
    await node.wait_assign(utterance_index=0)
    await session.send(chunk(session, b"streamed one", final=True))
    await node.wait_assign(utterance_index=1)
    await session.utter(5)
    await node.wait_assign(utterance_index=5)
    await session.send(chunk(session, b"streamed two", final=True))
    await node.wait_assign(utterance_index=6)
    assert [a["utterance_index"] for a in node.assigns] == [0, 1, 5, 6]
    for assign in reversed(node.assigns):
        await node.answer(assign)
    answers = await session.wait_answers(4)
    assert [a["utterance_index"] for a in answers] == [0, 1, 5, 6]
    assert [a["type"] for a in answers] == ["translation_result"] * 4


@MEMORY_ONLY
@pytest.mark.server(max_pending_per_session=1, pause_ms=NO_PAUSE)
async def test_an_open_buffer_counts_against_the_pending_limit(
    server: ServerProcess, peers: Peers
) -> None:
    """With --max-pending-per-session 1 and one streamed utterance unanswered, a chunk that
    would open another is refused with TOO_MANY_PENDING (said, not silently dropped); once
    the first is answered, streaming goes on."""
    node = await peers.node(server, behaviour=SILENT)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"first", final=True))
    assign = await node.wait_assign()
    await session.send(chunk(session, b"refused", seq=7))
    error = await session.wait_for(is_error("TOO_MANY_PENDING"))
    assert error["details"]["seq"] == 7
    await node.answer(assign)
    await session.wait_for(of_type("translation_result"))
    await session.send(chunk(session, b"second", final=True))
    assert audio_of(await node.wait_assign(utterance_index=1)) == b"second"


@MEMORY_ONLY
@pytest.mark.server(pause_ms=NO_PAUSE)
async def test_a_closed_session_s_buffer_makes_no_job(server: ServerProcess, peers: Peers) -> None:
    """session_close with audio buffered: nothing is dispatched (its pending work is dropped
    with it, contract §2 "Ending")."""
    node = await peers.node(server)
    session = await stream_session(server, peers)
    await session.send(chunk(session, b"never cut"))
    await session.close_session()
    await session.wait_for(of_type("session_close_ack"))
    await session.wait_closed()
    await node.sync()
    assert node.assigns == []
