"""The stores on a 3-shard Redis Cluster of real redis-servers (store/redis_cluster.py, the
sharded layout of keys.py): the URL, keys really spread over the shards, and a shard failover
(manual, then a primary SIGKILLed and its replica promoted) in the middle of reservations: no
node over-filled, nothing left held, and the store serves again on its own."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from switchboard.config import ConfigError, load_settings
from switchboard.errors import StoreError, StoreUnavailable
from switchboard.store import admin
from switchboard.store.base import Candidate
from switchboard.store.cluster import ClusterStore
from switchboard.store.keys import StoreKeys
from switchboard.store.redis_cluster import is_cluster_url, parse_cluster_url
from switchboard.store.redis_store import RedisStore
from switchboard.tools.procs import free_port
from tests.conftest import unique_namespace

if TYPE_CHECKING:
    from switchboard.tools.procs import RedisClusterProcess, RedisProcess

pytestmark = pytest.mark.redis

LONG = 60.0


def test_cluster_url_names_its_seeds_and_credentials() -> None:
    url = "redis+cluster://user:s%40cret@10.0.0.1:7000,10.0.0.2:7001"
    parsed = parse_cluster_url(url)
    assert is_cluster_url(url) and not is_cluster_url("redis://10.0.0.1:7000/0")
    assert parsed.seeds == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (parsed.username, parsed.password) == ("user", "s@cret")
    assert "s@cret" not in repr(parsed)
    assert parse_cluster_url("redis+cluster://pw@h:1").password == "pw"
    for bad in ("redis+cluster://h", "redis+cluster://h:1/3", "redis+cluster://h:1?x=1"):
        with pytest.raises(ValueError):
            parse_cluster_url(bad)
    with pytest.raises(ConfigError):
        RedisStore.from_url("redis+cluster://h:99999")


def test_the_url_is_a_setting_like_any_other(tmp_path: Path) -> None:
    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    settings = load_settings({"redis_url": url}, environ={})
    assert settings.redis_url == url and settings.store == "redis"
    assert load_settings({}, environ={"SWITCHBOARD_REDIS_URL": url}).redis_url == url
    toml = tmp_path / "switchboard.toml"
    toml.write_text(f'redis_url = "{url}"\n')
    assert load_settings({}, environ={}, config_path=str(toml)).redis_url == url
    with pytest.raises(ConfigError):
        load_settings({"redis_url": "redis+sentinel://h:1"}, environ={})


async def test_leases_and_instance_keys_spread_over_every_shard(
    redis_cluster: RedisClusterProcess,
) -> None:
    """Leases of different nodes land on different primaries (their group's tag), each key
    really held by the primary CLUSTER KEYSLOT names; an instance's presence and inbox share
    one slot, and instances spread too."""
    namespace = unique_namespace()
    keys = StoreKeys(namespace, sharded=True)
    store = RedisStore.from_url(redis_cluster.url, namespace=namespace)
    cluster = ClusterStore.from_url(redis_cluster.url, namespace=namespace)
    try:
        nodes = [f"node-{i}" for i in range(12)]
        for node in nodes:
            assert await store.try_reserve([Candidate(node, 1)], f"{node}:1", lease_s=LONG)
        holders = {}
        for node in nodes:
            primary = redis_cluster.primary_of(keys.slots(node))
            with primary.client() as client:
                assert client.exists(keys.slots(node)) == 1
            holders[node] = primary.port
        assert len(set(holders.values())) == 3
        assert await store.held_total() == len(nodes)

        instances = [f"inst-{i}" for i in range(9)]
        for instance in instances:
            await cluster.announce(instance, "{}", ttl_s=LONG)
            await cluster.open_inbox(instance)
            presence, inbox = keys.presence(instance), keys.inbox(instance)
            assert redis_cluster.keyslot(presence) == redis_cluster.keyslot(inbox)
        ports = {redis_cluster.primary_of(keys.presence(i)).port for i in instances}
        assert len(ports) == 3
        assert sorted(await cluster.instances()) == instances
    finally:
        await store.close()
        await cluster.close()


async def test_a_shard_failover_during_reservations_overfills_nothing_and_leaks_nothing(
    own_redis_cluster: RedisClusterProcess, timeout_scale: float
) -> None:
    """Workers reserve and release on six nodes (two slots each) while one shard fails over
    by hand (CLUSTER FAILOVER) and then another loses its primary to SIGKILL (its replica is
    promoted).  Calls fail meanwhile (StoreUnavailable), never over-fill a node, and the
    store serves again by itself; releasing every lease whose fate a failed call left unknown
    leaves nothing held."""
    cluster = own_redis_cluster
    namespace = unique_namespace()
    keys = StoreKeys(namespace, sharded=True)
    store = RedisStore.from_url(cluster.url, namespace=namespace)
    nodes = [f"fo-{i}" for i in range(6)]
    capacity = 2
    cands = [Candidate(node, capacity) for node in nodes]
    held: dict[str, set[str]] = defaultdict(set)
    overfilled: list[tuple[str, int]] = []
    unsure: set[str] = set()  # holders whose reserve or release failed: fate unknown
    grants = 0
    errors = 0
    stop = asyncio.Event()
    serial = itertools.count()

    async def worker() -> None:
        nonlocal grants, errors
        while not stop.is_set():
            holder = f"job-{next(serial)}:1"
            try:
                node = await store.try_reserve(cands, holder, lease_s=LONG)
            except StoreError:
                unsure.add(holder)
                errors += 1
                await asyncio.sleep(0.02)
                continue
            if node is None:
                await asyncio.sleep(0)
                continue
            grants += 1
            progress.set()
            held[node].add(holder)
            if len(held[node]) > capacity:
                overfilled.append((node, len(held[node])))
            await asyncio.sleep(0)
            held[node].discard(holder)
            try:
                await store.release(node, holder)
            except StoreError:
                unsure.add(holder)
                errors += 1

    progress = asyncio.Event()  # set at every grant

    async def served_again(more: int) -> None:
        target = grants + more
        async with asyncio.timeout(30 * timeout_scale):
            while grants < target:
                progress.clear()
                await progress.wait()

    workers = [asyncio.create_task(worker()) for _ in range(16)]
    try:
        await served_again(200)
        first = cluster.primary_of(keys.slots(nodes[0]))
        await asyncio.to_thread(cluster.failover, first)
        await served_again(200)
        others = [cluster.primary_of(keys.slots(n)) for n in nodes]
        victim = next(p for p in others if p.port != first.port and p.running)
        await asyncio.to_thread(cluster.kill_primary, victim)
        await served_again(200)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    try:
        assert overfilled == []
        assert errors > 0  # the lost primary was felt: calls failed until the promotion
        assert not victim.running and len(cluster.primaries()) == 3
        for holder in unsure:  # what a real instance's lease would do by expiring
            for node in nodes:
                await store.release(node, holder)
        assert await store.held_total() == 0
        assert await store.reserved(nodes) == dict.fromkeys(nodes, 0)
    finally:
        await store.close()
    assert admin.answers(cluster.primaries()[0].port)


async def test_the_hot_path_follows_a_slot_migration_ask_then_moved(
    own_redis_cluster: RedisClusterProcess,
) -> None:
    """While a node group's slot migrates, a call whose key has not reached the source is sent
    to the importing node (ASK: ASKING, then the script) and a call on keys the source still
    holds stays there; once the slot has moved, the old primary's MOVED sends the call to the
    new one and the slot map is reloaded.  (A multi-key script on keys in neither place gets
    TRYAGAIN meanwhile, by Redis' rules: StoreUnavailable for that call.)"""
    cluster = own_redis_cluster
    namespace = unique_namespace()
    keys = StoreKeys(namespace, sharded=True)
    store = RedisStore.from_url(cluster.url, namespace=namespace)
    node = "migrating"
    slot = cluster.keyslot(keys.slots(node))
    names = [f"n-{i}" for i in range(2000)]
    other = next(n for n in names if cluster.keyslot(keys.slots(n)) != slot)
    mate = next(n for n in names if keys.group_of(n) == keys.group_of(node))
    source = cluster.primary_of(keys.slots(node))
    target = next(p for p in cluster.primaries() if p.port != source.port)

    def node_id(server: RedisProcess) -> str:
        with server.client() as client:
            return str(admin.command(client, "CLUSTER", "MYID"), "utf-8")

    def setslot(server: RedisProcess, *args: str) -> None:
        with server.client() as client:
            admin.command(client, "CLUSTER", "SETSLOT", str(slot), *args)

    try:
        assert await store.try_reserve([Candidate(other, 1)], "warm:1", lease_s=LONG) == other
        assert await store.try_reserve([Candidate(node, 3)], "j1:1", lease_s=LONG) == node
        setslot(target, "IMPORTING", node_id(source))
        setslot(source, "MIGRATING", node_id(target))
        assert await store.release(mate, "nobody:1") is False  # ASK: answered by the target
        assert await store.try_reserve([Candidate(node, 3)], "j2:1", lease_s=LONG) == node
        with source.client() as client:
            moving = admin.command(client, "CLUSTER", "GETKEYSINSLOT", str(slot), "100")
            assert moving
            admin.command(
                client,
                "MIGRATE",
                "127.0.0.1",
                str(target.port),
                "",
                "0",
                "5000",
                "KEYS",
                *(k.decode() for k in moving),
            )
        for server in cluster.primaries():
            setslot(server, "NODE", node_id(target))
        assert await store.try_reserve([Candidate(node, 3)], "j3:1", lease_s=LONG) == node
        assert await store.try_reserve([Candidate(node, 3)], "j4:1", lease_s=LONG) is None
        with target.client() as client:
            assert client.zcard(keys.slots(node)) == 3  # all on the new primary
        assert await store.reserved([node]) == {node: 3}
        for holder in ("j1:1", "j2:1", "j3:1"):
            assert await store.release(node, holder)
        assert await store.release(other, "warm:1")
        assert await store.held_total() == 0
    finally:
        await store.close()


async def test_an_unreachable_cluster_is_store_unavailable(timeout_scale: float) -> None:
    """No seed answers: every call, hot path included, is StoreUnavailable within its
    timeout, never another exception; ping says False."""
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    store = RedisStore.from_url(url, namespace=unique_namespace(), timeout_s=0.5)
    cluster = ClusterStore.from_url(url, namespace=unique_namespace(), timeout_s=0.5)
    try:
        async with asyncio.timeout(10 * timeout_scale):
            with pytest.raises(StoreUnavailable):
                await store.try_reserve([Candidate("a", 1)], "j:1", lease_s=LONG)
            with pytest.raises(StoreUnavailable):
                await store.held_total()
            with pytest.raises(StoreUnavailable):
                await cluster.instances()
            assert await store.ping() is False
    finally:
        await store.close()
        await cluster.close()
