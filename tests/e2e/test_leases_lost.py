"""Leases of running jobs when Redis loses them (docs/scale-out.md, "Leases lost by Redis"):
a Redis restart without persistence, and one instance cut off from Redis (through a TCP proxy)
while its own sockets stay up.  Two real scheduler processes on one real redis-server; the node
runs one job at a time, its jobs answered by hand, so what it runs at once is exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from switchboard.chaos.proxy import RedisProxy
from switchboard.store.keys import StoreKeys
from switchboard.store.redis_store import RedisStore
from tests.e2e.conftest import Peers, ServerFactory
from tests.e2e.harness import (
    FakeNode,
    Frame,
    NodeBehaviour,
    ServerProcess,
    eventually,
    is_error,
    scaled,
)

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

SILENT = NodeBehaviour(mode="none")  # jobs run until the test answers them
LEASE = 1.0  # --reservation-lease (scaled): short, so a lease lost to an outage is gone soon
OPTIONS = {"reservation_lease": LEASE, "pending_timeout": 20.0}


@pytest.fixture
async def probe(own_redis_server: RedisServer, namespace: str) -> AsyncIterator[RedisStore]:
    """The test's own view of the leases (``reserved`` counts live ones only)."""
    store = RedisStore.from_url(own_redis_server.url, namespace=namespace)
    try:
        yield store
    finally:
        await store.close()


async def live_leases(probe: RedisStore, node_id: str) -> int:
    return (await probe.reserved([node_id]))[node_id]


async def until_leases(probe: RedisStore, node_id: str, count: int, what: str) -> None:
    async def check() -> bool:
        try:
            return await live_leases(probe, node_id) == count
        except Exception:  # Redis still starting
            return False

    await eventually(check, what, within=10)


async def second_assign(node: FakeNode) -> Frame:
    assigns = await node.wait_count(lambda f: f.get("type") == "job_assign", 2, within=10)
    return assigns[1]


async def one_at_a_time(node: FakeNode, b_session_answered: int) -> None:
    """The node ran every job alone: never more than its one slot."""
    assert node.max_running == 1, f"node ran {node.max_running} jobs at once"
    assert b_session_answered == 1


async def started(
    server_factory: ServerFactory, url: str, namespace: str, instance: str
) -> ServerProcess:
    return await server_factory(
        "--redis-url",
        url,
        "--redis-namespace",
        namespace,
        "--instance-id",
        instance,
        instance_ttl=scaled(5),  # outlives the outage: B keeps A's node in its view
        **OPTIONS,
    )


async def test_a_redis_restart_keeps_running_jobs_counted(
    server_factory: ServerFactory,
    own_redis_server: RedisServer,
    namespace: str,
    peers: Peers,
    probe: RedisStore,
) -> None:
    """Redis restarts empty while A's job runs on the node: A re-creates the job's lease by
    itself, so a job B places afterwards waits for the slot instead of over-filling the node;
    both leases are released once the jobs end."""
    a = await started(server_factory, own_redis_server.url, namespace, "inst-a")
    b = await started(server_factory, own_redis_server.url, namespace, "inst-b")
    node = await peers.node(a, behaviour=SILENT, max_concurrency=1)
    assert node.node_id is not None
    await b.wait_node_status(node.node_id, "ready")
    on_a = await peers.session(a)
    await on_a.utter(0)
    first = await node.wait_assign()
    await until_leases(probe, node.node_id, 1, "A's lease")

    own_redis_server.restart()  # no persistence: every lease is gone
    await until_leases(probe, node.node_id, 1, "A's lease re-created after the restart")
    keys = StoreKeys(namespace)
    with own_redis_server.client() as admin:  # both present again: their inboxes are open

        async def present() -> bool:
            return bool(admin.exists(keys.presence("inst-a"), keys.presence("inst-b")) == 2)

        await eventually(present, "both presences back", within=20)

    on_b = await peers.session(b)
    await on_b.utter(0)
    await asyncio.sleep(scaled(0.3))  # room for a wrong placement to show
    assert len(node.assigns) == 1, "B placed a job on the full node"
    await node.answer(first)
    assert (await on_a.wait_answer(0))["type"] == "translation_result"
    second = await second_assign(node)
    await node.answer(second)
    assert (await on_b.wait_answer(0, within=10))["type"] == "translation_result"
    await one_at_a_time(node, len(on_b.answers))
    await a.wait_idle()
    await b.wait_idle()
    await until_leases(probe, node.node_id, 0, "no lease left")
    assert await probe.held_total() == 0


async def test_an_instance_cut_off_from_redis_stops_dispatching_and_does_not_overfill_on_return(
    server_factory: ServerFactory,
    own_redis_server: RedisServer,
    namespace: str,
    peers: Peers,
    probe: RedisStore,
) -> None:
    """A reaches Redis through a proxy; the proxy cuts it off (a partition: A's connections
    stay open, nothing crosses) while A's node and session sockets stay up.  A answers a new
    utterance ``SCHEDULER_DEPENDENCY_DOWN`` within 2 s.  Its running job's lease expires
    meanwhile; once the proxy heals, A re-asserts it before anything new is reserved, so a job
    B places then waits for the slot."""
    proxy = RedisProxy("127.0.0.1", own_redis_server.port)
    await proxy.start()
    try:
        via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
        a = await started(server_factory, via_proxy, namespace, "inst-a")
        b = await started(server_factory, own_redis_server.url, namespace, "inst-b")
        node = await peers.node(a, behaviour=SILENT, max_concurrency=1)
        assert node.node_id is not None
        await b.wait_node_status(node.node_id, "ready")
        on_a = await peers.session(a)
        await on_a.utter(0)
        first = await node.wait_assign()
        await until_leases(probe, node.node_id, 1, "A's lease")

        other_on_a = await peers.session(a)  # answers are in order: not behind utterance 0
        proxy.cut()
        sent = time.monotonic()
        await other_on_a.utter(0)
        refused = await other_on_a.wait_answer(0, within=5)
        assert is_error("SCHEDULER_DEPENDENCY_DOWN", utterance_index=0)(refused), refused
        assert time.monotonic() - sent < scaled(2.0)
        await until_leases(probe, node.node_id, 0, "A's lease expired during the cut")
        assert len(node.running) == 1  # the job still runs: the node holds it

        proxy.heal()

        async def a_store_up() -> bool:
            stats = await a.stats()
            store = stats.get("store")
            return isinstance(store, dict) and store.get("up") is True

        await eventually(a_store_up, "A's store up again", within=10)
        await until_leases(probe, node.node_id, 1, "A's lease re-asserted")

        on_b = await peers.session(b)
        await on_b.utter(0)
        await asyncio.sleep(scaled(0.3))  # room for a wrong placement to show
        assert len(node.assigns) == 1, "B placed a job on the full node"
        await node.answer(first)
        assert (await on_a.wait_answer(0))["type"] == "translation_result"
        second = await second_assign(node)
        await node.answer(second)
        assert (await on_b.wait_answer(0, within=10))["type"] == "translation_result"
        await one_at_a_time(node, len(on_b.answers))
        await a.wait_idle()
        await b.wait_idle()
        await until_leases(probe, node.node_id, 0, "no lease left")
    finally:
        await proxy.stop()


async def test_a_flushall_is_noticed_by_the_presence_and_the_leases_come_back(
    server_factory: ServerFactory,
    own_redis_server: RedisServer,
    namespace: str,
    peers: Peers,
    probe: RedisStore,
) -> None:
    """A ``FLUSHALL`` leaves every connection up: no reconnect re-asserts.  The instance finds
    its presence gone at its next announce (a third of ``--instance-ttl``), long before the
    renewal (a third of a 60 s lease) would, and re-asserts its running job's lease then."""
    a = await server_factory(
        "--redis-url",
        own_redis_server.url,
        "--redis-namespace",
        namespace,
        "--instance-id",
        "inst-a",
        instance_ttl=scaled(1.5),
        reservation_lease=60.0,
        pending_timeout=20.0,
    )
    node = await peers.node(a, behaviour=SILENT, max_concurrency=1)
    assert node.node_id is not None
    on_a = await peers.session(a)
    await on_a.utter(0)
    first = await node.wait_assign()
    await until_leases(probe, node.node_id, 1, "A's lease")
    with own_redis_server.client() as admin:
        admin.flushall()
    await until_leases(probe, node.node_id, 1, "A's lease re-created after the FLUSHALL")
    await node.answer(first)
    assert (await on_a.wait_answer(0))["type"] == "translation_result"
    await a.wait_idle()
    await until_leases(probe, node.node_id, 0, "no lease left")
