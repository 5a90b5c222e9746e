"""Fixtures shared by every test directory: timeout scaling, a real redis-server, stores.

- ``timeout_scale``: multiply every wall-clock bound a test uses by this factor
  (``--timeout-scale`` or ``SWITCHBOARD_TEST_TIMEOUT_SCALE``, default 1) so slow CI machines
  can stretch them without editing tests.
- ``redis_server``: one real ``redis-server`` per session on a free loopback port, with no
  persistence.  Tests must not stop or pause it; ``own_redis_server`` gives a private one that a
  test may stop, restart, pause or freeze.
- ``store``: parametrized over the in-process and the Redis store, so the same contract tests run
  on both; ``advance`` moves time forward for it (the memory store's manual clock, a real sleep
  on Redis, whose leases run on server time).

A missing ``redis-server`` binary makes every test marked ``redis`` *fail*, not skip: CI installs
it, and a silently skipped Redis suite would hide exactly the failures it exists to catch.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import pytest

from switchboard.store.base import ReservationStore
from switchboard.store.memory import MemoryStore
from switchboard.store.redis_store import RedisStore
from switchboard.tools.procs import RedisClusterProcess, RedisProcess, free_port

TIMEOUT_SCALE_ENV = "SWITCHBOARD_TEST_TIMEOUT_SCALE"
REDIS_BINARY = "redis-server"
MISSING_REDIS = (
    f"{REDIS_BINARY} not found on PATH: tests marked 'redis' need a real Redis 7 server "
    "(apt-get install redis-server); they fail rather than skip so CI cannot silently lose them"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--timeout-scale",
        type=float,
        default=None,
        help=f"multiply test timeouts by this factor (default: ${TIMEOUT_SCALE_ENV} or 1)",
    )


def _timeout_scale(config: pytest.Config) -> float:
    option = config.getoption("--timeout-scale")
    scale = float(option if option is not None else os.environ.get(TIMEOUT_SCALE_ENV, "1"))
    if scale <= 0:
        raise pytest.UsageError(f"timeout scale must be positive, got {scale}")
    return scale


@pytest.fixture(scope="session")
def timeout_scale(pytestconfig: pytest.Config) -> float:
    """Factor for every wall-clock bound in tests (slow machines raise it)."""
    return _timeout_scale(pytestconfig)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Covers redis-marked tests that never request a server fixture, too.
    if item.get_closest_marker("redis") is not None and shutil.which(REDIS_BINARY) is None:
        pytest.fail(MISSING_REDIS, pytrace=False)


# --------------------------------------------------------------------------- redis-server


# The one launcher and port finder of every tool (switchboard.tools.procs), under the names
# the store tests import.
RedisServer = RedisProcess
_free_port = free_port


def _launch(
    tmp_path_factory: pytest.TempPathFactory, scale: float, extra_args: Sequence[str] = ()
) -> RedisServer:
    binary = shutil.which(REDIS_BINARY)
    if binary is None:
        pytest.fail(MISSING_REDIS, pytrace=False)
    for _ in range(3):  # the free port can be taken between probing and binding
        workdir = tmp_path_factory.mktemp("redis")
        server = RedisServer(workdir, binary=binary, scale=scale, extra_args=extra_args)
        try:
            server.start()
        except RuntimeError:
            continue
        return server
    pytest.fail("could not start redis-server on a free loopback port (3 tries)")


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, timeout_scale: float
) -> Iterator[RedisServer]:
    """The shared server; never stop or pause it (use ``own_redis_server`` for that)."""
    server = _launch(tmp_path_factory, timeout_scale)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis_server(
    tmp_path_factory: pytest.TempPathFactory, timeout_scale: float
) -> Iterator[RedisServer]:
    """A private server for one test, free to stop, restart, pause or freeze."""
    server = _launch(tmp_path_factory, timeout_scale)
    try:
        yield server
    finally:
        server.stop()


def _launch_cluster(tmp_path_factory: pytest.TempPathFactory, scale: float) -> RedisClusterProcess:
    if shutil.which(REDIS_BINARY) is None:
        pytest.fail(MISSING_REDIS, pytrace=False)
    for _ in range(3):  # a free port can be taken between probing and binding
        cluster = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster"), scale=scale)
        try:
            cluster.start()
        except (RuntimeError, subprocess.SubprocessError):
            continue
        return cluster
    pytest.fail("could not start a redis cluster on free loopback ports (3 tries)")


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory, timeout_scale: float
) -> Iterator[RedisClusterProcess]:
    """A shared 3-shard Redis Cluster (3 primaries, 3 replicas); never fail it over (use
    ``own_redis_cluster`` for that)."""
    cluster = _launch_cluster(tmp_path_factory, timeout_scale)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_redis_cluster(
    tmp_path_factory: pytest.TempPathFactory, timeout_scale: float
) -> Iterator[RedisClusterProcess]:
    """A private 3-shard cluster for one test, free to fail over or lose a primary."""
    cluster = _launch_cluster(tmp_path_factory, timeout_scale)
    try:
        yield cluster
    finally:
        cluster.stop()


def unique_namespace() -> str:
    """A namespace no other test uses, so tests sharing one server never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def namespace() -> str:
    """A fresh store namespace for this test."""
    return unique_namespace()


# --------------------------------------------------------------------------- stores


class ManualClock:
    """A clock that moves only when told to, for the memory store's lease expiry."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
async def store(
    request: pytest.FixtureRequest, manual_clock: ManualClock
) -> AsyncIterator[ReservationStore]:
    """A fresh, empty store of each kind (Redis and Redis Cluster: a unique namespace on the
    shared server or cluster)."""
    if request.param == "memory":
        yield MemoryStore(clock=manual_clock)
        return
    fixture = "redis_cluster" if request.param == "redis-cluster" else "redis_server"
    server: RedisServer | RedisClusterProcess = request.getfixturevalue(fixture)
    redis_store = RedisStore.from_url(server.url, namespace=unique_namespace())
    try:
        yield redis_store
    finally:
        await redis_store.close()


@pytest.fixture
def advance(
    store: ReservationStore, manual_clock: ManualClock
) -> Callable[[float], Awaitable[None]]:
    """``await advance(s)``: let ``s`` seconds pass for ``store``'s leases."""

    async def _advance(seconds: float) -> None:
        if isinstance(store, MemoryStore):
            manual_clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)  # Redis leases run on the server's clock

    return _advance
