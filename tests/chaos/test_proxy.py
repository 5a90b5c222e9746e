"""The TCP proxy a fault puts in front of Redis for one instance (``chaos/proxy.py``), against a
real redis-server: a cut holds traffic (the connection stays open) and a heal delivers it in
order; a drop resets connections and refuses new ones until the heal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import redis.asyncio

from switchboard.chaos.proxy import RedisProxy

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[RedisProxy]:
    proxy = RedisProxy("127.0.0.1", redis_server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def client(proxy: RedisProxy) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=None)


async def test_a_cut_holds_commands_and_a_heal_delivers_them_in_order(
    proxy: RedisProxy, namespace: str
) -> None:
    key = f"{namespace}:list"
    async with client(proxy) as conn:
        assert await conn.ping() is True
        proxy.cut()
        pushes = [asyncio.ensure_future(conn.rpush(key, str(n))) for n in range(1)]
        done, _ = await asyncio.wait(pushes, timeout=0.3)
        assert not done  # nothing crosses while cut
        proxy.heal()
        assert await asyncio.gather(*pushes) == [1]
        assert await conn.rpush(key, "after") == 2
        assert await conn.lrange(key, 0, -1) == [b"0", b"after"]
        await conn.delete(key)


async def test_a_drop_resets_connections_and_refuses_new_ones_until_healed(
    proxy: RedisProxy,
) -> None:
    async with client(proxy) as conn:
        assert await conn.ping() is True
        proxy.drop()
        with pytest.raises(redis.exceptions.ConnectionError):
            await conn.ping()
        with pytest.raises(redis.exceptions.ConnectionError):
            await conn.ping()  # a fresh connection is reset too
        proxy.heal()
        assert await conn.ping() is True
