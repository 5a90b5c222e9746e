"""The pool configuration stores (store/pool_config.py): the same contract in memory and on a
real redis-server, then what only Redis does (one key per namespace, shared, checked on read,
failures translated, written back by a holder after Redis restarts empty)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import pytest

from switchboard.errors import StoreError, StoreUnavailable
from switchboard.runtime.values import Pool
from switchboard.server.pool_sync import PoolSync
from switchboard.store.keys import StoreKeys
from switchboard.store.pool_config import MemoryPoolConfig, PoolConfigStore, StoredPools
from switchboard.store.redis_pool_config import RedisPoolConfig
from switchboard.tools.procs import free_port
from tests.conftest import unique_namespace

if TYPE_CHECKING:
    from switchboard.tools.procs import RedisClusterProcess
    from tests.conftest import RedisServer

EURO = Pool(10, "euro", frozenset({"en", "de"}), frozenset({"asr"}))
CJK = Pool(11, "cjk", frozenset({"zh-cn", "en"}), frozenset())


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
async def config(request: pytest.FixtureRequest) -> AsyncIterator[PoolConfigStore]:
    """An empty pool configuration store of each kind (Redis: one server, and a Cluster)."""
    if request.param == "memory":
        yield MemoryPoolConfig()
        return
    fixture = "redis_cluster" if request.param == "redis-cluster" else "redis_server"
    server: RedisServer | RedisClusterProcess = request.getfixturevalue(fixture)
    store = RedisPoolConfig.from_url(server.url, namespace=unique_namespace())
    try:
        yield store
    finally:
        await store.close()


async def test_nothing_stored_at_first(config: PoolConfigStore) -> None:
    assert await config.read() is None


async def test_each_write_raises_the_revision(config: PoolConfigStore) -> None:
    """Writes replace the pools, order kept, with revisions 1, 2, 3; [] is stored too."""
    assert await config.write((EURO, CJK)) == StoredPools(1, (EURO, CJK))
    assert await config.read() == StoredPools(1, (EURO, CJK))
    assert await config.write((CJK,)) == StoredPools(2, (CJK,))
    assert await config.write(()) == StoredPools(3, ())
    assert await config.read() == StoredPools(3, ())


async def test_seed_writes_only_into_an_empty_store(config: PoolConfigStore) -> None:
    assert await config.seed((EURO,)) == (StoredPools(1, (EURO,)), True)
    assert await config.seed((CJK,)) == (StoredPools(1, (EURO,)), False)
    assert await config.read() == StoredPools(1, (EURO,))


# --- Redis only -------------------------------------------------------------------------------


def _redis(server: RedisServer, namespace: str) -> RedisPoolConfig:
    return RedisPoolConfig.from_url(server.url, namespace=namespace)


@pytest.mark.redis
async def test_one_key_per_namespace_shared_by_instances(redis_server: RedisServer) -> None:
    """Two stores on one namespace (two instances) read the same configuration from
    sb:{<ns>}:pools, JSON with its revision; another namespace sees nothing."""
    namespace = unique_namespace()
    a, b = _redis(redis_server, namespace), _redis(redis_server, namespace)
    other = _redis(redis_server, unique_namespace())
    try:
        await a.write((EURO,))
        assert await b.read() == StoredPools(1, (EURO,))
        assert await other.read() is None
        with redis_server.client() as raw:
            value = raw.get(StoreKeys(namespace).pools)
        assert a.key == f"sb:{{{namespace}}}:pools"
        assert value is not None
        assert json.loads(value) == {"revision": 1, "pools": [EURO.to_json()]}
    finally:
        for store in (a, b, other):
            await store.close()


@pytest.mark.redis
async def test_seeds_racing_store_one_configuration(redis_server: RedisServer) -> None:
    """Ten instances seeding at once from different files: one seed wins, all see it."""
    namespace = unique_namespace()
    stores = [_redis(redis_server, namespace) for _ in range(10)]
    try:
        pools = [(Pool(n, f"p{n}", frozenset({"en"}), frozenset()),) for n in range(10)]
        results = await asyncio.gather(*(s.seed(p) for s, p in zip(stores, pools, strict=True)))
        assert sum(ours for _, ours in results) == 1
        assert len({stored for stored, _ in results}) == 1
    finally:
        for store in stores:
            await store.close()


@pytest.mark.redis
async def test_an_invalid_stored_value_is_a_store_error(redis_server: RedisServer) -> None:
    """A value written by hand that PUT would refuse never reaches a registry; a PUT then
    replaces it, counting on from the value's revision when it has a readable one."""
    namespace = unique_namespace()
    store = _redis(redis_server, namespace)
    try:
        bad_values = {"{nope": 1, '{"revision": 4, "pools": [{"pool_id": 1, "name": "x"}]}': 5}
        for bad, next_revision in bad_values.items():
            with redis_server.client() as raw:
                raw.set(StoreKeys(namespace).pools, bad)
            with pytest.raises(StoreError, match="not a pool configuration"):
                await store.read()
            assert await store.write((CJK,)) == StoredPools(next_revision, (CJK,))
            assert await store.read() == StoredPools(next_revision, (CJK,))
    finally:
        await store.close()


@pytest.mark.redis
async def test_unreachable_redis_is_store_unavailable() -> None:
    store = RedisPoolConfig.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await store.read()
        with pytest.raises(StoreUnavailable):
            await store.write((EURO,))
    finally:
        await store.close()


class Registry:
    def __init__(self) -> None:
        self.pools: tuple[Pool, ...] = ()

    async def set_pools(self, pools: Sequence[Pool]) -> None:
        self.pools = tuple(pools)

    async def rebuild_now(self) -> None:
        return None


@pytest.mark.redis
async def test_configuration_outlives_a_redis_restart(own_redis_server: RedisServer) -> None:
    """Redis restarted empty (no persistence): the next poll of an instance holding the
    configuration writes it back, so an instance starting afterwards still gets it."""
    namespace = unique_namespace()
    a = PoolSync(_redis(own_redis_server, namespace), Registry(), seed=(EURO,))
    await a.load()
    await a.put((CJK,))
    await asyncio.to_thread(own_redis_server.restart)
    await a.refresh()
    b_registry = Registry()
    b = PoolSync(_redis(own_redis_server, namespace), b_registry)
    try:
        await b.load()
        assert b_registry.pools == (CJK,)
    finally:
        await a.stop()
        await b.stop()
