"""Fixtures of the end-to-end suite: real scheduler processes, fake nodes and sessions.

Reuses ``timeout_scale``, ``redis_server``, ``own_redis_server`` and ``namespace`` from
``tests/conftest.py``.  A failing test's report gets every server's stdout and stderr.

Servers: a test asks for ``server`` (one scheduler for each store of ``store_flags``, with the
options of its ``@pytest.mark.server(...)`` marker) or calls ``server_factory(*flags, **options)``
for anything else.  Starting a scheduler costs ~0.6 s of imports, so while a test runs, the
server the *next* test will ask for (known from its marker and store parameter) is started in the
background; a test gets a fresh process either way, never one another test has used.

``server`` runs every test on both reservation stores; ``@MEMORY_ONLY`` tests are the
store-independent ones (language codes, eligibility filters, session bookkeeping, node identity,
tokens, pools), whose behaviour is decided before the store is ever asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.e2e import harness
from tests.e2e.harness import FakeNode, FakeSession, NodeBehaviour, Pair, ServerProcess

# Server timings used unless a test says otherwise (seconds, scaled): short enough for a fast
# suite, long enough that nothing fires by accident.
DEFAULTS: dict[str, Any] = {
    "heartbeat_interval": 1.0,
    "job_timeout": 5.0,
    "pending_timeout": 1.0,
    # Above the product's default (0.02 s), and scaled like the times: a loaded test machine's
    # stalls are not what these tests are about (test_overload.py forces overload on purpose).
    "overload_loop_lag": 0.25,
}
SCALED_OPTIONS = frozenset(
    {
        "heartbeat_interval",
        "job_timeout",
        "pending_timeout",
        "handshake_timeout",
        "reservation_lease",
        "room_idle",
        "overload_loop_lag",
    }
)
NAMESPACE_FLAG = "--redis-namespace"
LOOKAHEAD = 1  # servers started ahead: the next test's (more only competes for CPU)


def server_args(*flags: str, **options: Any) -> list[str]:
    """Command-line flags: ``flags`` as given, then ``options`` (over ``DEFAULTS``) spelled
    ``--kebab-case``; times scaled, ``True`` a bare switch, ``None`` left out."""
    args = list(flags)
    for key, value in {**DEFAULTS, **options}.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            args.append(flag)
            continue
        if key in SCALED_OPTIONS:
            value = harness.scaled(float(value))
        args += [flag, str(value)]
    return args


def _option(args: Sequence[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def _without_namespace(flags: Sequence[str]) -> list[str]:
    out = list(flags)
    if NAMESPACE_FLAG in out:
        at = out.index(NAMESPACE_FLAG)
        del out[at : at + 2]
    return out


class ServerPool:
    """Starts servers (ahead of time when asked), hands each out once, and reaps them."""

    def __init__(self) -> None:
        self.logdir = Path(tempfile.mkdtemp(prefix="switchboard-e2e-"))
        self.redis_url: str | None = None  # known once the shared redis-server is up
        self._executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="e2e-server")
        self._spares: list[_Spare] = []
        self.order: dict[str, int] = {}  # test node id → its place in the run
        self._lock = threading.Lock()

    def _launch(self, args: Sequence[str]) -> ServerProcess:
        """Start a server; with Redis but no namespace given, a namespace of its own."""
        args = list(args)
        if "--redis-url" in args and NAMESPACE_FLAG not in args:
            args += [NAMESPACE_FLAG, f"e2e-{uuid.uuid4().hex[:12]}"]
        admin = _option(args, "--admin-token")
        interval = _option(args, "--heartbeat-interval")
        server = ServerProcess(
            args,
            log_path=self.logdir / f"server-{uuid.uuid4().hex[:8]}.log",
            admin_token=admin,
            heartbeat_interval=float(interval) if interval else 15.0,
        )
        try:
            server.start()
        except BaseException:
            server.kill()
            raise
        return server

    def plan(self, planned: dict[str, list[str]]) -> None:
        """Have a server starting for each test in ``planned`` (node id → flags); spares meant
        for any other test were not taken and are stopped."""
        with self._lock:
            for spare in [s for s in self._spares if s.target not in planned]:
                self._spares.remove(spare)
                self._discard(spare.future)
            have = {s.target for s in self._spares}
            for target, args in planned.items():
                if target not in have:
                    future = self._executor.submit(self._launch, args)
                    self._spares.append(_Spare(target, tuple(args), future))

    async def acquire(self, args: Sequence[str], *, target: str) -> ServerProcess:
        """A started server for ``args``: a spare if one was prestarted, else a new one."""
        key = tuple(args)
        with self._lock:
            matching = [s for s in self._spares if s.key == key]
            matching.sort(key=lambda s: s.target != target)  # this test's own spare first
            if matching:
                self._spares.remove(matching[0])
        if matching:
            with contextlib.suppress(Exception):
                return await asyncio.wrap_future(matching[0].future)
        return await asyncio.to_thread(self._launch, args)

    def retire(self, server: ServerProcess) -> None:
        """SIGTERM now; wait for the exit (SIGKILL after a timeout) in the background."""
        self._executor.submit(server.terminate)

    def _discard(self, spare: Future[ServerProcess]) -> None:
        def stop(done: Future[ServerProcess]) -> None:
            if not done.cancelled() and done.exception() is None:
                self.retire(done.result())

        spare.add_done_callback(stop)

    def close(self) -> None:
        with self._lock:
            for spare in self._spares:
                self._discard(spare.future)
            self._spares.clear()
        self._executor.shutdown(wait=True)
        shutil.rmtree(self.logdir, ignore_errors=True)


@dataclass(frozen=True)
class _Spare:
    target: str  # node id of the test it was started for
    key: tuple[str, ...]
    future: Future[ServerProcess]


MEMORY_ONLY = pytest.mark.parametrize("store_flags", ["memory"], indirect=True)
"""For store-independent tests: the ``server`` fixture runs on the memory store only."""

POOL_KEY = pytest.StashKey[ServerPool]()
SERVERS = pytest.StashKey[list[ServerProcess]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server(**options): options of the test's `server` fixture (see conftest)"
    )
    config.stash[POOL_KEY] = ServerPool()


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.close()


@pytest.fixture(autouse=True, scope="session")
def _scale_waits(timeout_scale: float) -> None:
    """Every harness wait uses the suite's timeout scale."""
    harness.SCALE = timeout_scale


@pytest.fixture(scope="session")
def server_pool(pytestconfig: pytest.Config) -> ServerPool:
    return pytestconfig.stash[POOL_KEY]


def _planned_args(item: pytest.Item, pool: ServerPool) -> list[str] | None:
    """The flags ``item``'s ``server`` fixture will use, when they can be known in advance."""
    if "server" not in getattr(item, "fixturenames", ()):
        return None
    callspec = getattr(item, "callspec", None)
    store = callspec.params.get("store_flags", "memory") if callspec else "memory"
    if store == "redis" and pool.redis_url is None:
        return None
    marker = item.get_closest_marker("server")
    return server_args(*_store_base(store, pool), **(marker.kwargs if marker else {}))


def _store_base(store: str, pool: ServerPool) -> list[str]:
    if store == "memory":
        return ["--store", "memory"]
    assert pool.redis_url is not None
    return ["--redis-url", pool.redis_url]


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[POOL_KEY].order = {item.nodeid: n for n, item in enumerate(session.items)}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None]:
    """Before each test, make sure its server and the next one's are starting."""
    pool = item.config.stash[POOL_KEY]
    items = item.session.items
    at = pool.order.get(item.nodeid)
    planned: dict[str, list[str]] = {}
    for upcoming in items[at : at + 1 + LOOKAHEAD] if at is not None else [item]:
        args = _planned_args(upcoming, pool)
        if args is not None:
            planned[upcoming.nodeid] = args
    pool.plan(planned)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        servers: list[ServerProcess] = item.stash.get(SERVERS, [])
        for n, server in enumerate(servers):
            report.sections.append((f"switchboard server {n}", server.output()))
    return report


class ServerFactory(Protocol):
    def __call__(self, *flags: str, **options: Any) -> Awaitable[ServerProcess]: ...


@pytest.fixture
async def server_factory(
    request: pytest.FixtureRequest, server_pool: ServerPool
) -> AsyncIterator[ServerFactory]:
    """``await server_factory(*flags, job_timeout=0.5, max_attempts=2, …)``: a started server.

    Keyword options become ``--kebab-case`` flags; times are scaled; ``DEFAULTS`` fill in the
    timings a test does not give. Every server is stopped (SIGTERM, then SIGKILL) afterwards.
    """
    started: list[ServerProcess] = []
    request.node.stash[SERVERS] = started

    async def start(*flags: str, **options: Any) -> ServerProcess:
        args = server_args(*flags, **options)
        server = await server_pool.acquire(args, target=request.node.nodeid)
        started.append(server)
        return server

    yield start
    for server in started:
        server_pool.retire(server)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_flags(request: pytest.FixtureRequest, server_pool: ServerPool) -> list[str]:
    """Flags for each reservation store: the embedded one, and Redis with its own namespace."""
    if request.param == "memory":
        return ["--store", "memory"]
    redis_url: str = request.getfixturevalue("redis_server").url
    server_pool.redis_url = redis_url
    namespace: str = request.getfixturevalue("namespace")
    return ["--redis-url", redis_url, NAMESPACE_FLAG, namespace]


@pytest.fixture
async def server(
    request: pytest.FixtureRequest, server_factory: ServerFactory, store_flags: list[str]
) -> ServerProcess:
    """A scheduler on each store, with the options of the test's ``server`` marker (on Redis,
    with a namespace of its own: it may have been started before this test began)."""
    marker = request.node.get_closest_marker("server")
    flags = _without_namespace(store_flags)
    return await server_factory(*flags, **(marker.kwargs if marker else {}))


class Peers:
    """Opens fake nodes and sessions against a server and closes them all at teardown."""

    def __init__(self) -> None:
        self._open: list[FakeNode | FakeSession] = []

    async def raw_node(self, server: ServerProcess, **kwargs: Any) -> FakeNode:
        """A connected node that has sent nothing yet."""
        node = FakeNode(server.ws_url + "/ws/node", **kwargs)
        self._open.append(node)
        await node.connect()
        return node

    async def node(
        self,
        server: ServerProcess,
        *,
        pairs: list[Pair] | None = None,
        ready: bool = True,
        heartbeats: bool = True,
        behaviour: NodeBehaviour | None = None,
        **kwargs: Any,
    ) -> FakeNode:
        """A registered node. ``ready``: heartbeat once and wait until the operator API (the
        snapshot dispatch reads) shows it past ``registering``; ``heartbeats``: keep
        heartbeating at a quarter of the server's interval."""
        node = await self.raw_node(
            server, pairs=pairs or [("en", "de")], behaviour=behaviour, **kwargs
        )
        await node.register()
        assert node.node_id is not None
        if ready:
            await node.heartbeat()
            if heartbeats:
                node.start_heartbeats(server.heartbeat_interval / 4)
            expected = "ready" if any(node.services.values()) else "degraded"
            await server.wait_node_status(node.node_id, expected)
        return node

    async def raw_session(self, server: ServerProcess, **kwargs: Any) -> FakeSession:
        session = FakeSession(server.ws_url + "/ws/session", **kwargs)
        self._open.append(session)
        await session.connect()
        return session

    async def session(self, server: ServerProcess, **kwargs: Any) -> FakeSession:
        """An open session (``session_init`` acknowledged)."""
        token = kwargs.pop("token", None)
        session = await self.raw_session(server, **kwargs)
        await session.init(**({"token": token} if token is not None else {}))
        return session

    async def close_all(self) -> None:
        await asyncio.gather(*(peer.close() for peer in self._open), return_exceptions=True)


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    registry = Peers()
    yield registry
    await registry.close_all()
