"""Redis-only behaviour: failure translation, timeouts, restarts, key layout.

Bounds are "within 2 s" for a store built with the default 1 s timeout, scaled by the timeout
scale.  Every failure must arrive as ``StoreUnavailable``/``StoreError``, never as a redis-py
exception, and the same store object must work again once Redis is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from redis import exceptions as rexc
from redis.asyncio import Redis as AsyncRedis
from redis.crc import key_slot

from switchboard.errors import ConfigError, StoreError, StoreUnavailable
from switchboard.store import pipelined
from switchboard.store.base import Candidate
from switchboard.store.keys import StoreKeys
from switchboard.store.redis_store import RedisStore

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

LONG = 60.0
A = [Candidate("a", 2), Candidate("b", 2)]

Op = Callable[[RedisStore], Awaitable[object]]
OPS: dict[str, Op] = {
    "try_reserve": lambda s: s.try_reserve(A, "j9:1", lease_s=LONG),
    "release": lambda s: s.release("a", "j1:1"),
    "renew": lambda s: s.renew([("a", "j1:1")], lease_s=LONG),
    "reserved": lambda s: s.reserved(["a", "b"]),
    "held_total": lambda s: s.held_total(),
}


@pytest.fixture
async def own_store(own_redis_server: RedisServer, namespace: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(own_redis_server.url, namespace=namespace)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def shared_store(redis_server: RedisServer, namespace: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_server.url, namespace=namespace)
    try:
        yield store
    finally:
        await store.close()


async def expect_unavailable(op: Awaitable[object], bound_s: float) -> StoreUnavailable:
    """Await ``op``; it must raise exactly ``StoreUnavailable`` within ``bound_s``."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await op
    elapsed = time.monotonic() - started
    assert type(info.value) is StoreUnavailable
    assert not isinstance(info.value, rexc.RedisError)
    assert elapsed < bound_s, f"took {elapsed:.2f} s"
    return info.value


# --------------------------------------------------------------------------- outages


async def test_stopped_redis_raises_unavailable_fast(
    own_redis_server: RedisServer, own_store: RedisStore, timeout_scale: float
) -> None:
    assert await own_store.try_reserve(A, "j1:1", lease_s=LONG) == "a"  # pool has a connection
    own_redis_server.stop()
    for name, op in OPS.items():
        exc = await expect_unavailable(op(own_store), 2 * timeout_scale)
        assert "redis" in str(exc), name
    started = time.monotonic()
    assert await own_store.ping() is False
    assert time.monotonic() - started < 2 * timeout_scale


async def test_restart_works_without_new_store(
    own_redis_server: RedisServer, own_store: RedisStore
) -> None:
    # No failed call in between: the first call after the restart meets a dead pooled
    # connection *and* an empty script cache, and must still succeed by itself.
    assert await own_store.try_reserve(A, "j1:1", lease_s=LONG) == "a"
    own_redis_server.restart()
    with own_redis_server.client() as admin:
        assert admin.script_exists(own_store._try_reserve.sha) == [False]
    assert await own_store.try_reserve(A, "j2:1", lease_s=LONG) == "a"  # data was lost
    assert await own_store.held_total() == 1
    with own_redis_server.client() as admin:
        assert admin.script_exists(own_store._try_reserve.sha) == [True]


async def test_works_again_after_outage(
    own_redis_server: RedisServer, own_store: RedisStore, timeout_scale: float
) -> None:
    assert await own_store.try_reserve(A, "j1:1", lease_s=LONG) == "a"
    own_redis_server.stop()
    await expect_unavailable(own_store.try_reserve(A, "j2:1", lease_s=LONG), 2 * timeout_scale)
    own_redis_server.start()
    assert await own_store.ping() is True
    assert await own_store.try_reserve(A, "j2:1", lease_s=LONG) == "a"
    assert await own_store.reserved(["a"]) == {"a": 1}


async def test_script_flush_is_survived(
    redis_server: RedisServer, shared_store: RedisStore
) -> None:
    assert await shared_store.try_reserve(A, "j1:1", lease_s=LONG) == "a"
    with redis_server.client() as admin:
        admin.script_flush()
    assert await shared_store.try_reserve(A, "j2:1", lease_s=LONG) == "b"
    assert await shared_store.release("b", "j2:1") is True


async def test_paused_redis_raises_unavailable_fast(
    own_redis_server: RedisServer, own_store: RedisStore, timeout_scale: float
) -> None:
    assert await own_store.try_reserve(A, "j1:1", lease_s=LONG) == "a"
    pause_s = 1.6 * timeout_scale  # longer than the store's 1 s timeout
    own_redis_server.pause(int(pause_s * 1000))
    started = time.monotonic()
    reserve, _ = await asyncio.gather(
        expect_unavailable(own_store.try_reserve(A, "j2:1", lease_s=LONG), 2 * timeout_scale),
        expect_unavailable(own_store.held_total(), 2 * timeout_scale),
    )
    assert "no answer within 1 s" in str(reserve)
    assert await own_store.ping() in (True, False)  # never raises, whatever the timing
    # Once the pause is over the same store answers correctly: no late reply to an old command
    # is read as the answer to a new one (redis-py dropped its timed-out connections; the hot
    # path kept its own and reads the late replies, then drops them).
    await asyncio.sleep(max(0.0, pause_s + 0.1 - (time.monotonic() - started)))
    assert await own_store.release("a", "j1:1") is True
    # A timed-out reserve may or may not have landed (on "b": "a" held j1:1 then); either way it
    # is one lease, and a retry with the same holder finds it (idempotence makes timeouts safe).
    landed = await own_store.held_total()
    assert landed in (0, 1)
    node = await own_store.try_reserve(A, "j2:1", lease_s=LONG)
    assert node == ("b" if landed else "a")
    assert await own_store.reserved(["a", "b"]) == {"a": int(node == "a"), "b": int(node == "b")}


async def test_frozen_redis_never_hangs_a_new_connection(
    own_redis_server: RedisServer, namespace: str, timeout_scale: float
) -> None:
    # SIGSTOP: the kernel still completes the TCP handshake, but nothing ever answers.
    own_redis_server.freeze()
    store = RedisStore.from_url(own_redis_server.url, namespace=namespace)
    try:
        await expect_unavailable(store.try_reserve(A, "j1:1", lease_s=LONG), 2 * timeout_scale)
        assert await store.ping() is False
        own_redis_server.thaw()
        assert await store.try_reserve(A, "j1:1", lease_s=LONG) == "a"
        assert await store.ping() is True
    finally:
        own_redis_server.thaw()
        await store.close()


# --------------------------------------------------------------------------- translation


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (rexc.ConnectionError("refused"), StoreUnavailable),
        (rexc.TimeoutError("read timed out"), StoreUnavailable),
        (rexc.BusyLoadingError("Redis is loading the dataset in memory"), StoreUnavailable),
        (rexc.AuthenticationError("invalid password"), StoreUnavailable),
        (rexc.ReadOnlyError("You can't write against a read only replica."), StoreUnavailable),
        (rexc.MasterDownError("Link with MASTER is down"), StoreUnavailable),
        (rexc.TryAgainError("Multiple keys request during rehashing"), StoreUnavailable),
        (
            rexc.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
            StoreUnavailable,
        ),
        (rexc.ResponseError("BUSY Redis is busy running a script."), StoreUnavailable),
        (TimeoutError(), StoreUnavailable),  # what asyncio.timeout raises
        (ConnectionResetError(104, "reset by peer"), StoreUnavailable),
        (rexc.ResponseError("ERR something odd"), StoreError),
        (rexc.NoPermissionError("no permissions to run 'evalsha'"), StoreError),
        (rexc.DataError("Invalid input"), StoreError),
        (rexc.RedisClusterException("cluster misconfigured"), StoreError),
        (rexc.RedisError("anything else"), StoreError),
        # The hot path's client (pipelined.py) has one class for every error reply.
        (pipelined.ConnectionFailed("redis connection lost"), StoreUnavailable),
        (pipelined.Overloaded("10000 redis commands in flight"), StoreUnavailable),
        (pipelined.ReplyError("BUSY Redis is busy running a script."), StoreUnavailable),
        (pipelined.ReplyError("LOADING Redis is loading the dataset in memory"), StoreUnavailable),
        (pipelined.ReplyError("NOAUTH Authentication required."), StoreUnavailable),
        (pipelined.ReplyError("OOM command not allowed"), StoreUnavailable),
        (pipelined.ReplyError("ERR Error running script"), StoreError),
        (pipelined.ReplyError("NOPERM this user has no permissions"), StoreError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__,
)
@pytest.mark.parametrize("op", OPS)
async def test_no_redis_exception_escapes(
    shared_store: RedisStore,
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    expected: type[StoreError],
    op: str,
) -> None:
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise raised

    def boom_then(*args: Any) -> None:  # the hot path's callback face: the error, from the loop
        asyncio.get_running_loop().call_soon(args[-1], None, raised)

    monkeypatch.setattr(shared_store._client, "evalsha", boom)
    monkeypatch.setattr(shared_store._hot, "evalsha", boom)
    monkeypatch.setattr(shared_store._hot, "evalsha_then", boom_then)
    with pytest.raises(StoreError) as info:
        await OPS[op](shared_store)
    assert type(info.value) is expected
    assert info.value.__cause__ is raised
    monkeypatch.setattr(shared_store._client, "ping", boom)
    assert await shared_store.ping() is False


async def test_server_side_error_is_store_error(
    redis_server: RedisServer, shared_store: RedisStore
) -> None:
    with redis_server.client() as admin:
        admin.set(StoreKeys(shared_store.namespace).slots("a"), "not a sorted set")
    with pytest.raises(StoreError) as info:
        await shared_store.try_reserve(A, "j1:1", lease_s=LONG)
    assert type(info.value) is StoreError
    assert "WRONGTYPE" in str(info.value)


# --------------------------------------------------------------------------- layout & config


async def test_keys_share_one_hash_slot_and_use_server_time(
    redis_server: RedisServer, shared_store: RedisStore
) -> None:
    keys = StoreKeys(shared_store.namespace)
    with redis_server.client() as admin:
        before_s, before_us = admin.time()
        assert await shared_store.try_reserve(A, "j1:1", lease_s=10.0) == "a"
        after_s, after_us = admin.time()
        score = admin.zscore(keys.slots("a"), "j1:1")
        assert admin.smembers(keys.nodes) == {b"a"}
    assert score is not None
    assert before_s * 1000 + before_us // 1000 + 10_000 <= score
    assert score <= after_s * 1000 + after_us // 1000 + 10_000
    assert keys.slots("a") == f"sb:{{{shared_store.namespace}}}:slots:a"
    slots = {key_slot(k.encode()) for k in (keys.nodes, keys.slots("a"), keys.slots("{x}y"))}
    assert len(slots) == 1


async def test_held_total_forgets_empty_nodes(
    redis_server: RedisServer, shared_store: RedisStore
) -> None:
    assert await shared_store.try_reserve(A, "j1:1", lease_s=LONG) == "a"
    assert await shared_store.try_reserve(A, "j2:1", lease_s=LONG) == "b"
    assert await shared_store.release("a", "j1:1")
    assert await shared_store.held_total() == 1
    with redis_server.client() as admin:
        assert admin.smembers(StoreKeys(shared_store.namespace).nodes) == {b"b"}


async def test_namespaces_are_isolated(redis_server: RedisServer, namespace: str) -> None:
    one = RedisStore.from_url(redis_server.url, namespace=f"{namespace}-one")
    two = RedisStore.from_url(redis_server.url, namespace=f"{namespace}-two")
    try:
        assert await one.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) == "a"
        assert await two.try_reserve([Candidate("a", 1)], "j2:1", lease_s=LONG) == "a"
        assert await one.held_total() == 1
        assert await two.reserved(["a"]) == {"a": 1}
    finally:
        for store in (one, two):
            await store.release("a", "j1:1")
            await store.release("a", "j2:1")
            await store.close()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        RedisStore.from_url("not-a-url")
    with pytest.raises(ConfigError):
        RedisStore.from_url("redis://127.0.0.1:1/0", namespace="a{b}")
    with pytest.raises(ConfigError):
        RedisStore.from_url("redis://127.0.0.1:1/0", timeout_s=0)
    with pytest.raises(ConfigError):  # the hot path's TLS context is built at once
        RedisStore.from_url("rediss://127.0.0.1:1/0?ssl_ca_certs=/nonexistent/ca.pem")
    with pytest.raises(ConfigError):
        RedisStore.from_url("rediss://127.0.0.1:1/0?ssl_cert_reqs=sometimes")


async def test_unreachable_port_from_the_start(namespace: str, timeout_scale: float) -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", namespace=namespace)
    try:
        await expect_unavailable(store.held_total(), 2 * timeout_scale)
        assert await store.ping() is False
    finally:
        await store.close()


def test_retry_policy_is_the_asyncio_one() -> None:
    # Guard for a real bug: redis.retry.Retry (sync) silently disables retries on the asyncio
    # client, and then the first call after a Redis restart fails.
    store = RedisStore.from_url("redis://127.0.0.1:1/0")
    retry = store._client.connection_pool.connection_kwargs["retry"]
    assert type(retry).__module__ == "redis.asyncio.retry"
    assert isinstance(store._client, AsyncRedis)


def test_client_must_decode_responses() -> None:
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisStore(AsyncRedis.from_url("redis://127.0.0.1:1/0"))
    with pytest.raises(ConfigError):
        RedisStore.from_url("redis://127.0.0.1:1/0", timeout_s=float("nan"))
