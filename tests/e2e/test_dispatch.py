"""Dispatch end to end (protocol.md §1–§2): placement, relaying, ordering, capacity, eligibility."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import (
    NodeBehaviour,
    ServerProcess,
    eventually,
    is_error,
    of_type,
    scaled,
)

FIFO_ROUNDS, FIFO_WAITERS = 10, 6
OPAQUE_FEATURES = '{"z": 1.50, "nested": {"k": [1, 2, {"deep": null}]}, "a": "x"}'


async def test_happy_path_assign_and_relay(server: ServerProcess, peers: Peers) -> None:
    """A registered, heartbeating node gets a job_assign with normalised languages and every
    opaque utterance field byte for byte; its result is relayed without success/attempt/error."""
    node = await peers.node(
        server,
        pairs=[("en", "zh-cn")],
        behaviour=NodeBehaviour(
            extra={"confidence": 0.87, "segments": [{"start": 0, "end": 1}]},
            raw_extra='"node_blob": {"q": 2.50,  "r": [true, null]}',
        ),
    )
    register_ack = node.frames[0]
    assert register_ack["type"] == "node_register_ack"
    assert isinstance(node.node_id, str) and node.node_id  # assigned: the node sent none
    assert register_ack["node_id"] == node.node_id
    assert register_ack["status"] == "registering"
    assert isinstance(register_ack["message"], str)
    session = await peers.raw_session(server, tgt_lang="zh_CN")
    ack = await session.init(trace_id="client-trace-init")
    assert ack["session_id"].startswith("s-")
    assert ack["assigned_node_id"] is None
    assert ack["trace_id"] == "client-trace-init"

    utterance = session.utterance_message(
        4, src_lang="EN", trace_id="trace-xyz", dialect="yue", manual_cut=True
    )
    text = json.dumps(utterance)[:-1] + f', "features": {OPAQUE_FEATURES}, "unknown_x": 7}}'
    await session.send_raw(text)

    assign = await node.wait_assign()
    assert assign["attempt_id"] == 1
    assert (assign["src_lang"], assign["tgt_lang"]) == ("en", "zh-cn")
    assert assign["session_id"] == session.session_id
    assert assign["utterance_index"] == 4
    assert assign["trace_id"] == "trace-xyz"
    assert assign["pipeline"] == {"use_asr": True, "use_nmt": True, "use_tts": True}
    assert assign["job_id"]
    for key in ("audio", "audio_format", "sample_rate", "dialect", "manual_cut"):
        assert assign[key] == utterance[key], key
    assert assign["unknown_x"] == 7
    assert f'"features":{OPAQUE_FEATURES}' in assign.raw or f'"features": {OPAQUE_FEATURES}' in (
        assign.raw
    ), assign.raw
    assert "token" not in assign

    (result,) = await session.wait_answers(1)
    assert result["type"] == "translation_result", result
    assert result["session_id"] == session.session_id
    assert result["utterance_index"] == 4
    assert result["job_id"] == assign["job_id"]
    assert result["trace_id"] == "trace-xyz"
    assert result["node_id"] == node.node_id
    sent = node.results_sent[0]
    for key in ("text_asr", "text_translated", "tts_audio", "tts_format", "processing_time_ms"):
        assert result[key] == sent[key], key
    assert result["confidence"] == 0.87
    assert result["segments"] == [{"start": 0, "end": 1}]
    assert '{"q": 2.50,  "r": [true, null]}' in result.raw, result.raw
    for hidden in ("success", "attempt_id", "error"):
        assert hidden not in result, hidden
    await server.wait_idle()


@MEMORY_ONLY
async def test_server_makes_trace_id_and_relays_partials(
    server: ServerProcess, peers: Peers
) -> None:
    """Without a client trace_id the server makes one, used for the job and its answer; an
    asr_partial reaches the client without node_id, before the result; a result without some
    optional fields still gives the client every translation_result field."""
    node = await peers.node(server, behaviour=NodeBehaviour(partials=["hel", "hello"]))
    session = await peers.session(server)
    await session.utter(0)
    assign = await node.wait_assign()
    assert isinstance(assign["trace_id"], str) and assign["trace_id"]
    (result,) = await session.wait_answers(1)
    assert result["trace_id"] == assign["trace_id"]
    partials = session.matching(of_type("asr_partial"))
    assert [p["text"] for p in partials] == ["hel", "hello"]
    for p in partials:
        assert "node_id" not in p
        assert p["session_id"] == session.session_id
        assert p["utterance_index"] == 0
        assert p["job_id"] == assign["job_id"]
    assert session.frames.index(partials[-1]) < session.frames.index(result)

    node.behaviour = NodeBehaviour(mode="none")
    await session.utter(1)
    bare = await node.wait_assign(utterance_index=1)
    minimal = node.result_message(bare)
    # text_translated stays: a result with nothing at all is a missing_result (v1.1).
    for optional in ("text_asr", "tts_audio", "tts_format"):
        del minimal[optional]
    await node.send(minimal)
    (_, second) = await session.wait_answers(2)
    assert second["type"] == "translation_result", second
    assert (second["text_asr"], second["tts_audio"], second["tts_format"]) == ("", "", "pcm16")


async def test_answers_in_send_order(server: ServerProcess, peers: Peers) -> None:
    """Utterances answered by the node in reverse order reach the client in send order; indexes
    need not start at 0 nor be contiguous; nothing is delivered before the head is answered."""
    node = await peers.node(server, max_concurrency=8, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    indexes = [5, 7, 8, 20, 3]
    for index in indexes:
        await session.utter(index)
    assigns = await node.wait_count(of_type("job_assign"), len(indexes))
    by_index = {a["utterance_index"]: a for a in assigns}
    assert sorted(by_index) == sorted(indexes)
    for index in reversed(indexes[1:]):
        await node.answer(by_index[index])
    await node.sync()
    await session.sync()
    assert session.answers == [], "answers overtook the unanswered first utterance"
    await node.answer(by_index[indexes[0]])
    answers = await session.wait_answers(len(indexes))
    assert [a["type"] for a in answers] == ["translation_result"] * len(indexes)
    assert [a["utterance_index"] for a in answers] == indexes
    assert [a["job_id"] for a in answers] == [by_index[i]["job_id"] for i in indexes]


@pytest.mark.server(pending_timeout=5)
async def test_capacity_is_never_exceeded(server: ServerProcess, peers: Peers) -> None:
    """A node with max_concurrency 2 never runs more than 2 jobs at once; the rest wait and
    are dispatched as slots free up, and every utterance is answered in order."""
    node = await peers.node(server, max_concurrency=2, behaviour=NodeBehaviour(delay=0.15))
    session = await peers.session(server)
    indexes = list(range(10, 17))
    for index in indexes:
        await session.utter(index)
    answers = await session.wait_answers(len(indexes))
    assert [a["type"] for a in answers] == ["translation_result"] * len(indexes), answers
    assert [a["utterance_index"] for a in answers] == indexes
    assert node.max_running == 2, f"ran {node.max_running} at once"
    assert sorted(a["utterance_index"] for a in node.assigns) == indexes
    stats = await server.wait_idle()
    assert stats["dispatched_total"] == len(indexes)


@pytest.mark.server(pending_timeout=5)
async def test_waiting_utterances_are_dispatched_fifo(server: ServerProcess, peers: Peers) -> None:
    """Utterances that arrive together while every slot is taken are dispatched in arrival
    order as slots free up (§2 "Waiting": FIFO); checked over several rounds, since an
    ordering race shows only in some of them."""
    node = await peers.node(server, max_concurrency=2, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    first, total = 0, 2 + FIFO_WAITERS
    for _ in range(FIFO_ROUNDS):
        base = len(node.assigns)
        await session.utter(first)
        await session.utter(first + 1)
        running = (await node.wait_count(of_type("job_assign"), base + 2))[base:]
        waiting = list(range(first + 2, first + 2 + FIFO_WAITERS))
        for index in waiting:
            await session.utter(index)
        await server.wait_stats(lambda s: s["jobs_in_flight"] == total, f"{total} in flight")
        await node.sync()
        assert len(node.assigns) == base + 2, "dispatched beyond max_concurrency"
        for assign in running:
            await node.answer(assign)
        for served in range(base + 2, base + total):
            assigns = await node.wait_count(of_type("job_assign"), served + 1)
            await node.answer(assigns[served])
        order = [a["utterance_index"] for a in node.assigns[base + 2 :]]
        assert order == waiting, "waiters not dispatched in arrival order"
        answers = await session.wait_answers(first + total)
        assert [a["utterance_index"] for a in answers] == list(range(first + total))
        first += total
    assert node.max_running <= 2


@pytest.mark.server(pending_timeout=0.4)
async def test_pending_timeout_gives_no_available_node(server: ServerProcess, peers: Peers) -> None:
    """An utterance that finds no free slot within --pending-timeout gets NO_AVAILABLE_NODE
    with details.utterance_index and details.job_id, after the answer before it."""
    node = await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    await session.utter(1)
    await session.utter(2)
    first = await node.wait_assign(utterance_index=1)
    await server.wait_stats(lambda s: s["failed_total"] == 1, "the waiting utterance to fail")
    assert len(node.assigns) == 1
    await node.answer(first)
    result, error = await session.wait_answers(2)
    assert result["type"] == "translation_result" and result["utterance_index"] == 1
    assert is_error("NO_AVAILABLE_NODE", utterance_index=2)(error), error
    job_id = error["details"].get("job_id")
    assert isinstance(job_id, str) and job_id and job_id != first["job_id"]
    await server.wait_idle()


@pytest.mark.server(pending_timeout=0.4)
async def test_heartbeat_running_jobs_is_information_only(
    server: ServerProcess, peers: Peers
) -> None:
    """running_jobs in a heartbeat never overrides the scheduler's reservations: a full node
    reporting 0 running gets no extra job; an idle node reporting 50 running still gets one."""
    node = await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    await session.utter(0)
    running = await node.wait_assign()
    node.stop_heartbeats()
    lie = node.heartbeat_message()
    lie["resource_usage"]["running_jobs"] = 0
    await node.send(lie)
    await node.sync()
    await session.utter(1)
    await server.wait_stats(lambda s: s["failed_total"] == 1, "utterance 1 to time out waiting")
    assert len(node.assigns) == 1 and node.max_running == 1
    await node.answer(running)
    first, second = await session.wait_answers(2)
    assert first["type"] == "translation_result"
    assert is_error("NO_AVAILABLE_NODE", utterance_index=1)(second), second
    await server.wait_idle()

    lie["resource_usage"]["running_jobs"] = 50
    await node.send(lie)
    await node.sync()
    await session.utter(2)
    await node.answer(await node.wait_assign(utterance_index=2))
    assert (await session.wait_answer(2))["type"] == "translation_result"


@pytest.mark.server(reservation_lease=0.4, pending_timeout=0.3)
async def test_running_job_keeps_its_slot_past_the_lease(
    server: ServerProcess, peers: Peers
) -> None:
    """A job running longer than --reservation-lease keeps its slot (the lease is renewed):
    reservations_held stays 1 and a one-slot node gets no second job meanwhile."""
    node = await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    await session.utter(0)
    running = await node.wait_assign()
    window_end = time.monotonic() + 3 * scaled(0.4)
    while time.monotonic() < window_end:  # observe three lease lengths
        held = (await server.stats())["reservations_held"]
        assert held == 1, f"slot lost while the job runs (reservations_held={held})"
        await asyncio.sleep(0.05)
    await session.utter(1)
    await server.wait_stats(lambda s: s["failed_total"] == 1, "utterance 1 to time out waiting")
    assert len(node.assigns) == 1, "the running job's slot was given away"
    await node.answer(running)
    answers = await session.wait_answers(2)
    assert is_error("NO_AVAILABLE_NODE", utterance_index=1)(answers[1]), answers
    await server.wait_idle()


# --------------------------------------------------------------------------- eligibility (§1)


@MEMORY_ONLY
@pytest.mark.server(pending_timeout=0.4)
async def test_wrong_pair_waits_then_no_available_node(server: ServerProcess, peers: Peers) -> None:
    """A node serves only its exact ordered pair: de→en and fr→de utterances for an en→de node
    wait out --pending-timeout and get NO_AVAILABLE_NODE; the node never sees them."""
    node = await peers.node(server, pairs=[("en", "de")])
    session = await peers.session(server)
    await session.utter(0, src_lang="de", tgt_lang="en")
    await session.utter(1, src_lang="fr", tgt_lang="de")
    await session.utter(2, src_lang="en", tgt_lang="de")
    first, second, third = await session.wait_answers(3)
    assert is_error("NO_AVAILABLE_NODE", utterance_index=0)(first), first
    assert is_error("NO_AVAILABLE_NODE", utterance_index=1)(second), second
    assert third["type"] == "translation_result" and third["utterance_index"] == 2
    assert [a["utterance_index"] for a in node.assigns] == [2]


@MEMORY_ONLY
async def test_session_rebinds_when_the_pair_changes(server: ServerProcess, peers: Peers) -> None:
    """A session's utterances with changing pairs each go to a node serving that pair."""
    en_de = await peers.node(server, pairs=[("en", "de")])
    de_en = await peers.node(server, pairs=[("de", "en")])
    session = await peers.session(server)
    pairs = [("en", "de"), ("de", "en"), ("en", "de"), ("de", "en")]
    for index, (src, tgt) in enumerate(pairs):
        await session.utter(index, src_lang=src, tgt_lang=tgt)
    answers = await session.wait_answers(len(pairs))
    expected = [en_de.node_id, de_en.node_id, en_de.node_id, de_en.node_id]
    assert [a.get("node_id") for a in answers] == expected, answers


@MEMORY_ONLY
async def test_auto_source_and_primary_subtag(server: ServerProcess, peers: Peers) -> None:
    """An `auto` source matches any pair with that target (and stays `auto` in job_assign);
    a node listing `zh` serves `zh_CN`, which reaches it normalised as `zh-cn`."""
    node = await peers.node(server, pairs=[("ja", "de"), ("en", "zh")])
    session = await peers.session(server)
    await session.utter(0, src_lang="auto", tgt_lang="de")
    await session.utter(1, src_lang="EN", tgt_lang="zh_CN")
    answers = await session.wait_answers(2)
    assert [a["type"] for a in answers] == ["translation_result"] * 2, answers
    langs = [(a["src_lang"], a["tgt_lang"]) for a in node.assigns]
    assert langs == [("auto", "de"), ("en", "zh-cn")]


@MEMORY_ONLY
@pytest.mark.server(pending_timeout=0.4)
async def test_pipeline_needs_its_services_ready(server: ServerProcess, peers: Peers) -> None:
    """A job whose pipeline uses tts (or gives no pipeline: all three) is not placed on a node
    whose tts is not ready; a pipeline without tts is."""
    node = await peers.node(server, services={"asr": True, "nmt": True, "tts": False})
    session = await peers.session(server)
    await session.utter(0)
    await session.utter(1, pipeline={"use_asr": True, "use_nmt": True, "use_tts": True})
    await session.utter(2, pipeline={"use_asr": True, "use_nmt": True, "use_tts": False})
    answers = await session.wait_answers(3)
    assert is_error("NO_AVAILABLE_NODE", utterance_index=0)(answers[0]), answers[0]
    assert is_error("NO_AVAILABLE_NODE", utterance_index=1)(answers[1]), answers[1]
    assert answers[2]["type"] == "translation_result", answers[2]
    (assign,) = node.assigns
    assert assign["utterance_index"] == 2
    assert assign["pipeline"] == {"use_asr": True, "use_nmt": True, "use_tts": False}


@MEMORY_ONLY
@pytest.mark.server(pending_timeout=3)
async def test_services_follow_the_latest_heartbeat(server: ServerProcess, peers: Peers) -> None:
    """Eligibility uses the latest capability_by_type: a node whose heartbeat turns tts off
    stops getting tts jobs, and gets them again once it reports tts ready."""
    node = await peers.node(server)
    session = await peers.session(server)
    node.stop_heartbeats()
    node.services["tts"] = False
    await node.heartbeat()
    await node.sync()

    async def tts_gone() -> bool:  # the snapshot is rebuilt after the heartbeat, not with it
        return "tts" not in (await server.nodes())[node.node_id]["services"]

    await eventually(tts_gone, "the snapshot to show tts not ready")
    await session.utter(0)
    await server.wait_stats(lambda s: s["jobs_in_flight"] == 1, "the utterance to be waiting")
    await session.sync()
    assert node.assigns == [] and session.answers == []
    node.services["tts"] = True
    await node.heartbeat()
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result", answer


@MEMORY_ONLY
@pytest.mark.server(pending_timeout=0.4)
async def test_node_not_accepting_public_jobs_gets_none(
    server: ServerProcess, peers: Peers
) -> None:
    """A node registered with accept_public_jobs false never gets a job."""
    private = await peers.node(server, accept_public_jobs=False)
    session = await peers.session(server)
    await session.utter(0)
    (answer,) = await session.wait_answers(1)
    assert is_error("NO_AVAILABLE_NODE", utterance_index=0)(answer), answer
    assert private.assigns == []


@MEMORY_ONLY
@pytest.mark.server(pending_timeout=3)
async def test_registering_node_gets_jobs_only_after_first_heartbeat(
    server: ServerProcess, peers: Peers
) -> None:
    """A node still `registering` (no heartbeat yet) gets no job; the waiting utterance goes to
    it as soon as its first heartbeat makes it ready."""
    node = await peers.node(server, ready=False)
    assert node.node_id is not None
    await server.wait_node_status(node.node_id, "registering")
    session = await peers.session(server)
    await session.utter(0)
    await server.wait_stats(lambda s: s["jobs_in_flight"] == 1, "the utterance to be waiting")
    await node.sync()
    assert node.assigns == []
    await node.heartbeat()
    assign = await node.wait_assign()
    assert assign["utterance_index"] == 0
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result", answer


@pytest.mark.server(pending_timeout=0.4)
async def test_drained_node_finishes_running_job_but_gets_no_new_one(
    server: ServerProcess, peers: Peers
) -> None:
    """After POST /api/v1/nodes/{id}/drain the node shows `draining`, gets no new job, and the
    job it was running is still answered."""
    node = await peers.node(server, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    await session.utter(0)
    running = await node.wait_assign()
    status, body = await server.http("POST", f"/api/v1/nodes/{node.node_id}/drain")
    assert (status, body) == (200, {"node_id": node.node_id, "status": "draining"})
    assert (await server.nodes())[str(node.node_id)]["status"] == "draining"
    await session.utter(1)
    await server.wait_stats(lambda s: s["failed_total"] == 1, "utterance 1 to fail")
    await node.answer(running)
    first, second = await session.wait_answers(2)
    assert first["type"] == "translation_result" and first["utterance_index"] == 0
    assert is_error("NO_AVAILABLE_NODE", utterance_index=1)(second), second
    assert len(node.assigns) == 1
    stats = await server.wait_idle()
    assert stats["nodes"]["draining"] == 1
