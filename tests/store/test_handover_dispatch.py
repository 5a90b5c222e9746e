"""A crossing in one step, through the real dispatch core and driver on a real redis-server.

Instance ``a`` (a dispatch core and driver on the Redis store, and a relay) places jobs on a
node held by instance ``b`` (a relay whose node is a recording socket).  The reservation
hands ``job_assign`` to ``b``'s inbox itself (``try_reserve_send_many.lua``): ``a`` writes
nothing more, ``b``'s node gets each attempt once, and the answer comes back as before.  An
owner gone at reservation time dead-letters the frame, is counted, and the job fails over
when the node leaves the view, as with the two-step send.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry

from switchboard.cluster.relay import Relay
from switchboard.dispatch.driver import DispatchDriver
from switchboard.dispatch.jobs import JobState
from switchboard.store import pipelined
from switchboard.store.base import Candidate
from switchboard.store.cluster import ClusterStore
from switchboard.store.redis_store import RedisStore, _load_lua
from tests.conftest import unique_namespace
from tests.unit.fakes import LinkNode, Rig, heartbeat_msg, register_msg

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

PAIRS = [("zh", "en")]
TTL = 30.0


class NodeSocket:
    """The write side of a node's connection on ``b`` (``relay.LocalNode``)."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.routes: dict[str, str] | None = None
        self.written: list[bytes] = []

    def write(self, frame: bytes) -> bool:
        self.written.append(frame)
        return True


@dataclass
class World:
    rig: Rig  # instance a's dispatch, on the Redis store
    store: RedisStore
    cluster_a: ClusterStore
    cluster_b: ClusterStore
    relay_a: Relay
    relay_b: Relay
    metrics_a: CollectorRegistry
    node_b: NodeSocket


@pytest.fixture
async def world(own_redis_server: RedisServer) -> AsyncIterator[World]:
    """On a server of its own: whether a's two-step send ran shows in its script cache."""
    redis_server = own_redis_server
    namespace = unique_namespace()
    rig = Rig()
    store = RedisStore.from_url(redis_server.url, namespace=namespace)
    rig.dispatcher = DispatchDriver(
        rig.core, store, snapshots=rig.holder, metrics=rig.metrics, reservation_lease=30
    )
    cluster_a = ClusterStore.from_url(redis_server.url, namespace=namespace, block_s=0.1)
    cluster_b = ClusterStore.from_url(redis_server.url, namespace=namespace, block_s=0.1)
    for cluster, instance in ((cluster_a, "a"), (cluster_b, "b")):
        await cluster.announce(instance, "{}", ttl_s=TTL)
        await cluster.open_inbox(instance)
    metrics_a = CollectorRegistry()
    relay_a = Relay(
        cluster_a, "a", dispatcher=rig.dispatcher, local_node=lambda _: None, registry=metrics_a
    )
    node_b = NodeSocket("nb")
    relay_b = Relay(
        cluster_b,
        "b",
        dispatcher=None,  # type: ignore[arg-type]  # b answers no job here
        local_node={"nb": node_b}.get,
        registry=CollectorRegistry(),
    )
    await rig.start()
    relay_a.start()
    relay_b.start()
    try:
        yield World(rig, store, cluster_a, cluster_b, relay_a, relay_b, metrics_a, node_b)
    finally:
        await relay_b.stop()
        await relay_a.stop()
        await rig.stop()
        for closing in (store.close(), cluster_a.close(), cluster_b.close()):
            await closing


async def add_remote(world: World, node_id: str, owner: str) -> None:
    """A node ``owner`` holds, as the cluster member puts it in a's view and dispatch."""
    registry = world.rig.registry
    assert await registry.register(node_id, register_msg(PAIRS, 2))
    await registry.heartbeat(node_id, heartbeat_msg(node_id))
    world.rig.dispatcher.attach_node(world.relay_a.peer(node_id, owner))
    await registry.rebuild_now()


async def two_step_sends(world: World) -> bool:
    """Has ``cluster_send.lua`` (the two-step crossing's send) ever run on this server?"""
    sha = pipelined.Script(_load_lua("cluster_send")).sha
    (known,) = await world.store._client.script_exists(sha)
    return bool(known)


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_the_reservation_hands_job_assign_to_the_owner_once(world: World) -> None:
    await add_remote(world, "nb", "b")
    session = world.rig.open_session("s1")
    job = await world.rig.utter(session, 0)
    await until(lambda: len(world.node_b.written) == 1, "the node on b got job_assign")
    assert job.state is JobState.ASSIGNED and job.node_id == "nb"
    (frame,) = world.node_b.written
    sent = json.loads(frame)
    assert (sent["type"], sent["job_id"], sent["attempt_id"]) == ("job_assign", job.job_id, 1)
    # a wrote nothing after the reservation: one frame out, counted once, nothing dead.
    frames = "switchboard_cluster_frames_total"
    assert sample(world.metrics_a, frames, {"direction": "out"}) == 1
    dead = "switchboard_cluster_dead_letters_total"
    assert sample(world.metrics_a, dead, {"reason": "no_instance"}) == 0
    assert await world.cluster_a.dead_letters() == []
    assert not await two_step_sends(world)
    # The answer comes back through b's relay, as before.
    result = json.dumps(
        {
            "type": "job_result",
            "job_id": job.job_id,
            "attempt_id": 1,
            "node_id": "nb",
            "session_id": "s1",
            "utterance_index": 0,
            "success": True,
            "trace_id": sent["trace_id"],
            "text_translated": "ok",
        }
    ).encode()
    assert world.relay_b.forward(world.node_b, job.job_id, result, final=True)
    await until(lambda: bool(session.out), "the session got its answer")
    assert [m["type"] for m in session.out] == ["translation_result"]
    assert world.node_b.written == [frame]  # still once
    assert await world.store.reserved(["nb"]) == {"nb": 0}  # the lease was released


async def test_an_owner_gone_at_reservation_dead_letters_and_the_job_fails_over(
    world: World,
) -> None:
    await add_remote(world, "nb", "b")
    await world.cluster_b.withdraw("b")  # b died: its presence is gone, its nodes still listed
    session = world.rig.open_session("s1")
    job = await world.rig.utter(session, 0)
    dead = "switchboard_cluster_dead_letters_total"
    await until(lambda: sample(world.metrics_a, dead, {"reason": "no_instance"}) == 1, "counted")
    assert job.state is JobState.ASSIGNED and job.node_id == "nb"
    (letter,) = await world.cluster_a.dead_letters()
    assert (letter.fields["reason"], letter.fields["to"], letter.fields["node"]) == (
        "no_instance",
        "b",
        "nb",
    )
    assert world.node_b.written == []
    assert not await two_step_sends(world)
    # b is forgotten: its node leaves the view, and the job fails over to a node of a's own.
    local: LinkNode = await world.rig.add_node("na", PAIRS)
    world.rig.dispatcher.detach_node("nb")
    await until(lambda: bool(local.sent), "the failover's job_assign")
    (retry,) = local.sent
    assert (retry["type"], retry["job_id"], retry["attempt_id"]) == ("job_assign", job.job_id, 2)
    assert job.node_id == "na"
    assert world.node_b.written == []


async def test_a_local_node_is_written_as_before(world: World) -> None:
    """A job whose candidates include a remote node but gets a local one: a's own write."""
    await add_remote(world, "nb", "b")
    local: LinkNode = await world.rig.add_node("na", PAIRS)
    # nb is busier than na: the usual rule takes na.
    await world.store.try_reserve([Candidate("nb", 2)], "other:1", lease_s=30)
    session = world.rig.open_session("s1")
    job = await world.rig.utter(session, 0)
    await until(lambda: bool(local.sent), "job_assign on the local node")
    assert job.node_id == "na"
    assert [m["attempt_id"] for m in local.sent] == [1]
    assert world.node_b.written == []
    frames = "switchboard_cluster_frames_total"
    assert sample(world.metrics_a, frames, {"direction": "out"}) == 0
