"""Lingua's session state, job_assign additions, answers and node-channel details end to end,
on both stores (lingua-parity §1, §2, §4, §7)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Peers
from tests.e2e.harness import (
    FakeNode,
    FakeSession,
    NodeBehaviour,
    ServerProcess,
    is_error,
    of_type,
)

SILENT = NodeBehaviour(mode="none")
TWO_WAY = {
    "mode": "two_way_auto",
    "lang_a": "en",
    "lang_b": "de",
    "auto_langs": ["en", "de"],
    "features": {"speaker_identification": True},
    "dialect": "ch",
    "tenant_id": "acme",
    "trace_id": "trace-of-session",
}
CUT_FLAGS = ("is_manual_cut", "is_pause_triggered", "is_timeout_triggered", "padding_ms")


async def _session(peers: Peers, server: ServerProcess, **init: object) -> FakeSession:
    session = await peers.raw_session(server)
    await session.init(**init)
    return session


# --- §1 session state ---------------------------------------------------------------------------


async def test_session_init_ack_negotiates_the_audio(server: ServerProcess, peers: Peers) -> None:
    """The ack says protocol 1.0, no binary frames, opus / 16000 / 1 channel unless the
    session_init asked for another format and rate; trace_id is the client's or a new one."""
    plain = await peers.raw_session(server)
    ack = await plain.init()
    assert ack["protocol_version"] == "1.0" and ack["use_binary_frame"] is False
    assert ack["negotiated_codec"] == ack["negotiated_audio_format"] == "opus"
    assert ack["negotiated_sample_rate"] == 16000 and ack["negotiated_channel_count"] == 1
    assert len(ack["trace_id"]) == 36
    asked = await peers.raw_session(server)
    ack = await asked.init(audio_format="pcm16", sample_rate=48000, trace_id="mine")
    assert ack["negotiated_codec"] == "pcm16" and ack["negotiated_sample_rate"] == 48000
    assert ack["trace_id"] == "mine"


async def test_job_assign_carries_the_session_state(server: ServerProcess, peers: Peers) -> None:
    """Every job carries the session's mode, lang_a, lang_b, auto_langs, tenant_id (whatever
    the utterance says), its features and dialect unless the utterance has its own, and its
    trace_id unless the utterance has one; the answer echoes the job's trace id."""
    node = await peers.node(server)
    session = await _session(peers, server, **TWO_WAY)
    await session.utter(0, mode="one_way", lang_b="fr")
    await session.utter(1, features={"emotion_detection": True}, dialect="by", trace_id="own")
    answers = await session.wait_answers(2)
    first, second = sorted(node.assigns, key=lambda a: a["utterance_index"])
    for job in (first, second):
        assert (job["mode"], job["lang_a"], job["lang_b"]) == ("two_way_auto", "en", "de")
        assert job["auto_langs"] == ["en", "de"] and job["tenant_id"] == "acme"
    assert first["features"] == {"speaker_identification": True} and first["dialect"] == "ch"
    assert first["trace_id"] == "trace-of-session"
    assert second["features"] == {"emotion_detection": True} and second["dialect"] == "by"
    assert second["trace_id"] == "own"
    assert [a["trace_id"] for a in answers] == ["trace-of-session", "own"]


async def test_a_plain_session_sends_no_session_fields(server: ServerProcess, peers: Peers) -> None:
    """A session_init without them: no mode fields, tenant, features or dialect in job_assign
    (Lingua leaves each out when unset); the utterance's own mode is not relayed."""
    node = await peers.node(server)
    session = await peers.session(server)
    await session.utter(0, mode="two_way_auto")
    await session.wait_answers(1)
    (job,) = node.assigns
    for key in ("mode", "lang_a", "lang_b", "auto_langs", "tenant_id", "features", "dialect"):
        assert key not in job, key


# --- §2 job_assign additions -------------------------------------------------------------------


async def test_streaming_asr_and_cut_flags(server: ServerProcess, peers: Peers) -> None:
    """Streaming ASR is asked for at 1000 ms; manual_cut: true sets is_manual_cut; no cut
    flag or padding is sent when false, and a client cannot set them itself."""
    node = await peers.node(server)
    session = await peers.session(server)
    await session.utter(0)
    await session.utter(1, manual_cut=True)
    await session.utter(2, manual_cut=False, is_timeout_triggered=True, padding_ms=5)
    await session.wait_answers(3)
    jobs = {a["utterance_index"]: a for a in node.assigns}
    for job in jobs.values():
        assert job["enable_streaming_asr"] is True and job["partial_update_interval_ms"] == 1000
    assert jobs[1]["is_manual_cut"] is True
    assert [f for f in CUT_FLAGS if f in jobs[1]] == ["is_manual_cut"]
    assert not [f for f in CUT_FLAGS if f in jobs[0] or f in jobs[2]]


@pytest.mark.server(no_streaming_asr=True)
async def test_streaming_asr_can_be_turned_off(server: ServerProcess, peers: Peers) -> None:
    """serve --no-streaming-asr: job_assign asks for no partials."""
    node = await peers.node(server)
    session = await peers.session(server)
    await session.utter(0)
    await session.wait_answers(1)
    (job,) = node.assigns
    assert "enable_streaming_asr" not in job and "partial_update_interval_ms" not in job


# --- §4 answers --------------------------------------------------------------------------------


async def test_silence_is_answered_missing_result_in_order(
    server: ServerProcess, peers: Peers
) -> None:
    """An all-empty successful result is answered missing_result (silence_detected) in its
    place; a result with only blanks counts as empty; one with audio does not."""
    node = await peers.node(server, behaviour=SILENT)
    session = await _session(peers, server, trace_id="t-s")
    for index in range(3):
        await session.utter(index)
    assigns = {a["utterance_index"]: a for a in await node.wait_count(of_type("job_assign"), 3)}
    await node.answer(assigns[2], text_asr="", text_translated="", tts_audio="QUJD")
    await node.answer(assigns[1], text_asr=" ", text_translated="", tts_audio="")
    await node.answer(assigns[0], text_asr="", text_translated="", tts_audio="")
    answers = await session.wait_answers(3)
    assert [(a["type"], a["utterance_index"]) for a in answers] == [
        ("missing_result", 0),
        ("missing_result", 1),
        ("translation_result", 2),
    ]
    missing = answers[0]
    assert missing["reason"] == "silence_detected" and missing["session_id"] == session.session_id
    assert missing["trace_id"] == "t-s" and isinstance(missing["created_at_ms"], int)
    assert missing["job_id"] == assigns[0]["job_id"] and missing["node_id"] == node.node_id
    await server.wait_idle()


async def test_results_with_text_form_a_group(server: ServerProcess, peers: Peers) -> None:
    """Results with ASR text close together share group_<session>_<ms>, part_index 0, 1 …;
    a result without ASR text has no group."""
    node = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    for index in range(3):
        await session.utter(index)
    assigns = {a["utterance_index"]: a for a in await node.wait_count(of_type("job_assign"), 3)}
    await node.answer(assigns[0])
    await node.answer(assigns[1], text_asr="")
    await node.answer(assigns[2])
    first, plain, third = await session.wait_answers(3)
    assert first["group_id"].startswith(f"group_{session.session_id}_")
    assert (first["part_index"], third["part_index"]) == (0, 1)
    assert third["group_id"] == first["group_id"]
    assert "group_id" not in plain and "part_index" not in plain


async def test_tts_play_ended_gets_no_reply_and_bad_ones_an_error(
    server: ServerProcess, peers: Peers
) -> None:
    """tts_play_ended is taken without a reply (for a known group or not); a malformed one is
    INVALID_MESSAGE, another session's INVALID_SESSION; the session lives on."""
    await peers.node(server)
    session = await peers.session(server)
    await session.utter(0)
    (result,) = await session.wait_answers(1)
    ended = {
        "type": "tts_play_ended",
        "session_id": session.session_id,
        "trace_id": result["trace_id"],
        "group_id": result["group_id"],
        "ts_end_ms": 1,
    }
    before = len(session.frames)
    await session.send(ended)
    await session.send({**ended, "group_id": "group_unknown_1"})
    await session.sync()
    assert [f["type"] for f in session.frames[before:]] == ["server_heartbeat"]
    await session.send({**ended, "ts_end_ms": "soon"})
    await session.wait_for(is_error("INVALID_MESSAGE"))
    await session.send({**ended, "session_id": "s-0000000000000000"})
    await session.wait_for(is_error("INVALID_SESSION"))
    await session.utter(1)
    second = await session.wait_answer(1)
    assert second["type"] == "translation_result"


async def test_node_errors_keep_their_details(server: ServerProcess, peers: Peers) -> None:
    """A failed result's error keeps the node's details plus utterance_index, job_id and
    node_id (Rust drops them)."""
    failing = NodeBehaviour(
        mode="fail", error={"code": "ASR_FAILED", "message": "no", "details": {"db": -60}}
    )
    node = await peers.node(server, behaviour=failing)
    session = await peers.session(server)
    await session.utter(5)
    (error,) = await session.wait_answers(1)
    assert error["type"] == "error" and error["code"] == "ASR_FAILED"
    details = error["details"]
    assert details["db"] == -60 and details["utterance_index"] == 5
    assert details["node_id"] == node.node_id and details["job_id"] == node.assigns[0]["job_id"]


# --- §7 node channel ---------------------------------------------------------------------------


async def test_heartbeat_before_register_is_skipped(server: ServerProcess, peers: Peers) -> None:
    """A node_heartbeat racing ahead of node_register is ignored, not closed; the node then
    registers and serves."""
    node = await peers.raw_node(server, node_id="n-early")
    await node.send(node.heartbeat_message())
    await node.send(node.heartbeat_message())
    ack = await node.register()
    assert ack["node_id"] == "n-early" and not node.closed
    assert [f["type"] for f in node.frames] == ["node_register_ack"]
    await node.heartbeat()
    await server.wait_node_status("n-early", "ready")
    session = await peers.session(server)
    await session.utter(0)
    (answer,) = await session.wait_answers(1)
    assert answer["node_id"] == "n-early"


async def test_only_heartbeats_are_still_refused(server: ServerProcess, peers: Peers) -> None:
    """A socket that sends heartbeats and never registers is refused after a few (1008)."""
    node = await peers.raw_node(server, node_id="n-never")
    for _ in range(9):
        await node.send(node.heartbeat_message())
    assert await node.wait_closed() == 1008
    (error,) = node.frames
    assert error["code"] == "INVALID_MESSAGE"


async def test_a_node_without_a_gpu_is_welcome(server: ServerProcess, peers: Peers) -> None:
    """No GPUs in hardware, services on the CPU: registered and given jobs (Rust refuses
    NO_GPU_AVAILABLE)."""
    node: FakeNode = await peers.raw_node(server, node_id="n-cpu")
    register = node.register_message()
    register["hardware"] = {"cpu_cores": 4, "memory_gb": 8}
    for service in register.get("installed_services", []):
        service["device"] = "cpu"
    await node.send(register)
    ack = await node.wait_for(of_type("node_register_ack"))
    node.node_id = ack["node_id"]
    await node.heartbeat()
    await server.wait_node_status("n-cpu", "ready")
    session = await peers.session(server)
    await session.utter(0)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result" and answer["node_id"] == "n-cpu"
