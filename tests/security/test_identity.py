"""A node answers only its own jobs; a connection speaks only for itself (protocol.md §1
"Identity", §2 "Accepting").  tests/e2e covers foreign results, acks, partials and heartbeats
and another session's utterances; these are the ways around them it does not try."""

from __future__ import annotations

from tests.e2e.harness import FakeNode, FakeSession, NodeBehaviour, ServerProcess, is_error
from tests.security.conftest import Serve

SILENT = NodeBehaviour(mode="none")


async def _node(server: ServerProcess, node_id: str, **kwargs: object) -> FakeNode:
    node = FakeNode(server.ws_url + "/ws/node", node_id=node_id, **kwargs)  # type: ignore[arg-type]
    await node.connect()
    await node.register()
    await node.heartbeat()
    await server.wait_node_status(node_id, "ready")
    return node


async def _session(server: ServerProcess) -> FakeSession:
    session = FakeSession(server.ws_url + "/ws/session")
    await session.connect()
    await session.init()
    return session


async def test_a_result_naming_another_session_reaches_no_one(serve: Serve) -> None:
    """The owner of a job answers it under another live session's id: ignored (the job is
    not that session's), relayed to neither session; the true answer still arrives."""
    server = await serve()
    owner = await _node(server, "owner", behaviour=SILENT)
    victim, other = await _session(server), await _session(server)
    await victim.utter(0)
    assign = await owner.wait_assign()
    await owner.answer(assign, session_id=other.session_id, text_translated="MISDIRECTED")
    await owner.sync()
    await victim.sync()
    await other.sync()
    assert victim.answers == [] and other.answers == []
    await owner.answer(assign)
    (answer,) = await victim.wait_answers(1)
    assert answer["type"] == "translation_result"
    assert answer["text_translated"] != "MISDIRECTED"
    for peer in (owner, victim, other):
        await peer.close()


async def test_a_node_cannot_relabel_its_answer(serve: Serve) -> None:
    """A node's result naming another utterance_index and another node_id still goes to the
    utterance it was assigned, under the node the job was assigned to: the scheduler's own
    fields are authoritative (§2 translation_result)."""
    server = await serve()
    owner = await _node(server, "owner", behaviour=SILENT)
    session = await _session(server)
    await session.utter(5)
    await session.utter(6)
    first = await owner.wait_assign(utterance_index=5)
    await owner.answer(first, utterance_index=6, node_id="someone-else")
    second = await owner.wait_assign(utterance_index=6)
    await owner.answer(second)
    answers = await session.wait_answers(2)
    assert [a["utterance_index"] for a in answers] == [5, 6]
    assert {a["node_id"] for a in answers} == {"owner"}
    assert answers[0]["job_id"] == first["job_id"]
    for peer in (owner, session):
        await peer.close()


async def test_answers_before_any_assignment_change_nothing(serve: Serve) -> None:
    """A node that has been assigned nothing sends job_result, job_ack and asr_partial for a
    job another node holds and for jobs that never existed: silence, no error, nothing
    relayed, and both nodes keep working."""
    server = await serve()
    owner = await _node(server, "owner", behaviour=SILENT)
    session = await _session(server)
    await session.utter(0)
    assign = await owner.wait_assign()
    fresh = await _node(server, "fresh", behaviour=SILENT)
    invented = {**assign, "job_id": "job-00000000DEADBEEF", "attempt_id": 9}
    for job in (assign, invented):
        await fresh.answer(job, text_translated="EARLY")
        await fresh.partial(job, "EARLY")
        await fresh.send(
            {
                "type": "job_ack",
                "job_id": job["job_id"],
                "attempt_id": job["attempt_id"],
                "node_id": "fresh",
                "session_id": job["session_id"],
                "trace_id": job["trace_id"],
            }
        )
    await fresh.sync()
    await session.sync()
    assert fresh.errors == [] and session.answers == []
    assert session.matching(lambda f: "EARLY" in f.raw) == []
    await owner.answer(assign)
    (answer,) = await session.wait_answers(1)
    assert answer["node_id"] == "owner"
    for peer in (owner, fresh, session):
        await peer.close()


async def test_a_second_register_cannot_change_a_nodes_identity(serve: Serve) -> None:
    """node_register again on a registered connection, under another node_id: INVALID_MESSAGE,
    the connection keeps its first identity, and the second id is never listed."""
    server = await serve()
    node = await _node(server, "first-id")
    await node.send({**node.register_message(), "node_id": "second-id"})
    await node.wait_for(is_error("INVALID_MESSAGE"))
    await node.sync()
    assert not node.closed
    listed = await server.nodes()
    assert "first-id" in listed and "second-id" not in listed
    await node.close()
