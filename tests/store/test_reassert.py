"""Leases of running jobs re-created after Redis lost them (docs/scale-out.md, "Leases lost by
Redis"), against a real redis-server: ``reassert_soon`` itself, and the re-assert every new
hot-path connection runs before anything queued on it (a restart without persistence)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import pytest

from switchboard.store.base import Candidate, Claim, awaited
from switchboard.store.memory import MemoryStore
from switchboard.store.redis_store import RedisStore

if TYPE_CHECKING:
    from switchboard.tools.procs import RedisClusterProcess
    from tests.conftest import RedisServer

LONG = 60.0
ONE = [Candidate("a", 1)]


@pytest.fixture
async def own_store(own_redis_server: RedisServer, namespace: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(own_redis_server.url, namespace=namespace)
    try:
        yield store
    finally:
        await store.close()


async def reassert(store: RedisStore | MemoryStore, claims: Sequence[Claim]) -> list[int]:
    return [int(n) for n in await awaited(store.reassert_soon, claims, lease_s=LONG)]


@pytest.mark.redis
async def test_reassert_recreates_lost_leases_and_renews_live_ones(
    own_redis_server: RedisServer, own_store: RedisStore
) -> None:
    assert await own_store.try_reserve(ONE, "j1:1", lease_s=LONG) == "a"
    with own_redis_server.client() as admin:
        admin.flushall()
    # Lost: another holder could take the node's one slot.
    assert await own_store.reserved(["a"]) == {"a": 0}
    assert await reassert(own_store, [("a", "j1:1", 1)]) == [0, 1, 0]
    assert await own_store.try_reserve(ONE, "j2:1", lease_s=LONG) is None  # counted again
    assert await own_store.held_total() == 1
    assert await reassert(own_store, [("a", "j1:1", 1)]) == [1, 0, 0]  # live: renewed
    assert await own_store.release("a", "j1:1") is True  # and released as any lease
    assert await own_store.held_total() == 0


@pytest.mark.redis
async def test_reassert_on_a_full_node_holds_the_lease_over_capacity(
    own_redis_server: RedisServer, own_store: RedisStore
) -> None:
    """The slot was taken by another job while the lease was gone: the node runs both, so
    both count (over capacity) until one ends, and nobody reserves more meanwhile."""
    assert await own_store.try_reserve(ONE, "j1:1", lease_s=LONG) == "a"
    with own_redis_server.client() as admin:
        admin.flushall()
    assert await own_store.try_reserve(ONE, "other:1", lease_s=LONG) == "a"
    assert await reassert(own_store, [("a", "j1:1", 1)]) == [0, 1, 1]
    assert await own_store.reserved(["a"]) == {"a": 2}
    assert await own_store.release("a", "other:1") is True
    assert await own_store.try_reserve(ONE, "j3:1", lease_s=LONG) is None  # j1 still counts
    assert await own_store.release("a", "j1:1") is True
    assert await own_store.try_reserve(ONE, "j3:1", lease_s=LONG) == "a"


@pytest.mark.redis
async def test_a_new_connection_reasserts_before_anything_queued_on_it(
    own_redis_server: RedisServer, own_store: RedisStore
) -> None:
    """Redis restarted without persistence: the first reservation after it, made by this very
    store, already sees the running job's lease (the re-assert went ahead of it)."""
    running: list[Claim] = []
    lost: list[tuple[int, int]] = []
    own_store.reassert_on_connect(
        lambda: running, lease_s=LONG, lost=lambda n, over: lost.append((n, over))
    )
    assert await own_store.try_reserve(ONE, "j1:1", lease_s=LONG) == "a"
    running.append(("a", "j1:1", 1))  # j1 runs on a
    own_redis_server.restart()
    assert await own_store.try_reserve(ONE, "j2:1", lease_s=LONG) is None
    assert lost == [(1, 0)]
    running.clear()  # j1 ends: its release drops the re-created lease
    assert await own_store.release("a", "j1:1") is True
    assert await own_store.held_total() == 0


async def test_memory_store_reassert_renews() -> None:
    store = MemoryStore()
    assert await store.try_reserve(ONE, "j1:1", lease_s=LONG) == "a"
    assert await reassert(store, [("a", "j1:1", 1), ("a", "gone:1", 1)]) == [1, 0, 0]


@pytest.mark.redis
async def test_after_a_restart_the_leases_come_back_without_waiting_for_a_call(
    own_redis_server: RedisServer, own_store: RedisStore, namespace: str
) -> None:
    """Another instance may reserve right after the restart: the store reconnects by itself
    while it has running jobs, so their leases are back as soon as Redis is."""
    running: list[Claim] = []
    own_store.reassert_on_connect(lambda: running, lease_s=LONG, lost=lambda n, over: None)
    assert await own_store.try_reserve(ONE, "j1:1", lease_s=LONG) == "a"
    running.append(("a", "j1:1", 1))
    own_redis_server.restart()
    other = RedisStore.from_url(own_redis_server.url, namespace=namespace)
    try:
        for _ in range(200):  # the other instance's view: j1's lease, with no call from ours
            if await other.reserved(["a"]) == {"a": 1}:
                break
            await asyncio.sleep(0.02)
        assert await other.try_reserve(ONE, "other:1", lease_s=LONG) is None
    finally:
        await other.close()


@pytest.mark.redis
async def test_reassert_on_a_cluster_goes_one_script_per_node_group(
    own_redis_cluster: RedisClusterProcess, namespace: str
) -> None:
    """On a Redis Cluster the leases of running jobs sit in several node groups (slots): a
    re-assert spanning them is one script per group, and re-creates every lost lease."""
    store = RedisStore.from_url(own_redis_cluster.url, namespace=namespace)
    try:
        nodes = [f"node-{i}" for i in range(12)]
        claims = [(node, f"j{i}:1", 1) for i, node in enumerate(nodes)]
        for node, holder, _ in claims:
            assert await store.try_reserve([Candidate(node, 1)], holder, lease_s=LONG) == node
        assert len({store._keys.group_of(node) for node in nodes}) > 1  # spans groups
        for primary in own_redis_cluster.primaries():
            with primary.client() as admin:
                admin.flushall()
        assert await store.held_total() == 0  # lost: any holder could take those slots
        assert await reassert(store, claims) == [0, len(claims), 0]
        assert await store.held_total() == len(claims)
        taken = [await store.try_reserve([Candidate(n, 1)], "other:1", lease_s=LONG) for n in nodes]
        assert taken == [None] * len(nodes)  # every slot counted again
        assert await reassert(store, claims) == [len(claims), 0, 0]  # live now: renewed
    finally:
        await store.close()
