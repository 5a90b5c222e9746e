"""Node telemetry in ``/api/v1/nodes``, undrain (protocol.md §7) and the dashboard's live stream
``/api/v1/live``, end to end against a real server."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import DEFAULT_WAIT, ServerProcess, eventually, scaled

ADMIN_TOKEN = "ops-s3cret"
TELEMETRY = ("heartbeat_age_s", "cpu_percent", "mem_percent", "gpu_percent", "gpu_mem_percent")


@MEMORY_ONLY
async def test_nodes_carry_heartbeat_age_and_usage(server: ServerProcess, peers: Peers) -> None:
    """Each /api/v1/nodes entry has the heartbeat age and the latest reported CPU, memory and
    GPU use; what a node did not report is null (not 0), and a node that never heartbeated
    has an age but no usage at all."""
    await peers.node(server, node_id="beating")  # heartbeats cpu 12.5, mem 40, gpu 30
    await peers.node(server, node_id="silent", ready=False)
    await server.wait_node_status("silent", "registering")  # snapshots are published apart
    nodes = await server.nodes()
    beating, silent = nodes["beating"], nodes["silent"]
    assert beating["cpu_percent"] == 12.5 and beating["mem_percent"] == 40
    assert beating["gpu_percent"] == 30
    assert beating["gpu_mem_percent"] is None  # not in its heartbeats
    assert beating["running_jobs"] == 0
    assert 0 <= beating["heartbeat_age_s"] < 3 * server.heartbeat_interval
    assert silent["heartbeat_age_s"] >= 0
    for field in TELEMETRY[1:]:
        assert silent[field] is None, field


async def test_undrain_returns_the_node_to_work(server: ServerProcess, peers: Peers) -> None:
    """Drain, then undrain: 200 {"node_id","status":"ready"}, and the node gets jobs again;
    undraining a node that is not draining changes nothing and says its status."""
    node = await peers.node(server, node_id="worker")
    status, body = await server.http("POST", "/api/v1/nodes/worker/drain")
    assert (status, body) == (200, {"node_id": "worker", "status": "draining"})
    await server.wait_node_status("worker", "draining")

    status, body = await server.http("POST", "/api/v1/nodes/worker/undrain")
    assert (status, body) == (200, {"node_id": "worker", "status": "ready"})
    assert (await server.nodes())["worker"]["status"] == "ready"
    await node.heartbeat()  # a heartbeat after the undrain keeps it ready
    await node.sync()
    assert (await server.nodes())["worker"]["status"] == "ready"

    session = await peers.session(server)
    await session.utter(0)
    answer = await session.wait_answer(0)
    assert answer["type"] != "error", answer

    status, body = await server.http("POST", "/api/v1/nodes/worker/undrain")
    assert (status, body) == (200, {"node_id": "worker", "status": "ready"})


@MEMORY_ONLY
async def test_undrain_before_the_first_heartbeat_is_registering(
    server: ServerProcess, peers: Peers
) -> None:
    """A node drained before it ever heartbeated goes back to registering, not ready."""
    await peers.node(server, node_id="new", ready=False)
    assert (await server.http("POST", "/api/v1/nodes/new/drain"))[0] == 200
    status, body = await server.http("POST", "/api/v1/nodes/new/undrain")
    assert (status, body) == (200, {"node_id": "new", "status": "registering"})


@MEMORY_ONLY
async def test_undrain_unknown_node_is_404(server: ServerProcess, peers: Peers) -> None:
    """Undrain of an unknown node is 404 and names it."""
    status, body = await server.http("POST", "/api/v1/nodes/no-such-node/undrain")
    assert status == 404
    assert body["node_id"] == "no-such-node"


@MEMORY_ONLY
@pytest.mark.server(admin_token=ADMIN_TOKEN)
async def test_undrain_and_live_need_the_admin_token(server: ServerProcess, peers: Peers) -> None:
    """With --admin-token, undrain and the live stream are 401 without the token or with a
    wrong one, and the node is left draining."""
    await peers.node(server, node_id="held")
    assert (await server.http("POST", "/api/v1/nodes/held/drain"))[0] == 200
    for token in (False, "not-it"):
        status, _ = await server.http("POST", "/api/v1/nodes/held/undrain", token=token)
        assert status == 401
        status, _ = await server.http("GET", "/api/v1/live", token=token)
        assert status == 401
    assert (await server.nodes())["held"]["status"] == "draining"
    status, body = await server.http("POST", "/api/v1/nodes/held/undrain")
    assert (status, body) == (200, {"node_id": "held", "status": "ready"})


async def live_frames(server: ServerProcess, count: int) -> list[dict[str, Any]]:
    """The first ``count`` frames of ``GET /api/v1/live``, read as a browser's fetch would."""
    headers = {"Authorization": f"Bearer {server.admin_token}"} if server.admin_token else {}
    frames: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=scaled(DEFAULT_WAIT) + 2 * count)
    async with (
        aiohttp.ClientSession(timeout=timeout) as client,
        client.get(server.url + "/api/v1/live", headers=headers) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-store"
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                assert event.startswith(b"data: ")
                frames.append(json.loads(event[len(b"data: ") :]))
                if len(frames) == count:
                    return frames
    raise AssertionError(f"the stream ended after {len(frames)} frame(s)")


@MEMORY_ONLY
async def test_live_stream_sends_state_and_history(server: ServerProcess, peers: Peers) -> None:
    """/api/v1/live sends a frame at once and one a second after: stats, nodes with telemetry,
    pools with members, totals, and points of dispatch rate and p50/p99; after real traffic a
    point shows the dispatches, and errors are counted by code."""
    await peers.node(server, node_id="n1")
    session = await peers.session(server)
    for index in range(4):
        await session.utter(index)
    await session.utter(4, src_lang="xx", tgt_lang="yy")  # nobody serves it: an error answer
    await session.wait_answers(5)

    seen: list[dict[str, Any]] = []

    async def all_charted() -> bool:
        # The history keeps the last minutes, so a stream opened now still shows them; it is
        # read once a second, so it may lag the answers by that much.
        (first,) = await live_frames(server, 1)
        seen[:] = [first]
        return first["totals"]["dispatched"] == 4 and bool(first["totals"]["errors"])

    # A closed stream's handler ends at its next write (within a second): probe slowly, so
    # the streams in flight stay under --max-http-requests-per-address.
    await eventually(
        all_charted, "the history to hold the traffic", interval=0.5, detail=lambda: str(seen)
    )
    first = seen[0]
    assert first["replace"] is True
    assert [n["node_id"] for n in first["nodes"]] == ["n1"]
    assert first["nodes"][0]["heartbeat_age_s"] is not None
    assert first["pools"][0]["members"] == ["n1"]
    assert first["stats"]["dispatched_total"] == 4
    assert first["totals"]["dispatched"] == 4
    assert first["totals"]["errors"] == {"NO_AVAILABLE_NODE": 1}
    assert first["totals"]["sessions"] == 1
    assert first["latency"]["count"] == 4
    busy = [p for p in first["points"] if p["rate"] > 0]
    assert all(p["p50_ms"] is not None and p["p50_ms"] <= p["p99_ms"] for p in busy)
    assert sum(p["errors"] for p in first["points"]) == 1

    frames = await live_frames(server, 2)
    assert frames[0]["replace"] is True and frames[1]["replace"] is False
    assert len(frames[1]["points"]) == 1
    assert frames[1]["points"][0]["t"] > frames[0]["points"][-1]["t"]
