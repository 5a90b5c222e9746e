"""Three scheduler instances on a 3-shard Redis Cluster (issue 10's first target): real
processes, real sockets, real redis-servers.  Nodes and sessions are spread over all three
instances; every utterance is answered, none by an error, and no slot stays held."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from switchboard.store.keys import StoreKeys
from switchboard.store.redis_store import RedisStore
from tests.e2e.conftest import Peers, ServerFactory
from tests.e2e.harness import (
    FakeNode,
    NodeBehaviour,
    ServerProcess,
    eventually,
    is_error,
    scaled,
)

if TYPE_CHECKING:
    from switchboard.tools.procs import RedisClusterProcess

pytestmark = pytest.mark.redis

INSTANCES = ("rc-a", "rc-b", "rc-c")
NODES_EACH = 2
UTTERANCES = 12
# --instance-ttl is not scaled by the fixtures: on a loaded machine an unscaled second could
# let an instance's presence lapse between two refreshes and have it forgotten while alive.
TTL = scaled(1.0)


async def all_listed(server: ServerProcess, node_ids: set[str]) -> None:
    async def probe() -> bool:
        rows: list[dict[str, Any]] = await server.get_json("/api/v1/nodes")
        return {r["node_id"] for r in rows if r["status"] == "ready"} >= node_ids

    await eventually(probe, f"every node listed on {server.url}", within=5)


async def test_three_instances_on_a_three_shard_cluster_answer_every_utterance(
    server_factory: ServerFactory, redis_cluster: RedisClusterProcess, namespace: str, peers: Peers
) -> None:
    on_cluster = ("--redis-url", redis_cluster.url, "--redis-namespace", namespace)
    servers = [
        await server_factory(*on_cluster, "--instance-id", instance, instance_ttl=2 * TTL)
        for instance in INSTANCES
    ]
    owner: dict[str, str] = {}
    nodes: list[FakeNode] = []
    for server, instance in zip(servers, INSTANCES, strict=True):
        for _ in range(NODES_EACH):
            node = await peers.node(server)
            assert node.node_id is not None
            owner[node.node_id] = instance
            nodes.append(node)
    for server in servers:
        await all_listed(server, set(owner))

    sessions = [await peers.session(server) for server in servers]
    for index in range(UTTERANCES):
        for session in sessions:
            await session.utter(index)
    answered = await asyncio.gather(*(s.wait_answers(UTTERANCES) for s in sessions))

    crossed = 0
    for instance, answers in zip(INSTANCES, answered, strict=True):
        assert [a["utterance_index"] for a in answers] == list(range(UTTERANCES))
        assert all(a["type"] == "translation_result" for a in answers), answers
        crossed += sum(owner[a["node_id"]] != instance for a in answers)
    assert crossed > 0  # some jobs crossed to another instance's node and came back
    served = {a["node_id"] for answers in answered for a in answers}
    assert {owner[n] for n in served} == set(INSTANCES)  # nodes of every instance served
    for server in servers:
        await server.wait_idle()

    # The leases lived on more than one shard, and none is left.
    keys = StoreKeys(namespace, sharded=True)
    shards = {redis_cluster.primary_of(keys.slots(n)).port for n in owner}
    assert len(shards) > 1
    store = RedisStore.from_url(redis_cluster.url, namespace=namespace)
    try:
        assert await store.held_total() == 0
    finally:
        await store.close()


async def test_on_the_cluster_a_killed_instance_is_forgotten_and_its_jobs_fail_over(
    server_factory: ServerFactory, redis_cluster: RedisClusterProcess, namespace: str, peers: Peers
) -> None:
    """The split scripts in real processes: a job crosses to A's silent node, a job_cancel
    crosses after the job timeout, and once A is SIGKILLed its presence expires, B forgets it
    (its node leaves B's view, A leaves the instance list) and B's next job goes elsewhere."""
    on_cluster = ("--redis-url", redis_cluster.url, "--redis-namespace", namespace)
    a = await server_factory(*on_cluster, "--instance-id", "rc-a", instance_ttl=TTL)
    b = await server_factory(
        *on_cluster, "--instance-id", "rc-b", instance_ttl=TTL, job_timeout=0.5, max_attempts=1
    )
    remote = await peers.node(a, behaviour=NodeBehaviour(mode="none"))
    await all_listed(b, {remote.node_id or ""})
    session = await peers.session(b)
    await session.utter(0)
    assign = await remote.wait_assign()
    (answer,) = await session.wait_answers(1, within=3)
    assert is_error("JOB_TIMEOUT", utterance_index=0)(answer), answer

    async def cancelled() -> bool:
        return assign["job_id"] in remote.cancelled

    await eventually(cancelled, "job_cancel crossed to A's node", within=2)

    await asyncio.to_thread(a.kill)

    async def forgotten() -> bool:
        body = await b.get_json("/api/v1/cluster")
        rows: list[dict[str, Any]] = await b.get_json("/api/v1/nodes")
        gone = all(r["node_id"] != remote.node_id for r in rows)
        return gone and [i["instance_id"] for i in body["instances"]] == ["rc-b"]

    await eventually(forgotten, "A forgotten by B", within=6)
    backup = await peers.node(b)
    await session.utter(1)
    (answer,) = (await session.wait_answers(2))[1:]
    assert answer["type"] == "translation_result" and answer["node_id"] == backup.node_id
    await b.wait_idle()
