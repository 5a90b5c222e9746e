"""Live peers for the agent, client and demo tests (real processes, real sockets).

- scheduler processes come from the e2e harness (:class:`ServerProcess`, ``--port 0``);
- node agents run either in this process (:func:`running_agent`, so a test backend can be
  inspected) or as ``python -m switchboard node`` processes (:class:`AgentProcess`);
- :class:`ProbeBackend` is a backend that records what the agent made it do;
- :class:`HandScheduler` is a bare ``/ws/node`` endpoint that a test drives frame by frame:
  the only way to make a node face more jobs than its capacity, since the real scheduler never
  sends them.

Every wait is scaled by ``SWITCHBOARD_TEST_TIMEOUT_SCALE`` (:func:`scaled`).  Of the e2e
harness only :class:`ServerProcess` is used (its start, stop, URLs and operator-API waits,
called with positional arguments): the rest of it belongs to its own suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import WSMsgType, web

from switchboard.agent import AgentConfig, Backend, BackendError, Job, NodeAgent, Result
from switchboard.agent.backends import PartialSink
from switchboard.tools import procs as tools_procs
from tests.e2e import harness
from tests.e2e.harness import ServerProcess

JSON = dict[str, Any]
SCHEDULER_DEFAULTS: dict[str, float] = {
    "heartbeat_interval": 1.0,
    "job_timeout": 5.0,
    "pending_timeout": 1.0,
    "overload_loop_lag": 0.25,  # above the product's 0.02, and scaled: a loaded machine's stalls
}
_TIMES = frozenset({"heartbeat_interval", "job_timeout", "pending_timeout", "overload_loop_lag"})
_SERVERS = pytest.StashKey[list[ServerProcess]]()
_AGENTS = pytest.StashKey[list["AgentProcess"]]()


SCALE = 1.0  # set from the ``timeout_scale`` fixture


def scaled(seconds: float) -> float:
    """``seconds`` stretched by the suite's timeout scale."""
    return seconds * SCALE


async def eventually(
    probe: Callable[[], Awaitable[bool]],
    what: str,
    *,
    limit: float = 5.0,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``probe`` every 20 ms until it holds; fail after ``limit`` seconds (scaled)."""
    deadline = time.monotonic() + scaled(limit)
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {scaled(limit):.1f}s for {what}. {detail()}")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True, scope="session")
def _harness_scale(timeout_scale: float) -> None:
    """Our waits and the harness's own (server start-up) use the suite's timeout scale."""
    global SCALE
    SCALE = timeout_scale
    harness.SCALE = timeout_scale


def scheduler_args(*flags: str, **options: Any) -> tuple[list[str], float]:
    """``serve`` flags from keyword options (times scaled) and the heartbeat interval."""
    merged = {**SCHEDULER_DEFAULTS, **options}
    args = list(flags)
    for key, value in merged.items():
        if key in _TIMES:
            value = scaled(float(value))
        args += ["--" + key.replace("_", "-"), str(value)]
    return args, scaled(float(merged["heartbeat_interval"]))


class SchedulerFactory(Protocol):
    def __call__(self, *flags: str, **options: Any) -> Awaitable[ServerProcess]: ...


@pytest.fixture
async def scheduler_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SchedulerFactory]:
    """``await scheduler_factory(*flags, pending_timeout=0.5, …)``: a started scheduler,
    stopped at teardown; its output is added to a failing test's report."""
    started: list[ServerProcess] = []
    request.node.stash[_SERVERS] = started

    async def start(*flags: str, **options: Any) -> ServerProcess:
        args, heartbeat = scheduler_args(*flags, **options)
        server = ServerProcess(
            args,
            log_path=tmp_path / f"scheduler-{len(started)}.log",
            heartbeat_interval=heartbeat,
        )
        started.append(server)
        await asyncio.to_thread(server.start)
        return server

    yield start
    await asyncio.gather(*(asyncio.to_thread(s.terminate) for s in started))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_flags(request: pytest.FixtureRequest) -> list[str]:
    """``serve`` flags for each reservation store (Redis: a namespace of its own)."""
    if request.param == "memory":
        return ["--store", "memory"]
    server = request.getfixturevalue("redis_server")
    namespace: str = request.getfixturevalue("namespace")
    return ["--redis-url", server.url, "--redis-namespace", namespace]


AgentFactory = Callable[..., "AgentProcess"]


@pytest.fixture
def agent_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AgentFactory]:
    """``agent_process(url, *flags)``: a started ``switchboard node`` process, killed at
    teardown if the test left it running."""
    started: list[AgentProcess] = []
    request.node.stash[_AGENTS] = started

    def start(url: str, *flags: str) -> AgentProcess:
        agent = AgentProcess(url, *flags, log_path=tmp_path / f"agent-{len(started)}.log")
        started.append(agent)
        agent.start()
        return agent

    yield start
    for agent in started:
        agent.kill()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for n, server in enumerate(item.stash.get(_SERVERS, [])):
            report.sections.append((f"scheduler {n}", server.output()))
        for n, agent in enumerate(item.stash.get(_AGENTS, [])):
            report.sections.append((f"agent process {n}", agent.output()))
    return report


# --------------------------------------------------------------------------- agents


class AgentProcess(tools_procs.AgentProcess):
    """``python -m switchboard node …`` as a real process (the tools' launcher), with the
    suite's timeout scale."""

    def __init__(self, url: str, *flags: str, log_path: Path) -> None:
        super().__init__(["--url", url, *flags], log_path=log_path)

    async def wait_registered(self, count: int = 1, limit: float = 10.0) -> str:
        """The node id once the agent has registered ``count`` times."""

        async def probe() -> bool:
            return len(self.registrations) >= count

        await eventually(probe, f"{count} registration(s)", limit=limit, detail=self.output)
        return self.registrations[-1]

    async def wait_exit(self, limit: float = 10.0) -> int:
        status = await asyncio.to_thread(self.wait, scaled(limit))
        if status is None:
            raise AssertionError(f"agent still running after {scaled(limit):.1f}s")
        return status


@contextlib.asynccontextmanager
async def running_agent(url: str, backend: Backend, **config: Any) -> AsyncIterator[NodeAgent]:
    """An agent in this process, registered; drained (and awaited) on exit."""
    config.setdefault("heartbeat_interval", scaled(0.25))
    agent = NodeAgent(AgentConfig(url=url, **config), backend)
    task = asyncio.create_task(agent.run())
    registered = asyncio.ensure_future(agent.wait_registered())
    try:
        done, _ = await asyncio.wait(
            {task, registered}, timeout=scaled(5), return_when=asyncio.FIRST_COMPLETED
        )
        assert registered in done, f"agent did not register (run: {task})"
        yield agent
    finally:
        registered.cancel()
        agent.drain()
        try:
            await asyncio.wait_for(task, scaled(10))
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def ready_agent(
    stack: contextlib.AsyncExitStack, server: ServerProcess, backend: Backend, **config: Any
) -> NodeAgent:
    """A registered in-process agent that the scheduler lists as ``ready``."""
    agent = await stack.enter_async_context(running_agent(server.ws_url, backend, **config))
    assert agent.node_id is not None
    await server.wait_node_status(agent.node_id, "ready")
    return agent


# --------------------------------------------------------------------------- backends


class ProbeBackend(Backend):
    """Sleeps ``delay`` per job; records concurrency, jobs, starts, cancellations and ends.
    ``silent``: answers every job with nothing (no text, no audio)."""

    name = "probe"

    def __init__(
        self, delay: float = 0.0, *, fail: BackendError | None = None, silent: bool = False
    ) -> None:
        self.delay = delay
        self.fail = fail
        self.silent = silent
        self.jobs: list[Job] = []
        self.running = 0
        self.peak = 0
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []

    async def run(self, job: Job, partials: PartialSink) -> Result:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(job.job_id)
        self.jobs.append(job)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.append(job.job_id)
            raise
        finally:
            self.running -= 1
        if self.fail is not None:
            raise self.fail
        self.finished.append(job.job_id)
        if self.silent:
            return Result(text_asr="", text_translated="")
        index = job.utterance_index
        return Result(text_asr=f"probe {index}", text_translated=f"[{job.tgt_lang}] probe {index}")

    async def wait_started(self, count: int = 1) -> None:
        async def probe() -> bool:
            return len(self.started) >= count

        await eventually(probe, f"{count} job(s) started")


# --------------------------------------------------------------------------- hand scheduler


class HandScheduler:
    """``/ws/node`` on a real loopback socket: acknowledges ``node_register`` and records
    every frame; the test sends everything else itself.  ``refusals`` are ``error`` frames
    that answer the first registrations instead of the ack (then the socket is closed)."""

    def __init__(self, *, refusals: list[JSON] | None = None) -> None:
        self.refusals = list(refusals or [])
        self.connections = 0
        self.closed = False  # the node closed its last connection
        self.frames: list[JSON] = []
        self._ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws/node", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self.closed = False
        self.connections += 1
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(message.data)
            if frame.get("type") == "node_register" and self.refusals:
                await ws.send_json(self.refusals.pop(0))
                await ws.close(code=1008)
            elif frame.get("type") == "node_register":
                await ws.send_json({"type": "node_register_ack", "node_id": "hand-node-1"})
            async with self._changed:
                self.frames.append(frame)
                self._changed.notify_all()
        self.closed = True
        return ws

    async def send(self, frame: JSON) -> None:
        assert self._ws is not None, "no node connected"
        await self._ws.send_json(frame)

    def of_type(self, kind: str) -> list[JSON]:
        return [f for f in self.frames if f.get("type") == kind]

    async def wait_count(self, kind: str, count: int, limit: float = 5.0) -> list[JSON]:
        def enough() -> bool:
            return len(self.of_type(kind)) >= count

        try:
            async with asyncio.timeout(scaled(limit)), self._changed:
                await self._changed.wait_for(enough)
        except TimeoutError:
            raise AssertionError(
                f"got {len(self.of_type(kind))} of {count} {kind}: {self.frames}"
            ) from None
        return self.of_type(kind)


def assign_frame(job_id: str, *, index: int = 0, audio: str = "AAAA") -> JSON:
    """A well-formed ``job_assign`` as the scheduler writes it (contract §1)."""
    return {
        "type": "job_assign",
        "job_id": job_id,
        "attempt_id": 1,
        "session_id": "s-0000000000000001",
        "utterance_index": index,
        "src_lang": "en",
        "tgt_lang": "de",
        "pipeline": {"use_asr": True, "use_nmt": True, "use_tts": True},
        "trace_id": f"trace-{job_id}",
        "audio": audio,
        "audio_format": "pcm16",
        "sample_rate": 16000,
        "dialect": "opaque-dialect",
    }
