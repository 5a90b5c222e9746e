"""Instances on one Redis as one cluster (docs/scale-out.md), with real scheduler processes,
real sockets and one real redis-server: every instance sees every node, and a session on one
instance is served by a node on another."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import redis.asyncio

from switchboard.chaos.proxy import RedisProxy
from switchboard.store.keys import StoreKeys
from switchboard.tools.prom import samples
from tests.e2e.conftest import Peers, ServerFactory
from tests.e2e.harness import (
    NodeBehaviour,
    ServerProcess,
    clean_env,
    eventually,
    is_error,
    scaled,
)

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

TTL = 1.0  # --instance-ttl: short, so a killed instance is gone soon
SILENT = NodeBehaviour(mode="none")


async def two_instances(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, **options: Any
) -> tuple[ServerProcess, ServerProcess]:
    on_redis = ("--redis-url", redis_server.url, "--redis-namespace", namespace)
    a = await server_factory(*on_redis, "--instance-id", "inst-a", instance_ttl=TTL, **options)
    b = await server_factory(*on_redis, "--instance-id", "inst-b", instance_ttl=TTL, **options)
    return a, b


async def node_row(server: ServerProcess, node_id: str) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = await server.get_json("/api/v1/nodes")
    return next((row for row in rows if row["node_id"] == node_id), None)


async def listed(
    server: ServerProcess, node_id: str, *, status: str = "ready", within: float = 2
) -> dict[str, Any]:
    """Wait until ``server`` lists the node with ``status``; its row."""
    found: dict[str, Any] = {}

    async def probe() -> bool:
        row = await node_row(server, node_id)
        if row is not None and row["status"] == status:
            found.update(row)
            return True
        return False

    await eventually(probe, f"node {node_id} {status} on {server.url}", within=within)
    return found


async def metric_values(server: ServerProcess) -> dict[tuple[str, str], float]:
    """The cluster's series on the server's /metrics page: (name, its one label value)."""
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as resp:
        text = await resp.text()
    return {
        (s.name, next(iter(s.labels.values()), "")): float(s.value)
        for s in samples(text)
        if s.name.startswith("switchboard_cluster_")
    }


async def test_every_instance_sees_every_node_and_every_instance(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """A node on A is listed on A and on B with A's instance_id; /api/v1/cluster on either
    lists both instances; /api/v1/stats gains cluster totals."""
    a, b = await two_instances(server_factory, redis_server, namespace)
    node = await peers.node(a)
    assert node.node_id is not None
    row = await listed(b, node.node_id)
    assert row["instance_id"] == "inst-a"
    own = await node_row(a, node.node_id)
    assert own is not None and own["instance_id"] == "inst-a"

    for server in (a, b):
        by_id: dict[str, Any] = {}

        async def both_listed(
            server: ServerProcess = server, by_id: dict[str, Any] = by_id
        ) -> bool:
            body = await server.get_json("/api/v1/cluster")
            by_id.clear()
            by_id.update((i["instance_id"], i) for i in body["instances"])
            return sorted(by_id) == ["inst-a", "inst-b"] and by_id["inst-a"]["nodes"] == 1

        await eventually(both_listed, "both instances listed", within=3)
        assert by_id["inst-b"]["nodes"] == 0
        assert (await metric_values(server))[("switchboard_cluster_instances", "")] == 2
        assert by_id["inst-a"]["address"].startswith("http://127.0.0.1:")
        assert by_id["inst-a"]["started_at"] <= by_id["inst-a"]["last_seen"]
    stats = await b.stats()
    assert stats["instance_id"] == "inst-b"
    assert stats["nodes"]["total"] == 0  # this instance's own
    assert stats["cluster"]["instances"] == 2 and stats["cluster"]["nodes"] == 1


async def test_a_session_on_b_is_served_by_a_node_on_a(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """job_assign crosses to A's node through A's inbox; the result comes back through B's
    inbox; answers keep their order; no slot stays held."""
    a, b = await two_instances(server_factory, redis_server, namespace)
    node = await peers.node(a, behaviour=NodeBehaviour(partials=("hal",)))
    await listed(b, node.node_id or "")
    session = await peers.session(b)
    for index in range(5):
        await session.utter(index)
    answers = await session.wait_answers(5)
    assert [f["utterance_index"] for f in answers] == list(range(5))
    assert all(f["type"] == "translation_result" for f in answers), answers
    assert all(f["node_id"] == node.node_id for f in answers)
    assert len(node.assigns) == 5  # every attempt reached the node once
    partials = session.matching(lambda f: f.get("type") == "asr_partial")
    assert len(partials) == 5
    await b.wait_idle()
    await a.wait_idle()
    # Frames crossed both ways; none was lost.  A: 5 assigns in; 5 results, 5 partials (and
    # the node's acks, if any) out.  B: the mirror image.
    on_a, on_b = await metric_values(a), await metric_values(b)
    assert on_b[("switchboard_cluster_frames_total", "out")] == 5
    assert on_a[("switchboard_cluster_frames_total", "in")] == 5
    assert on_a[("switchboard_cluster_frames_total", "out")] >= 10
    assert (
        on_b[("switchboard_cluster_frames_total", "in")]
        == (on_a[("switchboard_cluster_frames_total", "out")])
    )
    for values in (on_a, on_b):
        dead = {k: v for k, v in values.items() if k[0] == "switchboard_cluster_dead_letters_total"}
        assert dead and not any(dead.values()), dead


async def test_job_cancel_crosses_too(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """A job on a remote node that times out is cancelled on that node (job_cancel through the
    owner's inbox) and answered once, with JOB_TIMEOUT."""
    a, b = await two_instances(
        server_factory, redis_server, namespace, job_timeout=0.5, max_attempts=1
    )
    node = await peers.node(a, behaviour=SILENT)
    await listed(b, node.node_id or "")
    session = await peers.session(b)
    await session.utter(3)
    assign = await node.wait_assign()
    (answer,) = await session.wait_answers(1, within=3)
    assert is_error("JOB_TIMEOUT", utterance_index=3)(answer), answer

    async def cancelled() -> bool:
        return assign["job_id"] in node.cancelled

    await eventually(cancelled, "job_cancel on the remote node", within=2)
    await b.wait_idle()


async def test_status_flip_on_a_reaches_b_within_a_second(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """A drain on A (a status flip) is in B's view within 1 s."""
    a, b = await two_instances(server_factory, redis_server, namespace)
    node = await peers.node(a)
    node_id = node.node_id or ""
    await listed(b, node_id)
    status, _ = await a.http("POST", f"/api/v1/nodes/{node_id}/drain")
    assert status == 200
    await listed(b, node_id, status="draining", within=1)


async def test_killed_instance_leaves_every_view_and_its_jobs_fail_over(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """SIGKILL A: after the presence TTL its node leaves B's view, and B's job placed on it
    fails over to B's own node: exactly one answer."""
    a, b = await two_instances(server_factory, redis_server, namespace, job_timeout=30)
    remote = await peers.node(a, behaviour=SILENT)
    await listed(b, remote.node_id or "")
    session = await peers.session(b)
    await session.utter(0)
    first = await remote.wait_assign()
    backup = await peers.node(b)
    await asyncio.to_thread(a.kill)
    second = await backup.wait_assign(within=TTL * 4)
    assert (second["job_id"], second["attempt_id"]) == (first["job_id"], 2)
    (answer,) = await session.wait_answers(1)
    assert answer["type"] == "translation_result" and answer["node_id"] == backup.node_id
    assert await node_row(b, remote.node_id or "") is None
    body = await b.get_json("/api/v1/cluster")
    assert [i["instance_id"] for i in body["instances"]] == ["inst-b"]
    await b.wait_idle()


async def test_killed_instance_without_backup_errors_once(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """SIGKILL A with B's job on A's only node and no other node: one NODE_UNAVAILABLE."""
    a, b = await two_instances(server_factory, redis_server, namespace, job_timeout=30)
    remote = await peers.node(a, behaviour=SILENT)
    await listed(b, remote.node_id or "")
    session = await peers.session(b)
    await session.utter(4)
    await remote.wait_assign()
    await asyncio.to_thread(a.kill)
    (answer,) = await session.wait_answers(1, within=TTL * 4 + 2)
    assert is_error("NODE_UNAVAILABLE", utterance_index=4)(answer), answer
    await asyncio.sleep(scaled(0.3))
    assert len(session.matching(is_error())) == 1
    assert not session.matching(lambda f: f.get("type") == "translation_result")
    await b.wait_idle()


async def change_count(redis_server: RedisServer, namespace: str) -> int:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        return int(await client.xlen(StoreKeys(namespace).changes))
    finally:
        await client.aclose()


async def test_routine_heartbeats_are_not_replicated(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Heartbeats that change nothing structural append nothing to the change stream; a
    drain (a status flip) appends one change."""
    a, b = await two_instances(server_factory, redis_server, namespace, heartbeat_interval=0.2)
    node = await peers.node(a)
    node_id = node.node_id or ""
    await listed(b, node_id)
    before = await change_count(redis_server, namespace)
    beats = node.last_heartbeat

    async def beaten() -> bool:  # a few more heartbeats handled on A
        await node.sync()
        return node.last_heartbeat > beats + scaled(0.1)

    await eventually(beaten, "heartbeats")
    assert await change_count(redis_server, namespace) == before
    status, _ = await a.http("POST", f"/api/v1/nodes/{node_id}/drain")
    assert status == 200
    await listed(b, node_id, status="draining")
    assert await change_count(redis_server, namespace) == before + 1


async def test_the_view_comes_back_after_redis_restarts_empty(
    server_factory: ServerFactory, own_redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Redis restarts without its data: A finds its presence gone and publishes its node
    again; B reads the view again; a session on B is served by A's node."""
    a, b = await two_instances(server_factory, own_redis_server, namespace)
    node = await peers.node(a)
    node_id = node.node_id or ""
    await listed(b, node_id)
    await asyncio.to_thread(own_redis_server.restart)
    assert await change_count(own_redis_server, namespace) == 0  # empty indeed

    async def republished() -> bool:
        return await change_count(own_redis_server, namespace) > 0

    await eventually(republished, "A publishing its node again", within=TTL * 3)
    await listed(b, node_id)
    session = await peers.session(b)
    await session.utter(0)
    (answer,) = await session.wait_answers(1, within=3)
    assert answer["type"] == "translation_result" and answer["node_id"] == node_id


async def test_a_node_on_a_is_drained_and_undrained_through_b(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """The operator API of any instance drains and undrains any node: B asks A, which holds
    it."""
    a, b = await two_instances(server_factory, redis_server, namespace)
    node = await peers.node(a)
    node_id = node.node_id or ""
    await listed(b, node_id)
    status, body = await b.http("POST", f"/api/v1/nodes/{node_id}/drain")
    assert (status, body) == (200, {"node_id": node_id, "status": "draining"})
    await listed(a, node_id, status="draining")
    await listed(b, node_id, status="draining")
    status, body = await b.http("POST", f"/api/v1/nodes/{node_id}/undrain")
    assert (status, body) == (200, {"node_id": node_id, "status": "ready"})
    await listed(a, node_id)
    await listed(b, node_id)
    for action in ("drain", "undrain"):
        status, _ = await b.http("POST", f"/api/v1/nodes/node-nowhere/{action}")
        assert status == 404


async def test_a_restart_with_the_same_id_drops_the_nodes_it_no_longer_holds(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """SIGKILL A and start it again at once with the same --instance-id (its presence has not
    expired: a long TTL): the node it held is not connected to it any more, and leaves B's
    view at A's start, not a TTL later."""
    on_redis = ("--redis-url", redis_server.url, "--redis-namespace", namespace)
    a = await server_factory(*on_redis, "--instance-id", "inst-a", instance_ttl=60)
    b = await server_factory(*on_redis, "--instance-id", "inst-b", instance_ttl=60)
    node = await peers.node(a, heartbeats=False)
    node_id = node.node_id or ""
    await listed(b, node_id)
    await asyncio.to_thread(a.kill)
    await asyncio.to_thread(a.start)

    async def gone() -> bool:
        return await node_row(b, node_id) is None

    await eventually(gone, "the stale node leaving B's view", within=3)
    body = await b.get_json("/api/v1/cluster")
    assert sorted(i["instance_id"] for i in body["instances"]) == ["inst-a", "inst-b"]


async def test_sessions_on_both_instances_share_nodes_on_both(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Two instances, nodes on each, sessions on each, more utterances than slots: every
    utterance answered once, in order, by a result; no node ever over its capacity (the
    reservations are shared); nothing held at the end."""
    a, b = await two_instances(server_factory, redis_server, namespace, pending_timeout=10)
    slow = NodeBehaviour(delay=0.02)
    nodes = [
        await peers.node(a, max_concurrency=1, behaviour=slow),
        await peers.node(a, max_concurrency=2, behaviour=slow),
        await peers.node(b, max_concurrency=1, behaviour=slow),
    ]
    for node in nodes:
        await listed(a, node.node_id or "")
        await listed(b, node.node_id or "")
    sessions = [await peers.session(server) for server in (a, a, b, b)]
    count = 12
    for index in range(count):
        for session in sessions:
            await session.utter(index)
    for session in sessions:
        answers = await session.wait_answers(count, within=10)
        assert all(f["type"] == "translation_result" for f in answers), answers
        assert [f["utterance_index"] for f in answers] == list(range(count))
    assert all(n.max_running <= cap for n, cap in zip(nodes, (1, 2, 1), strict=True))
    assert all(node.max_running >= 1 for node in nodes)  # every node got work
    assert sum(len(node.assigns) for node in nodes) == count * len(sessions)
    await a.wait_idle()
    await b.wait_idle()


async def test_issue_repro_translate_against_b_with_the_agent_on_a(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str
) -> None:
    """The issue's steps, as a new user runs them: `switchboard node` connected to A,
    `switchboard translate` against B gets its translation from that node."""
    a, b = await two_instances(server_factory, redis_server, namespace)
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard", "node", "--url", a.ws_url, "--pair", "en:de",
        "--node-id", "gpu-on-a", "--latency-median", "0.01", "--latency-p99", "0.02",
        "--heartbeat-interval", str(scaled(0.25)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=clean_env(),
    )  # fmt: skip
    try:
        row = await listed(b, "gpu-on-a", within=10)
        assert row["instance_id"] == "inst-a"
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "switchboard", "translate", "--generate-seconds", "0.2",
            "--url", b.ws_url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
        )  # fmt: skip
        out, err = await asyncio.wait_for(cli.communicate(), scaled(20))
        assert cli.returncode == 0, err.decode()
        assert "node: gpu-on-a" in out.decode()
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), scaled(20))


async def test_a_presence_that_lapsed_while_redis_was_unreachable_is_not_forgotten(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Both instances are cut off from Redis (a partition at a proxy each) until their
    presences expire; A comes back first and finds B's presence gone.  B is alive (as after a
    shard failover): A must not forget it (dropping B's node and failing over the jobs it runs)
    before B has had a TTL to announce again."""
    proxies = [RedisProxy("127.0.0.1", redis_server.port) for _ in range(2)]
    for proxy in proxies:
        await proxy.start()
    try:
        a, b = [
            await server_factory(
                "--redis-url",
                f"redis://127.0.0.1:{proxy.port}/0",
                "--redis-namespace",
                namespace,
                "--instance-id",
                instance_id,
                instance_ttl=TTL,
            )
            for proxy, instance_id in zip(proxies, ("inst-a", "inst-b"), strict=True)
        ]
        node = await peers.node(b)
        node_id = node.node_id or ""
        await listed(a, node_id)
        keys = StoreKeys(namespace)
        direct = redis.asyncio.Redis(port=redis_server.port)
        for proxy in proxies:
            proxy.cut()

        async def lapsed() -> bool:
            present = await direct.exists(keys.presence("inst-a"), keys.presence("inst-b"))
            return int(present) == 0

        await eventually(lapsed, "both presences expiring", within=TTL * 4)
        healed_at = time.time()
        proxies[0].heal()

        async def a_alone() -> bool:
            body = await a.get_json("/api/v1/cluster")
            listing = {i["instance_id"]: i["last_seen"] for i in body["instances"]}
            return list(listing) == ["inst-a"] and listing["inst-a"] > healed_at

        # A has announced again and listed the instances since the heal: B's presence is gone.
        await eventually(a_alone, "A listing itself alone", within=TTL * 4)
        assert await node_row(a, node_id) is not None, "A forgot B while B could not announce"
        proxies[1].heal()

        async def both() -> bool:
            body = await a.get_json("/api/v1/cluster")
            return sorted(i["instance_id"] for i in body["instances"]) == ["inst-a", "inst-b"]

        await eventually(both, "A listing B again", within=TTL * 4)
        assert await node_row(a, node_id) is not None
        await direct.aclose()
    finally:
        for proxy in proxies:
            proxy.heal()
            await proxy.stop()
