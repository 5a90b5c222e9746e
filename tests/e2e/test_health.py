"""Liveness and readiness (protocol.md §7): ``/health/live`` answers while the process serves,
``/health/ready`` only while the store is reachable and the instance is not shutting down."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers, ServerFactory
from tests.e2e.harness import NodeBehaviour, ServerProcess, eventually, scaled

if TYPE_CHECKING:
    from tests.conftest import RedisServer

LIVE = (200, {"status": "ok"})
READY = (200, {"status": "ready"})
STORE_DOWN = (503, {"status": "not_ready", "reason": "store_down"})
SHUTTING_DOWN = (503, {"status": "not_ready", "reason": "shutting_down"})
DEGRADED = (503, {"status": "degraded", "store": "down"})


async def _get(server: ServerProcess, path: str) -> tuple[int, object]:
    # No bearer header: the probes of an orchestrator carry none (§7: both stay open).
    return await server.http("GET", path, token=False)


async def _wait_for(
    server: ServerProcess, path: str, want: tuple[int, object], within: float
) -> None:
    seen: list[object] = []

    async def probe() -> bool:
        seen[:] = [await _get(server, path)]
        return seen[0] == want

    await eventually(probe, f"{path} {want}", within=within, detail=lambda: str(seen))


@MEMORY_ONLY
@pytest.mark.server(admin_token="adm-health")
async def test_both_open_and_ready_on_the_embedded_store(server: ServerProcess) -> None:
    """With --admin-token set, live and ready still answer without it; the embedded store is
    always reachable, so a fresh instance is ready at once."""
    assert await _get(server, "/health/live") == LIVE
    assert await _get(server, "/health/ready") == READY
    status, _ = await _get(server, "/api/v1/stats")
    assert status == 401  # the guard is on: live and ready are open on purpose


@pytest.mark.redis
async def test_redis_outage_makes_it_unready_but_keeps_it_live(
    server_factory: ServerFactory, own_redis_server: RedisServer, namespace: str
) -> None:
    """Redis stopped: /health/ready goes 503 store_down (and /health 503 as before) while
    /health/live stays 200 the whole time; Redis back on the same port: ready 200 again."""
    redis = own_redis_server
    server = await server_factory("--redis-url", redis.url, "--redis-namespace", namespace)
    assert await _get(server, "/health/ready") == READY
    assert await _get(server, "/health/live") == LIVE

    await asyncio.to_thread(redis.stop)
    # The dispatcher probes the store every second; allow a few.
    await _wait_for(server, "/health/ready", STORE_DOWN, within=4)
    for _ in range(5):  # live through the whole outage, not once by luck
        assert await _get(server, "/health/live") == LIVE
        assert await _get(server, "/health/ready") == STORE_DOWN
        await asyncio.sleep(0.1)
    assert await _get(server, "/health") == DEGRADED  # the §4 contract is unchanged

    await asyncio.to_thread(redis.start)
    await _wait_for(server, "/health/ready", READY, within=5)
    assert await _get(server, "/health/live") == LIVE


@MEMORY_ONLY
@pytest.mark.server(job_timeout=20.0)
async def test_sigterm_makes_it_unready_at_once_while_a_job_finishes(
    server: ServerProcess, peers: Peers
) -> None:
    """SIGTERM while a node holds a job: /health/ready is 503 shutting_down within a moment,
    long before the job ends (the shutdown grace is still running), and /health/live stays
    200; the node then answers, the client gets its result, and the process exits 0."""
    node = await peers.node(server, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    await session.utter(0)
    assign = await node.wait_assign()
    assert await _get(server, "/health/ready") == READY

    signalled = time.monotonic()
    # terminate() sends SIGTERM and then blocks until the exit, so it runs beside the probes.
    exited = asyncio.ensure_future(asyncio.to_thread(server.terminate, 30))
    await _wait_for(server, "/health/ready", SHUTTING_DOWN, within=1)
    took = time.monotonic() - signalled
    assert took <= scaled(1.0), f"ready went 503 {took:.2f}s after SIGTERM"
    assert await _get(server, "/health/live") == LIVE

    # Still finishing: the job has no answer yet and the process has not exited.
    assert session.answers == [], session.frames
    assert not exited.done()
    assert server.running
    assert await _get(server, "/health/ready") == SHUTTING_DOWN

    await node.answer(assign)
    result = await session.wait_answer(0)
    assert result["type"] == "translation_result", result
    assert await exited == 0, server.output()
