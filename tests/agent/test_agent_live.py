"""The node agent against a real scheduler process, with the client SDK (contract §1–§2)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import pytest

from switchboard.agent import AgentConfig, NodeAgent
from switchboard.agent.pseudo import pseudo_transcript, pseudo_translation
from switchboard.client import NoAvailableNode, Session, sine_pcm16
from tests.agent.support import (
    AgentFactory,
    ProbeBackend,
    SchedulerFactory,
    eventually,
    ready_agent,
    scaled,
)

AUDIO = sine_pcm16(0.2)
FAST = ("--latency-median", "0.02", "--latency-p99", "0.05", "--heartbeat-interval", "0.25")


async def test_agent_serves_a_client_end_to_end(
    scheduler_factory: SchedulerFactory, store_flags: list[str], agent_process: AgentFactory
) -> None:
    """`switchboard node` registers, turns ready, runs the stand-in backend and streams
    partials; the SDK gets the deterministic translation and answers in order."""
    server = await scheduler_factory(*store_flags)
    agent = agent_process(server.ws_url, "--node-id", "gpu-e2e", "--partials", *FAST)
    assert await agent.wait_registered() == "gpu-e2e"
    await server.wait_node_status("gpu-e2e", "ready")

    async with Session.connect(server.url, src_lang="en", tgt_lang="de") as session:
        partials = session.partials()
        result = await session.translate(AUDIO, sample_rate=16000)
        words = pseudo_transcript(AUDIO)
        assert result.node_id == "gpu-e2e"
        assert result.text_asr == " ".join(words)
        assert result.text_translated == pseudo_translation(words, "de")
        assert result.fields["extra"] == {"backend": "pseudo-translate", "stand_in": True}
        seen = []
        async with asyncio.timeout(scaled(5)):
            async for partial in partials:
                seen.append(partial)
                if partial.is_final:
                    break
        assert [p.text for p in seen] == [" ".join(words[:n]) for n in range(1, len(words) + 1)]
        assert {p.utterance_index for p in seen} == {result.utterance_index}

        clips = [bytes([n]) * 3200 for n in range(6)]
        handles = [await session.send(clip) for clip in clips]
        answers = [await handle for handle in handles]
        assert [a.utterance_index for a in answers] == [1, 2, 3, 4, 5, 6]
        assert [a.text_asr for a in answers] == [" ".join(pseudo_transcript(c)) for c in clips]
    await server.wait_idle()


async def test_agent_reregisters_after_scheduler_restart(
    scheduler_factory: SchedulerFactory, agent_process: AgentFactory
) -> None:
    """The scheduler goes away; the agent backs off, reconnects to the new process on the
    same port under the same node_id, and serves again."""
    first = await scheduler_factory()
    agent = agent_process(first.ws_url, "--node-id", "gpu-again", "--reconnect-max", "0.5", *FAST)
    await agent.wait_registered()
    await first.wait_node_status("gpu-again", "ready")
    port = first.port
    assert await asyncio.to_thread(first.terminate) == 0

    second = await scheduler_factory("--port", str(port))
    assert second.port == port
    assert await agent.wait_registered(count=2) == "gpu-again"
    assert agent.registrations == ["gpu-again", "gpu-again"]
    await second.wait_node_status("gpu-again", "ready")
    async with Session.connect(second.url, src_lang="en", tgt_lang="de") as session:
        result = await session.translate(AUDIO)
    assert result.node_id == "gpu-again"


async def test_closing_the_session_cancels_the_backend_task(
    scheduler_factory: SchedulerFactory,
) -> None:
    """Session closed mid-job → job_cancel → the backend's task gets CancelledError, the
    agent sends no result and frees the slot (contract §2 "Ending")."""
    server = await scheduler_factory()
    backend = ProbeBackend(delay=scaled(30))
    async with contextlib.AsyncExitStack() as stack:
        agent = await ready_agent(stack, server, backend)
        session = await Session.connect(server.url, src_lang="en", tgt_lang="de")
        pending = await session.send(AUDIO)
        await backend.wait_started()
        assert agent.running_jobs == 1
        await session.close()
        assert pending.done()

        async def cancelled() -> bool:
            return backend.cancelled == backend.started

        await eventually(cancelled, "the backend task to be cancelled")
        assert backend.finished == []
        assert agent.running_jobs == 0
        assert (agent.stats.accepted, agent.stats.cancelled, agent.stats.answered) == (1, 1, 0)
        await server.wait_idle()


async def test_sigterm_drains_without_losing_a_job(
    scheduler_factory: SchedulerFactory, agent_process: AgentFactory
) -> None:
    """SIGTERM mid-job: the node turns degraded (heartbeat with nothing ready), gets no new
    job, answers the running one, then exits 0."""
    server = await scheduler_factory(pending_timeout=1.0)
    job_time = str(scaled(1.5))
    agent = agent_process(
        server.ws_url,
        "--node-id", "gpu-drain",
        "--latency-median", job_time, "--latency-p99", job_time,
        "--heartbeat-interval", "0.25",
    )  # fmt: skip
    await agent.wait_registered()
    await server.wait_node_status("gpu-drain", "ready")
    async with Session.connect(server.url, src_lang="en", tgt_lang="de") as session:
        running = await session.send(AUDIO)
        await server.wait_stats(lambda s: s["reservations_held"] == 1, "the job to be assigned")
        agent.send_signal(signal.SIGTERM)
        await server.wait_node_status("gpu-drain", "degraded")
        refused = await session.send(AUDIO)
        result = await running
        assert result.node_id == "gpu-drain" and result.text_translated.startswith("[de] ")
        with pytest.raises(NoAvailableNode):
            await refused
    assert await agent.wait_exit() == 0
    assert agent.registrations == ["gpu-drain"]
    await server.wait_node_status("gpu-drain", None)


async def test_agent_never_runs_more_than_its_capacity(
    scheduler_factory: SchedulerFactory,
) -> None:
    """Twelve utterances from three sessions at once on a node of capacity 2: the backend
    runs exactly two at a time, and every utterance is answered."""
    server = await scheduler_factory(pending_timeout=10.0)
    backend = ProbeBackend(delay=0.1)
    async with contextlib.AsyncExitStack() as stack:
        agent = await ready_agent(stack, server, backend, max_concurrency=2)
        sessions = [
            await stack.enter_async_context(
                Session.connect(server.url, src_lang="en", tgt_lang="de")
            )
            for _ in range(3)
        ]
        handles = [await s.send(AUDIO) for s in sessions for _ in range(4)]
        results = [await h for h in handles]
    assert len(results) == 12 and all(r.node_id == agent.node_id for r in results)
    assert backend.peak == 2
    assert agent.peak_running == 2
    assert agent.stats.refused == 0 and agent.stats.answered == 12


async def test_wrong_token_is_fatal_and_right_token_registers(
    scheduler_factory: SchedulerFactory,
) -> None:
    """UNAUTHORIZED cannot be cured by retrying: the agent gives up (exit status 1) instead
    of looping; with the right token it registers."""
    server = await scheduler_factory("--node-token", "right-token")
    wrong = NodeAgent(AgentConfig(url=server.ws_url, token="wrong-token"), ProbeBackend())
    assert await asyncio.wait_for(wrong.run(), scaled(5)) == 1
    assert wrong.registrations == 0
    async with contextlib.AsyncExitStack() as stack:
        right = await ready_agent(stack, server, ProbeBackend(), token="right-token")
        assert right.registrations == 1
