"""The client SDK against a real scheduler process (contract §2–§3)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from switchboard.agent import BackendError
from switchboard.client import (
    ConnectFailed,
    ConnectionLost,
    InvalidMessage,
    NoAvailableNode,
    NodeError,
    PendingTranslation,
    Session,
    SessionClosed,
    SwitchboardError,
    TooManyPending,
    Translation,
    Unauthorized,
    sine_pcm16,
)
from tests.agent.support import ProbeBackend, SchedulerFactory, eventually, ready_agent, scaled

AUDIO = sine_pcm16(0.1)


async def test_no_node_raises_no_available_node(scheduler_factory: SchedulerFactory) -> None:
    """An utterance nobody can serve is answered NO_AVAILABLE_NODE after the pending timeout,
    raised from its handle with the utterance's index."""
    server = await scheduler_factory(pending_timeout=0.3)
    async with Session.connect(server.url, src_lang="en", tgt_lang="xx") as session:
        assert session.session_id.startswith("s-")
        with pytest.raises(NoAvailableNode) as caught:
            await session.translate(AUDIO, utterance_index=41)
    assert caught.value.code == "NO_AVAILABLE_NODE"
    assert caught.value.utterance_index == 41
    assert isinstance(caught.value, SwitchboardError)


async def test_session_token(scheduler_factory: SchedulerFactory) -> None:
    """With --session-token, a missing or wrong token is Unauthorized at connect."""
    server = await scheduler_factory("--session-token", "tok-1")
    for token in (None, "tok-2"):
        with pytest.raises(Unauthorized):
            await Session.connect(server.url, src_lang="en", tgt_lang="de", token=token)
    session = await Session.connect(server.url, src_lang="en", tgt_lang="de", token="tok-1")
    await session.close()
    assert session.closed


async def test_nothing_listening_is_connect_failed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectFailed):
        await Session.connect(f"ws://127.0.0.1:{port}", src_lang="en", tgt_lang="de")


async def test_node_failure_raises_node_error_with_its_code(
    scheduler_factory: SchedulerFactory,
) -> None:
    """A node's success:false reaches the client as NodeError with the node's own code and
    details, plus job_id and node_id (contract §2 "Failures")."""
    server = await scheduler_factory()
    failing = ProbeBackend(fail=BackendError("ASR_FAILED", "no speech", details={"db": -60}))
    async with contextlib.AsyncExitStack() as stack:
        agent = await ready_agent(stack, server, failing)
        session = await stack.enter_async_context(
            Session.connect(server.url, src_lang="en", tgt_lang="de")
        )
        with pytest.raises(NodeError) as caught:
            await session.translate(AUDIO)
    error = caught.value
    assert error.code == "ASR_FAILED" and error.message == "no speech"
    assert error.details["db"] == -60 and error.details["node_id"] == agent.node_id
    assert str(error.details["job_id"]).startswith("job-")


async def test_close_fails_unanswered_handles_with_session_closed(
    scheduler_factory: SchedulerFactory,
) -> None:
    """close() sends session_close and gets its ack; the server drops pending utterances,
    so their handles raise SessionClosed (not ConnectionLost), and the session is done."""
    server = await scheduler_factory()
    backend = ProbeBackend(delay=scaled(30))
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, backend)
        session = await Session.connect(server.url, src_lang="en", tgt_lang="de")
        pending = await session.send(AUDIO)
        await backend.wait_started()
        await session.close()
        with pytest.raises(SessionClosed) as caught:
            await pending
        assert type(caught.value) is SessionClosed and caught.value.code is None
        with pytest.raises(SessionClosed):
            await session.send(AUDIO)
        await server.wait_idle()


async def test_answers_resolve_in_order_and_heartbeats_are_answered(
    scheduler_factory: SchedulerFactory,
) -> None:
    """Five utterances in flight: the handles resolve in the order sent even though the
    node finishes them in parallel; client heartbeats get server heartbeats."""
    server = await scheduler_factory()
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, ProbeBackend(delay=0.05), max_concurrency=5)
        session = await stack.enter_async_context(
            Session.connect(server.url, src_lang="en", tgt_lang="de", heartbeat_interval=0.05)
        )
        handles = [await session.send(AUDIO) for _ in range(5)]
        resolved: list[int] = []

        async def record(handle: PendingTranslation) -> Translation:
            result = await handle
            resolved.append(result.utterance_index)
            return result

        # Awaited in reverse: the order seen is the order of arrival, not of awaiting.
        tasks = [asyncio.create_task(record(h)) for h in reversed(handles)]
        results = list(reversed(await asyncio.gather(*tasks)))
        assert [r.text_translated for r in results] == [f"[de] probe {n}" for n in range(5)]
        assert resolved == [0, 1, 2, 3, 4]
        assert all(r.latency_s > 0 for r in results)

        async def heard() -> bool:
            return session.last_server_heartbeat is not None

        await eventually(heard, "a server_heartbeat")


async def test_local_and_server_refusals(scheduler_factory: SchedulerFactory) -> None:
    """A duplicate pending index is refused locally (it would otherwise resolve the wrong
    handle); past --max-pending-per-session the scheduler answers TOO_MANY_PENDING at once."""
    server = await scheduler_factory("--max-pending-per-session", "2", pending_timeout=2.0)
    async with Session.connect(server.url, src_lang="en", tgt_lang="xx") as session:
        first = await session.send(AUDIO, utterance_index=5)
        with pytest.raises(InvalidMessage):
            await session.send(AUDIO, utterance_index=5)
        await session.send(AUDIO)
        third = await session.send(AUDIO)
        with pytest.raises(TooManyPending):
            await third
        assert not first.done()


async def test_scheduler_shutdown_and_crash(scheduler_factory: SchedulerFactory) -> None:
    """A scheduler that shuts down answers pending utterances SESSION_CLOSED; one that is
    killed leaves them failing with ConnectionLost."""
    # Shutdown waits min(job_timeout, 5 s) for in-flight work, waiting utterances included.
    stopping = await scheduler_factory(pending_timeout=10.0, job_timeout=0.5)
    session = await Session.connect(stopping.url, src_lang="en", tgt_lang="xx")
    pending = await session.send(AUDIO)
    await asyncio.to_thread(stopping.terminate)
    with pytest.raises(SessionClosed) as caught:
        await pending
    assert caught.value.code == "SESSION_CLOSED"
    await session.close()

    crashing = await scheduler_factory(pending_timeout=10.0)
    session = await Session.connect(crashing.url, src_lang="en", tgt_lang="xx")
    pending = await session.send(AUDIO)
    await asyncio.to_thread(crashing.kill)
    with pytest.raises(ConnectionLost):
        await pending
    assert session.closed
    await session.close()
