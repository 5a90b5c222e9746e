"""The hot-path client (store/pipelined.py) against a real redis-server: pipelining, error
replies, NOSCRIPT, lost and stalled connections, bounds, and the connection settings of the URL
(AUTH, SELECT, TLS, unix socket).  Bounds are scaled by the timeout scale."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.asyncio import BlockingConnectionPool

from switchboard.errors import StoreError, StoreUnavailable
from switchboard.store.base import Candidate
from switchboard.store.keys import StoreKeys
from switchboard.store.pipelined import (
    ConnectionFailed,
    Endpoint,
    Overloaded,
    PipelinedClient,
    ReplyError,
    Script,
)
from switchboard.store.redis_store import RedisStore
from tests.conftest import _free_port, _launch

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

LONG = 60.0
ECHO = Script("return {KEYS[1], ARGV[1]}")
FAILING = Script("return redis.call('NOPE')")


@pytest.fixture
async def client(
    own_redis_server: RedisServer, timeout_scale: float
) -> AsyncIterator[PipelinedClient]:
    hot = make_client(own_redis_server, timeout_scale)
    try:
        yield hot
    finally:
        await hot.close()


def make_client(server: RedisServer, scale: float, **options: Any) -> PipelinedClient:
    options.setdefault("stall_s", 30 * scale)
    endpoint = Endpoint(host="127.0.0.1", port=server.port)
    return PipelinedClient(endpoint, connect_timeout_s=1 * scale, **options)


async def echo(client: PipelinedClient, i: int) -> list[Any]:
    reply: list[Any] = await client.evalsha(ECHO, [f"k{i}"], [i])
    return reply


def connections_received(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_connections_received"])


def pause_writes(admin: redis.Redis, ms: int) -> None:
    """CLIENT PAUSE WRITE: scripts wait, but admin commands such as CLIENT KILL still run."""
    admin.client_pause(ms, all=False)


# --------------------------------------------------------------------------- pipelining


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    own_redis_server: RedisServer, client: PipelinedClient
) -> None:
    """500 concurrent first calls: one connect, all in flight together, each its own reply."""
    with own_redis_server.client() as admin:
        before = connections_received(admin)
        replies = await asyncio.gather(*(echo(client, i) for i in range(500)))
        assert replies == [[f"k{i}", str(i)] for i in range(500)]
        assert connections_received(admin) - before == 1


async def test_calls_reach_redis_in_call_order_even_while_connecting(
    own_redis_server: RedisServer, client: PipelinedClient
) -> None:
    """Calls made before, during and just after the first connect run in the order made."""
    push = Script("return redis.call('RPUSH', KEYS[1], ARGV[1])")
    with own_redis_server.client() as admin:  # a NOSCRIPT retry would run after later calls
        admin.script_load(push.source)
    calls = []
    for i in range(300):
        calls.append(asyncio.ensure_future(client.evalsha(push, ["order"], [i])))
        if i % 3 == 0:
            await asyncio.sleep(0)  # let the connect make progress between calls
    assert await asyncio.gather(*calls) == list(range(1, 301))
    with own_redis_server.client() as admin:
        assert admin.lrange("order", 0, -1) == [str(i).encode() for i in range(300)]


async def test_error_reply_does_not_desync_the_fifo(client: PipelinedClient) -> None:
    """An error reply goes to its own caller as ReplyError; the calls around it and after it
    still get their own replies."""
    calls = [echo(client, 1), client.evalsha(FAILING, [], []), echo(client, 2)]
    first, failed, second = await asyncio.gather(*calls, return_exceptions=True)
    assert (first, second) == (["k1", "1"], ["k2", "2"])
    assert isinstance(failed, ReplyError)
    assert failed.code == "ERR"
    assert await echo(client, 3) == ["k3", "3"]


async def test_callback_replies_come_from_the_read_in_order_and_never_from_the_call(
    own_redis_server: RedisServer, client: PipelinedClient
) -> None:
    """``evalsha_then``: each callback gets its own reply (errors as errors, NOSCRIPT retried),
    in call order, never from inside the call; one callback that raises costs the others
    nothing; the callbacks of one read run before the loop's ready queue does (a future's
    ``call_soon`` set there runs after all of them)."""
    order: list[Any] = []
    in_call = True

    def then(tag: Any) -> Any:
        def reply(value: Any, error: BaseException | None) -> None:
            assert not in_call
            order.append((tag, value, type(error).__name__ if error else None))
            if tag == 1:
                raise RuntimeError("a caller's bug")

        return reply

    fresh = Script("return {KEYS[1], 'fresh'}")  # never loaded: NOSCRIPT, then EVAL
    with own_redis_server.client() as admin:
        admin.script_load(ECHO.source)
        admin.script_load(FAILING.source)
    client.evalsha_then(ECHO, ["k0"], [0], then(0))
    client.evalsha_then(ECHO, ["k1"], [1], then(1))
    client.evalsha_then(FAILING, [], [], then(2))
    client.evalsha_then(fresh, ["k3"], [], then(3))
    client.evalsha_then(ECHO, ["k4"], [4], then(4))
    in_call = False
    for _ in range(200):
        if len(order) == 5:
            break
        await asyncio.sleep(0.01)
    tags = [tag for tag, _, _ in order]
    assert sorted(tags) == [0, 1, 2, 3, 4]
    assert [t for t in tags if t != 3] == [0, 1, 2, 4]  # the retried one may come last
    by_tag = {tag: (value, error) for tag, value, error in order}
    assert by_tag[0] == (["k0", "0"], None) and by_tag[4] == (["k4", "4"], None)
    assert by_tag[2] == (None, "ReplyError")
    assert by_tag[3] == (["k3", "fresh"], None)


async def test_a_callback_call_that_cannot_be_sent_fails_from_the_loop(
    own_redis_server: RedisServer, timeout_scale: float
) -> None:
    """Too many in flight: the callback gets ``Overloaded`` later, from the loop."""
    hot = make_client(own_redis_server, timeout_scale, max_in_flight=1)
    try:
        got: list[str] = []
        returned = False

        def reply(value: Any, error: BaseException | None) -> None:
            assert returned
            got.append(type(error).__name__ if error else repr(value))

        hot.evalsha_then(ECHO, ["a"], [1], reply)
        hot.evalsha_then(ECHO, ["b"], [2], reply)  # the second is one too many
        returned = True
        for _ in range(200):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(got) == sorted(["Overloaded", repr(["a", "1"])])
    finally:
        await hot.close()


async def test_script_flush_mid_run_is_survived(
    own_redis_server: RedisServer, client: PipelinedClient
) -> None:
    """SCRIPT FLUSH while calls are in flight: every call still succeeds (NOSCRIPT → EVAL),
    and the script is back in the server's cache afterwards."""
    flushed = asyncio.Event()

    def flush() -> None:
        with own_redis_server.client() as admin:
            admin.script_flush()

    async def stream(worker: int) -> None:
        i, after = worker * 100_000, 0
        while after < 20:  # calls before, between and after the flushes
            i += 1
            assert await echo(client, i) == [f"k{i}", str(i)]
            after += flushed.is_set()

    workers = asyncio.gather(*(stream(w) for w in range(8)))
    for _ in range(3):
        await asyncio.sleep(0.02)
        await asyncio.to_thread(flush)
    flushed.set()
    await workers
    with own_redis_server.client() as admin:
        assert admin.script_exists(ECHO.sha) == [True]
        assert admin.info("commandstats")["cmdstat_eval"]["calls"] >= 1  # NOSCRIPT was met


# --------------------------------------------------------------------------- failures


async def test_killed_connection_fails_pending_calls_and_the_next_reconnects(
    own_redis_server: RedisServer, client: PipelinedClient, timeout_scale: float
) -> None:
    """CLIENT KILL with calls in flight: all of them fail at once with ConnectionFailed; the
    next call opens a new connection and succeeds."""
    assert await echo(client, 0) == ["k0", "0"]
    with own_redis_server.client() as admin:
        pause_writes(admin, int(5000 * timeout_scale))
        pending = [asyncio.ensure_future(echo(client, i)) for i in range(20)]
        await asyncio.sleep(0.1)  # written and waiting in the server
        assert not any(call.done() for call in pending)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        async with asyncio.timeout(1 * timeout_scale):  # far less than the pause
            outcomes = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(outcome, ConnectionFailed) for outcome in outcomes)
        admin.client_unpause()
    assert await echo(client, 21) == ["k21", "21"]


async def test_paused_redis_gives_unavailable_in_time_and_late_reply_is_dropped(
    own_redis_server: RedisServer, namespace: str, timeout_scale: float
) -> None:
    """CLIENT PAUSE ALL: a RedisStore reserve fails with StoreUnavailable within its timeout;
    after the pause the late reply is read on the same connection and not handed to the next
    call, which gets its own answer."""
    timeout_s = 0.5 * timeout_scale
    store = RedisStore.from_url(own_redis_server.url, namespace=namespace, timeout_s=timeout_s)
    try:
        assert await store.try_reserve([Candidate("a", 1)], "j0:1", lease_s=LONG) == "a"
        with own_redis_server.client() as admin:
            before = connections_received(admin)
            admin.client_pause(int(3 * timeout_s * 1000), all=True)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.try_reserve([Candidate("b", 1)], "j1:1", lease_s=LONG)
            assert time.monotonic() - started < timeout_s + 0.5 * timeout_scale
            await asyncio.sleep(max(0.0, 3 * timeout_s + 0.1 - (time.monotonic() - started)))
            # A desynced FIFO would answer this with the late reply to j1 ("b").
            assert await store.try_reserve([Candidate("c", 1)], "j2:1", lease_s=LONG) == "c"
            assert connections_received(admin) == before  # the same hot-path connection
        assert await store.reserved(["b"]) == {"b": 1}  # the late reserve did run
    finally:
        await store.close()


async def test_stalled_connection_is_replaced(
    own_redis_server: RedisServer, timeout_scale: float
) -> None:
    """A connection that owes replies and has read nothing for stall_s is dropped by the next
    call, which opens a new one and gets its own reply."""
    stall_s = 0.3 * timeout_scale
    client = make_client(own_redis_server, timeout_scale, stall_s=stall_s)
    try:
        assert await echo(client, 0) == ["k0", "0"]
        with own_redis_server.client() as admin:
            before = connections_received(admin)
            pause_writes(admin, int(5000 * timeout_scale))
            stuck = asyncio.ensure_future(echo(client, 1))
            await asyncio.sleep(stall_s * 1.5)
            fresh = asyncio.ensure_future(echo(client, 2))
            with pytest.raises(ConnectionFailed, match="sent nothing"):
                await stuck
            admin.client_unpause()
            assert await fresh == ["k2", "2"]
            assert connections_received(admin) - before == 1
    finally:
        await client.close()


async def test_too_many_in_flight_fails_fast(
    own_redis_server: RedisServer, timeout_scale: float
) -> None:
    """Past max_in_flight a call is refused at once with Overloaded; the calls in flight still
    complete."""
    client = make_client(own_redis_server, timeout_scale, max_in_flight=3)
    try:
        assert await echo(client, 0) == ["k0", "0"]
        with own_redis_server.client() as admin:
            pause_writes(admin, int(5000 * timeout_scale))
            pending = [asyncio.ensure_future(echo(client, i)) for i in range(1, 4)]
            await asyncio.sleep(0.05)
            with pytest.raises(Overloaded):
                await echo(client, 4)
            admin.client_unpause()
        assert await asyncio.gather(*pending) == [[f"k{i}", str(i)] for i in range(1, 4)]
    finally:
        await client.close()


async def test_close_fails_pending_calls_and_is_final(
    own_redis_server: RedisServer, timeout_scale: float
) -> None:
    """close() fails the calls in flight with ConnectionFailed, and every later call too,
    without connecting again (a retry after close must not leave a connection open)."""
    client = make_client(own_redis_server, timeout_scale)
    assert await echo(client, 0) == ["k0", "0"]
    with own_redis_server.client() as admin:
        before = connections_received(admin)
        pause_writes(admin, int(5000 * timeout_scale))
        pending = asyncio.ensure_future(echo(client, 1))
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(ConnectionFailed, match="closed"):
            await pending
        with pytest.raises(ConnectionFailed, match="closed"):
            await echo(client, 2)
        admin.client_unpause()
        assert connections_received(admin) == before


async def test_unreachable_server_fails_with_connection_failed(timeout_scale: float) -> None:
    """Nothing listening: the call fails with ConnectionFailed (a ConnectionError) quickly."""
    client = PipelinedClient(
        Endpoint(host="127.0.0.1", port=_free_port()), connect_timeout_s=1.0, stall_s=3.0
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        await client.evalsha(ECHO, ["k"], [1])
    assert time.monotonic() - started < 1 * timeout_scale
    await client.close()


# --------------------------------------------------------------------------- connection settings


async def test_auth_with_username_and_db_from_the_url(
    own_redis_server: RedisServer, namespace: str
) -> None:
    """AUTH user password and SELECT db come from the URL; both clients of the store use them."""
    with own_redis_server.client() as admin:
        admin.acl_setuser("alice", enabled=True, passwords=["+wonderland"], keys="*",
                          commands=["+@all"])  # fmt: skip
        admin.config_set("requirepass", "s3cret")
    base = f"127.0.0.1:{own_redis_server.port}"
    for url, db in ((f"redis://:s3cret@{base}/0", 0), (f"redis://alice:wonderland@{base}/3", 3)):
        store = RedisStore.from_url(url, namespace=namespace)
        try:
            assert await store.try_reserve([Candidate("a", 5)], f"j{db}:1", lease_s=LONG) == "a"
            assert await store.held_total() == 1
        finally:
            await store.close()
        with redis.Redis(port=own_redis_server.port, password="s3cret", db=db) as check:
            assert check.zcard(StoreKeys(namespace).slots("a")) == 1


async def test_wrong_password_is_a_store_error_without_the_password(
    own_redis_server: RedisServer, namespace: str
) -> None:
    """A wrong password: StoreUnavailable/StoreError, and the password appears nowhere in the
    exception chain."""
    with own_redis_server.client() as admin:
        admin.config_set("requirepass", "s3cret")
    url = f"redis://:Wr0ngPassw0rd@127.0.0.1:{own_redis_server.port}/0"
    store = RedisStore.from_url(url, namespace=namespace)
    try:
        for op in (
            store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG),
            store.held_total(),
        ):
            with pytest.raises(StoreError) as info:
                await op
            chain: BaseException | None = info.value
            while chain is not None:
                assert "Wr0ngPassw0rd" not in f"{chain!r} {chain}"
                chain = chain.__cause__ or chain.__context__
        assert "Wr0ngPassw0rd" not in repr(store._hot._endpoint)
    finally:
        await store.close()


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1, as its own CA (key and cert in one file)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found on PATH: the TLS test makes its certificate with it")
    pem = directory / "redis.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(pem), "-out", str(pem)],
        check=True, capture_output=True,
    )  # fmt: skip
    return pem


async def test_tls_url_verifies_the_server_like_redis_py(
    own_redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """rediss:// with ssl_ca_certs: the hot path connects over TLS and verifies the server's
    certificate (an unknown CA is refused, as redis-py refuses it)."""
    pem, tls_port = make_certificate(tmp_path), _free_port()
    with own_redis_server.client() as admin:
        admin.config_set("tls-cert-file", str(pem))
        admin.config_set("tls-key-file", str(pem))
        admin.config_set("tls-auth-clients", "no")
        admin.config_set("tls-port", str(tls_port))
    url = f"rediss://127.0.0.1:{tls_port}/0"
    trusted = RedisStore.from_url(f"{url}?ssl_ca_certs={pem}", namespace=namespace)
    untrusted = RedisStore.from_url(url, namespace=namespace)
    try:
        assert await trusted.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) == "a"
        assert await trusted.release("a", "j1:1") is True
        with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.try_reserve([Candidate("a", 1)], "j2:1", lease_s=LONG)
    finally:
        await trusted.close()
        await untrusted.close()


async def test_unix_socket_url(
    tmp_path_factory: pytest.TempPathFactory, timeout_scale: float, namespace: str
) -> None:
    """unix:// URLs (with ?db=) reach the server over its unix socket."""
    sock = tmp_path_factory.mktemp("sock") / "redis.sock"
    server = _launch(tmp_path_factory, timeout_scale, ["--unixsocket", str(sock)])
    store = RedisStore.from_url(f"unix://{sock}?db=2", namespace=namespace)
    try:
        assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) == "a"
        with redis.Redis(unix_socket_path=str(sock), db=2) as check:
            assert check.zcard(StoreKeys(namespace).slots("a")) == 1
    finally:
        await store.close()
        server.stop()


def test_endpoint_comes_from_the_pool_that_parsed_the_url() -> None:
    """Host, port, db and credentials are redis-py's parse of the URL; repr hides the password."""
    pool = BlockingConnectionPool.from_url("redis://bob:hunter2@db.example:7000/5")
    endpoint = Endpoint.of_pool(pool)
    assert (endpoint.host, endpoint.port, endpoint.db) == ("db.example", 7000, 5)
    assert (endpoint.username, endpoint.password, endpoint.tls) == ("bob", "hunter2", None)
    assert "hunter2" not in repr(endpoint)
