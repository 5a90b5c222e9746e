"""The agent facing a hand-driven scheduler endpoint (a real socket): what it sends, frame by
frame, when pushed where the real scheduler never goes (contract §1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from switchboard.agent import NODE_BUSY, AgentConfig, BackendError, NodeAgent
from switchboard.agent.resources import nvml_reader
from tests.agent.support import (
    HandScheduler,
    ProbeBackend,
    assign_frame,
    eventually,
    running_agent,
    scaled,
)


@pytest.fixture
async def hand() -> AsyncIterator[HandScheduler]:
    scheduler = HandScheduler()
    await scheduler.start()
    yield scheduler
    await scheduler.stop()


async def test_assigns_beyond_capacity_are_refused_with_node_busy(hand: HandScheduler) -> None:
    """Five job_assign at once on a node of capacity 2: two run, three get job_result
    success:false NODE_BUSY at once and never reach the backend; heartbeats count the two."""
    backend = ProbeBackend(delay=scaled(0.5))
    async with running_agent(
        hand.url, backend, max_concurrency=2, heartbeat_interval=0.05
    ) as agent:
        for n in range(1, 6):
            await hand.send(assign_frame(f"job-{n}", index=n))
        busy = await hand.wait_count("job_result", 3)
        assert [r["job_id"] for r in busy] == ["job-3", "job-4", "job-5"]
        for refusal in busy:
            assert refusal["success"] is False
            assert refusal["error"]["code"] == NODE_BUSY
            assert refusal["node_id"] == "hand-node-1"
        acks = hand.of_type("job_ack")
        assert [a["job_id"] for a in acks] == ["job-1", "job-2"]
        beats = len(hand.of_type("node_heartbeat"))
        beat = (await hand.wait_count("node_heartbeat", beats + 1))[-1]
        assert beat["resource_usage"]["running_jobs"] == 2
        results = await hand.wait_count("job_result", 5)
        assert [r["job_id"] for r in results[3:]] == ["job-1", "job-2"]
        assert all(r["success"] for r in results[3:])
        assert backend.started == ["job-1", "job-2"]
        assert backend.peak == 2 and agent.peak_running == 2
        assert (agent.stats.accepted, agent.stats.refused) == (2, 3)


async def test_job_cancel_stops_the_backend_and_sends_no_result(hand: HandScheduler) -> None:
    """job_cancel → the backend's task observes CancelledError and no job_result ever
    leaves; a later job's result is the barrier (it would have come after job-1's)."""
    backend = ProbeBackend(delay=scaled(0.3))
    async with running_agent(hand.url, backend) as agent:
        await hand.send(assign_frame("job-1"))
        await hand.wait_count("job_started", 1)
        await hand.send({"type": "job_cancel", "job_id": "job-1", "trace_id": "t", "reason": "x"})
        await hand.send(assign_frame("job-2", index=1))
        (result,) = await hand.wait_count("job_result", 1)
        assert result["job_id"] == "job-2" and result["success"] is True
        assert backend.cancelled == ["job-1"]
        assert backend.finished == ["job-2"]
        assert agent.stats.cancelled == 1
    assert [r["job_id"] for r in hand.of_type("job_result")] == ["job-2"]


async def test_job_frames_carry_the_assignment_ids(hand: HandScheduler) -> None:
    """job_ack, job_started, job_result echo job_id, attempt_id, session_id and trace_id;
    the result carries processing_time_ms; registration and heartbeats are well formed."""
    async with running_agent(hand.url, ProbeBackend(), pairs=(("en", "de"), ("de", "en"))):
        await hand.send(assign_frame("job-7", index=7))
        (result,) = await hand.wait_count("job_result", 1)
    (register,) = hand.of_type("node_register")
    pairs = register["language_capabilities"]["supported_language_pairs"]
    assert pairs == [{"src": "en", "tgt": "de"}, {"src": "de", "tgt": "en"}]
    usage = hand.of_type("node_heartbeat")[0]["resource_usage"]
    assert 0 <= usage["cpu_percent"] <= 100 and 0 < usage["mem_percent"] <= 100
    if nvml_reader() is None:  # no GPU here: the fields are absent, not zeros
        assert "gpu_percent" not in usage and "gpu_mem_percent" not in usage
        assert register["hardware"]["gpus"] == []
    for kind in ("job_ack", "job_started", "job_result"):
        (frame,) = hand.of_type(kind)
        assert frame["job_id"] == "job-7" and frame["attempt_id"] == 1
        assert frame["session_id"] == "s-0000000000000001"
        assert frame["trace_id"] == "trace-job-7" and frame["node_id"] == "hand-node-1"
    assert result["utterance_index"] == 7
    assert result["text_translated"] == "[de] probe 7"
    assert isinstance(result["processing_time_ms"], int)


@pytest.mark.parametrize(
    ("failure", "code"),
    [(BackendError("ASR_FAILED", "no speech", details={"db": -60}), "ASR_FAILED"),
     (RuntimeError("model crashed"), "NODE_ERROR")],
)  # fmt: skip
async def test_backend_failures_become_failed_results(
    hand: HandScheduler, failure: Exception, code: str
) -> None:
    """A BackendError keeps its code and details; any other exception is NODE_ERROR; the
    agent carries on either way."""

    class Failing(ProbeBackend):
        async def run(self, job, partials):  # type: ignore[no-untyped-def]
            raise failure

    async with running_agent(hand.url, Failing()) as agent:
        await hand.send(assign_frame("job-1"))
        (result,) = await hand.wait_count("job_result", 1)
        assert agent.running_jobs == 0
    assert result["success"] is False and result["error"]["code"] == code
    if isinstance(failure, BackendError):
        assert result["error"]["details"] == {"db": -60}


async def test_unreadable_assignments_are_answered_not_dropped(hand: HandScheduler) -> None:
    """Audio that is not base64 → job_result INVALID_AUDIO at once (not a job timeout);
    a job_assign without ids → node_error."""
    async with running_agent(hand.url, ProbeBackend()):
        await hand.send(assign_frame("job-1", audio="@@not base64@@"))
        (result,) = await hand.wait_count("job_result", 1)
        await hand.send({"type": "job_assign", "audio": "AAAA"})
        (error,) = await hand.wait_count("node_error", 1)
    assert result["success"] is False and result["error"]["code"] == "INVALID_AUDIO"
    assert error["code"] == "INVALID_MESSAGE" and error["node_id"] == "hand-node-1"


async def test_drain_reports_nothing_ready_then_closes(hand: HandScheduler) -> None:
    """drain(): a heartbeat with every service not ready, the running job finishes and is
    answered, then the agent closes the connection and run() returns 0."""
    backend = ProbeBackend(delay=scaled(0.3))
    agent = NodeAgent(AgentConfig(url=hand.url, heartbeat_interval=scaled(5)), backend)
    run = asyncio.create_task(agent.run())
    async with asyncio.timeout(scaled(5)):
        await agent.wait_registered()
        await hand.send(assign_frame("job-1"))
        await hand.wait_count("job_started", 1)
        agent.drain()
        assert await run == 0
    first, last = hand.of_type("node_heartbeat")  # one on registering, one on draining
    assert {c["ready"] for c in first["capability_by_type"]} == {True}
    assert {c["ready"] for c in last["capability_by_type"]} == {False}
    assert last["resource_usage"]["running_jobs"] == 1
    (result,) = hand.of_type("job_result")
    assert result["success"] is True and backend.finished == ["job-1"]
    assert hand.frames.index(last) < hand.frames.index(result)

    async def closed() -> bool:
        return hand.closed

    await eventually(closed, "the agent to close its connection")


async def test_node_id_conflict_is_retried() -> None:
    """NODE_ID_CONFLICT (the scheduler still sees our dead socket) is not fatal: the agent
    registers again after its backoff."""
    conflict = {"type": "error", "code": "NODE_ID_CONFLICT", "message": "dup", "details": {}}
    hand = HandScheduler(refusals=[conflict])
    await hand.start()
    try:
        async with running_agent(hand.url, ProbeBackend(), reconnect_initial=0.05) as agent:
            assert agent.registrations == 1
        assert hand.connections == 2 and hand.refusals == []
    finally:
        await hand.stop()
