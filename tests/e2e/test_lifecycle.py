"""The process and its dependency (protocol.md §3 SCHEDULER_DEPENDENCY_DOWN, §4 /health,
§2 "Ending" on shutdown): Redis going away and coming back, and SIGTERM."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers, ServerFactory
from tests.e2e.harness import NodeBehaviour, ServerProcess, eventually, is_error, of_type, scaled

if TYPE_CHECKING:
    from tests.conftest import RedisServer

SILENT = NodeBehaviour(mode="none")
DEGRADED = {"status": "degraded", "store": "down"}


async def _health_is(server: ServerProcess, status: int, body: object, within: float) -> None:
    seen: list[object] = []

    async def probe() -> bool:
        seen[:] = [await server.http("GET", "/health")]
        return seen[0] == (status, body)

    await eventually(probe, f"/health {status} {body}", within=within, detail=lambda: str(seen))


@pytest.mark.redis
async def test_redis_down_refuses_then_recovers_by_itself(
    server_factory: ServerFactory, own_redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Redis stopped under the scheduler: a running job still finishes and is answered, a new
    utterance gets SCHEDULER_DEPENDENCY_DOWN within 2 s and is never dispatched, /health is 503
    degraded; Redis started again on the same port: /health 200 and service resumes."""
    redis = own_redis_server
    server = await server_factory("--redis-url", redis.url, "--redis-namespace", namespace)
    node = await peers.node(server, behaviour=SILENT)
    session = await peers.session(server)
    await session.utter(0)
    running = await node.wait_assign()

    await asyncio.to_thread(redis.stop)
    await node.answer(running)
    first = await session.wait_answer(0)
    assert first["type"] == "translation_result", first

    sent = time.monotonic()
    await session.utter(1)
    refused = await session.wait_answer(1, within=3)
    took = time.monotonic() - sent
    assert is_error("SCHEDULER_DEPENDENCY_DOWN", utterance_index=1)(refused), refused
    assert took <= scaled(2.0), f"refused after {took:.2f}s"
    await node.sync()
    assert len(node.assigns) == 1, "dispatched without a reservation"
    await _health_is(server, 503, DEGRADED, within=2)

    await asyncio.to_thread(redis.start)
    await _health_is(server, 200, {"status": "ok"}, within=5)
    node.behaviour = NodeBehaviour()
    await session.utter(2)
    served = await session.wait_answer(2)
    assert served["type"] == "translation_result", served
    assert served["node_id"] == node.node_id
    await server.wait_idle()


@pytest.mark.redis
async def test_health_notices_redis_down_without_traffic(
    server_factory: ServerFactory, own_redis_server: RedisServer, namespace: str
) -> None:
    """/health turns 503 degraded while Redis is unreachable even if no utterance arrives."""
    redis = own_redis_server
    server = await server_factory("--redis-url", redis.url, "--redis-namespace", namespace)
    await _health_is(server, 200, {"status": "ok"}, within=2)
    await asyncio.to_thread(redis.stop)
    await _health_is(server, 503, DEGRADED, within=4)


@pytest.mark.redis
async def test_starts_degraded_while_redis_is_down(
    server_factory: ServerFactory, own_redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Started while Redis is down, the scheduler still listens, /health is 503 degraded and
    utterances get SCHEDULER_DEPENDENCY_DOWN; once Redis is up it serves by itself."""
    redis = own_redis_server
    await asyncio.to_thread(redis.stop)
    server = await server_factory("--redis-url", redis.url, "--redis-namespace", namespace)
    await _health_is(server, 503, DEGRADED, within=2)
    node = await peers.node(server)
    session = await peers.session(server)
    await session.utter(0)
    refused = await session.wait_answer(0, within=3)
    assert is_error("SCHEDULER_DEPENDENCY_DOWN", utterance_index=0)(refused), refused
    assert node.assigns == []
    await asyncio.to_thread(redis.start)
    await _health_is(server, 200, {"status": "ok"}, within=5)
    await session.utter(1)
    assert (await session.wait_answer(1))["type"] == "translation_result"


@pytest.mark.redis
async def test_instances_sharing_redis_share_reservations(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Two schedulers on one Redis namespace: reservations_held on either counts the slot the
    other holds; A sees B's one-slot node (one cluster, §5) but finds its slot taken."""
    flags = ("--redis-url", redis_server.url, "--redis-namespace", namespace)
    a = await server_factory(*flags, pending_timeout=0.3)
    b = await server_factory(*flags, pending_timeout=0.3)
    node = await peers.node(b, behaviour=SILENT, max_concurrency=1)
    assert node.node_id is not None
    await a.wait_node_status(node.node_id, "ready")  # in A's view too
    on_b = await peers.session(b)
    await on_b.utter(0)
    running = await node.wait_assign()
    assert (await a.stats())["reservations_held"] == 1
    on_a = await peers.session(a)
    await on_a.utter(0)
    refused = await on_a.wait_answer(0)
    assert is_error("NO_AVAILABLE_NODE", utterance_index=0)(refused), refused
    await node.answer(running)
    await on_b.wait_answer(0)
    await a.wait_idle()
    await b.wait_idle()


@MEMORY_ONLY
@pytest.mark.server(job_timeout=1.0)
@pytest.mark.parametrize("node_answers", [True, False], ids=["answering", "silent"])
async def test_sigterm_finishes_or_fails_work_then_closes_sessions(
    server: ServerProcess, peers: Peers, node_answers: bool
) -> None:
    """SIGTERM with a session open and a job in flight: the scheduler exits 0 within a few
    seconds; the client first gets the job's answer (result, or an error if the node is
    silent), then error SESSION_CLOSED, then the socket closes."""
    behaviour = NodeBehaviour(delay=0.3) if node_answers else SILENT
    node = await peers.node(server, behaviour=behaviour)
    session = await peers.session(server)
    await session.utter(0)
    await node.wait_assign()

    started = time.monotonic()
    status = await asyncio.to_thread(server.terminate, 15)
    took = time.monotonic() - started
    assert status == 0, server.output()
    assert took <= scaled(5.0), f"shutdown took {took:.1f}s"
    await session.wait_closed()

    answers = session.answers
    assert len(answers) == 2, session.frames
    answer, closing = answers
    assert closing["type"] == "error" and closing["code"] == "SESSION_CLOSED", closing
    assert "utterance_index" not in closing["details"]
    if node_answers:
        assert answer["type"] == "translation_result" and answer["utterance_index"] == 0
    else:
        assert answer["type"] == "error" and answer["details"]["utterance_index"] == 0
    assert session.frames[-1] is closing
    assert node.closed
    assert len(session.matching(of_type("translation_result"))) <= 1
