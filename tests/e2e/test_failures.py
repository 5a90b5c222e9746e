"""Failures end to end (protocol.md §1 "Status"/"Identity", §2 "Failures"): timeouts and
retries, nodes that leave or fall silent, nodes that speak for others, failed results."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import (
    FakeNode,
    NodeBehaviour,
    ServerProcess,
    is_error,
    of_type,
    scaled,
)

SILENT = NodeBehaviour(mode="none")


@pytest.mark.server(job_timeout=0.6)
async def test_silent_node_is_cancelled_and_job_retried_elsewhere(
    server: ServerProcess, peers: Peers
) -> None:
    """No result within --job-timeout: job_cancel goes to the silent node and the same job is
    retried on another node with attempt_id 2; a late result for attempt 1 then changes nothing
    and is not relayed, and the client gets exactly one answer, from attempt 2."""
    silent = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(0, trace_id="t-retry")
    first = await silent.wait_assign()
    assigned_at = time.monotonic()
    backup = await peers.node(server, behaviour=SILENT)

    cancel = await silent.wait_for(of_type("job_cancel"))
    waited = time.monotonic() - assigned_at
    assert cancel["job_id"] == first["job_id"]
    assert cancel["trace_id"] == "t-retry"
    assert isinstance(cancel.get("reason"), str)
    assert waited >= scaled(0.6) * 0.8, f"cancelled after {waited:.2f}s, before --job-timeout"

    second = await backup.wait_assign()
    assert second["job_id"] == first["job_id"]
    assert second["attempt_id"] == 2
    assert second["trace_id"] == "t-retry"
    assert second["utterance_index"] == 0

    await silent.answer(first, text_translated="LATE attempt 1")
    await silent.sync()
    await session.sync()
    assert session.answers == [], "a late result for attempt 1 was relayed"
    assert silent.errors == [], "a well-formed stale result must not get an error"

    await backup.answer(second)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result"
    assert answer["node_id"] == backup.node_id
    assert answer["text_translated"] == backup.results_sent[0]["text_translated"]
    await session.sync()
    assert len(session.answers) == 1
    await server.wait_idle()


@pytest.mark.server(job_timeout=0.4, max_attempts=2)
async def test_job_timeout_after_max_attempts_on_the_only_node(
    server: ServerProcess, peers: Peers
) -> None:
    """With one silent node and --max-attempts 2 the job is tried twice on it (each attempt
    cancelled), then the client gets JOB_TIMEOUT with utterance_index and job_id."""
    node = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(3)
    (answer,) = await session.wait_answers(1)
    assert is_error("JOB_TIMEOUT", utterance_index=3)(answer), answer
    assigns = node.assigns
    assert [a["attempt_id"] for a in assigns] == [1, 2]
    assert answer["details"]["job_id"] == assigns[0]["job_id"] == assigns[1]["job_id"]
    cancels = await node.wait_count(of_type("job_cancel"), 2)
    assert {c["job_id"] for c in cancels} == {assigns[0]["job_id"]}
    await node.sync()
    assert len(node.assigns) == 2, "tried more than --max-attempts"
    await server.wait_idle()


@pytest.mark.server(job_timeout=10, pending_timeout=0.5)
async def test_node_disconnect_mid_job_retries_at_once(server: ServerProcess, peers: Peers) -> None:
    """A node whose socket closes mid-job has the job retried at once (long before
    --job-timeout) on another node, as attempt 2 of the same job."""
    leaving = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(0)
    first = await leaving.wait_assign()
    backup = await peers.node(server)
    await leaving.close()
    second = await backup.wait_assign(within=2)
    assert (second["job_id"], second["attempt_id"]) == (first["job_id"], 2)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result" and answer["node_id"] == backup.node_id
    await server.wait_idle()


@pytest.mark.server(job_timeout=10, pending_timeout=0.5)
async def test_node_disconnect_without_backup_gives_node_unavailable(
    server: ServerProcess, peers: Peers
) -> None:
    """A node that leaves mid-job with no other node to take it: after --pending-timeout the
    client gets NODE_UNAVAILABLE, and no slot stays held."""
    leaving = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(9)
    first = await leaving.wait_assign()
    await leaving.close()
    (answer,) = await session.wait_answers(1, within=3)
    assert is_error("NODE_UNAVAILABLE", utterance_index=9)(answer), answer
    assert answer["details"]["job_id"] == first["job_id"]
    await server.wait_idle()


@MEMORY_ONLY
@pytest.mark.server(heartbeat_interval=0.3, job_timeout=10, pending_timeout=3)
async def test_heartbeat_loss_takes_node_offline(server: ServerProcess, peers: Peers) -> None:
    """A node that stops heartbeating (socket open) is offline after 3 intervals: no longer in
    /api/v1/nodes, its socket closed by the server, its job retried elsewhere, and its node_id
    free to register again."""
    quiet = await peers.node(server, node_id="gpu-quiet", behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(0)
    first = await quiet.wait_assign()
    backup = await peers.node(server)
    quiet.stop_heartbeats()
    last_beat = quiet.last_heartbeat

    await quiet.wait_closed(within=5)
    silent_for = time.monotonic() - last_beat
    assert silent_for >= 3 * scaled(0.3) * 0.9, f"offline after only {silent_for:.2f}s"
    assert "gpu-quiet" not in await server.nodes()

    second = await backup.wait_assign()
    assert (second["job_id"], second["attempt_id"]) == (first["job_id"], 2)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result" and answer["node_id"] == backup.node_id

    again = await peers.node(server, node_id="gpu-quiet")
    assert again.node_id == "gpu-quiet"


@MEMORY_ONLY
async def test_node_id_conflict(server: ServerProcess, peers: Peers) -> None:
    """A second live connection registering an existing node_id gets NODE_ID_CONFLICT and is
    closed with 1008; the first connection keeps serving."""
    first = await peers.node(server, node_id="gpu-1")
    second = await peers.raw_node(server, node_id="gpu-1")
    await second.register(expect_ack=False)
    (error,) = second.matching(of_type("error"))
    assert error["code"] == "NODE_ID_CONFLICT"
    assert await second.wait_closed() == 1008
    session = await peers.session(server)
    await session.utter(0)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result" and answer["node_id"] == first.node_id


@MEMORY_ONLY
async def test_node_may_only_speak_for_itself(server: ServerProcess, peers: Peers) -> None:
    """A job_result/job_ack/asr_partial from a node for another node's job (in its own name or
    the owner's) changes nothing, is not relayed and gets no error; the owner's result is."""
    owner = await peers.node(server, node_id="owner", behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(0)
    assign = await owner.wait_assign()
    intruder = await peers.node(server, node_id="intruder", behaviour=SILENT)

    ack = {
        "type": "job_ack",
        "job_id": assign["job_id"],
        "attempt_id": 1,
        "node_id": "intruder",
        "session_id": assign["session_id"],
        "trace_id": assign["trace_id"],
    }
    await intruder.send(ack)
    await intruder.partial(assign, "forged partial")
    await intruder.answer(assign, text_translated="forged, own name")
    await intruder.answer(assign, node_id="owner", text_translated="forged, owner's name")
    await intruder.sync()
    await session.sync()
    assert session.answers == [], "a foreign result was relayed"
    assert session.matching(of_type("asr_partial")) == [], "a foreign partial was relayed"
    assert intruder.errors == []

    await owner.answer(assign)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result" and answer["node_id"] == "owner"
    assert answer["text_translated"] == owner.results_sent[0]["text_translated"]
    await server.wait_idle()


@MEMORY_ONLY
async def test_heartbeat_for_another_node_id_is_invalid(
    server: ServerProcess, peers: Peers
) -> None:
    """A heartbeat naming another node_id gets INVALID_MESSAGE, as does a binary frame, and the
    connection lives on."""
    node = await peers.node(server, node_id="self-node")
    await peers.node(server, node_id="other-node")
    await node.send(node.heartbeat_message("other-node"))
    error = await node.wait_for(is_error("INVALID_MESSAGE"))
    assert error["message"]
    await node.send_bytes(b"\x00binary")
    await node.wait_count(is_error("INVALID_MESSAGE"), 2)
    assert not node.closed
    session = await peers.session(server)
    await session.utter(0)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result"


FAILURES: list[tuple[dict[str, Any], str, str | None]] = [
    (
        {"code": "ASR_FAILED", "message": "model crashed", "details": {"stage": "asr"}},
        "ASR_FAILED",
        "model crashed",
    ),
    ({"details": {"stage": "nmt"}}, "NODE_ERROR", None),
]


async def test_failed_result_is_relayed_as_error_and_not_retried(
    server: ServerProcess, peers: Peers
) -> None:
    """A job_result with success:false gives the client an error with the node's code (or
    NODE_ERROR), message, and details = node details + utterance_index, job_id, node_id; the
    job is not retried on any node."""
    failing = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(6)
    await session.utter(7)
    assigns = await failing.wait_count(of_type("job_assign"), 2)
    other = await peers.node(server)
    for assign, (node_error, _, _) in zip(assigns, FAILURES, strict=True):
        await failing.answer(assign, success=False, error=node_error)
    answers = await session.wait_answers(2)
    for answer, assign, (node_error, code, message) in zip(answers, assigns, FAILURES, strict=True):
        assert answer["type"] == "error", answer
        assert answer["code"] == code
        assert isinstance(answer["message"], str) and answer["message"]
        if message is not None:
            assert answer["message"] == message
        assert answer["details"] == {
            **node_error["details"],
            "utterance_index": assign["utterance_index"],
            "job_id": assign["job_id"],
            "node_id": failing.node_id,
        }
    await failing.sync()
    await other.sync()
    assert len(failing.assigns) == 2 and other.assigns == []
    stats = await server.wait_idle()
    assert stats["failed_total"] == 2


async def test_two_nodes_share_the_work(server: ServerProcess, peers: Peers) -> None:
    """With two eligible nodes and more utterances than one node's slots, both get jobs."""
    nodes: list[FakeNode] = [
        await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(delay=0.1))
        for _ in range(2)
    ]
    session = await peers.session(server)
    for index in range(4):
        await session.utter(index)
    answers = await session.wait_answers(4)
    assert [a["utterance_index"] for a in answers] == [0, 1, 2, 3]
    assert all(n.assigns for n in nodes), [len(n.assigns) for n in nodes]
    assert all(n.max_running == 1 for n in nodes)
    assert {a["node_id"] for a in answers} == {n.node_id for n in nodes}
