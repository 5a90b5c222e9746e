"""``NodeAgent``: the node side of contract §1 over one WebSocket, kept alive across restarts.

Life of an agent::

    connect ─► node_register ─► node_register_ack ─► heartbeat now, then every interval
       ▲                                                  │ job_assign → job_ack, job_started,
       │ backoff + jitter                                 │   [asr_partial…], job_result
       └──────────── connection lost ◄────────────────────┤ job_cancel → task cancelled, no result
                                                          ▼
                                   drain(): heartbeat with nothing ready, finish jobs, close

Draining.  The contract has no message by which a node says "I am leaving"; the operator's
``POST /nodes/{id}/drain`` is the scheduler's own.  So the agent drains with what §1 gives it: a
heartbeat whose ``capability_by_type`` shows no service ready.  The scheduler then marks it
``degraded`` and sends it no new job, while its running jobs still finish and are answered.
The agent keeps heartbeating (still "nothing ready") so it is not declared offline, which would
make the scheduler retry the very jobs it is finishing.

Capacity.  The agent runs at most ``max_concurrency`` jobs.  The scheduler never sends more
(it reserves a slot per job), but a node must not trust that: a ``job_assign`` beyond capacity
is answered at once with ``job_result success: false``, code ``NODE_BUSY``, and never runs.

Jobs are keyed by ``job_id``: ``job_cancel`` names no attempt, and a new attempt of a job this
node already runs makes the older one obsolete (its result would be ignored), so it is
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from switchboard.agent import wire
from switchboard.agent.backends import Backend, BackendError, Job
from switchboard.agent.backoff import Backoff
from switchboard.agent.resources import ResourceSampler, hardware, nvml_reader, platform_name
from switchboard.client.urls import DEFAULT_URL, endpoint
from switchboard.protocol.codes import ErrorCode

log = logging.getLogger("switchboard.agent")

NODE_BUSY: Final = "NODE_BUSY"
INVALID_AUDIO: Final = "INVALID_AUDIO"
SERVICES: Final = ("asr", "nmt", "tts")
# Registration refusals that no retry can cure: give up instead of looping forever.
_FATAL_CODES: Final = frozenset({ErrorCode.UNAUTHORIZED, ErrorCode.INVALID_MESSAGE})
_SEND_ERRORS: Final = (ConnectionError, RuntimeError, aiohttp.ClientError)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """How a node connects and what it announces (``switchboard node`` flags)."""

    url: str = DEFAULT_URL
    # More schedulers to try, round-robin after ``url``, when a connection is lost or refused
    # (instances of one cluster: docs/scale-out.md).
    more_urls: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = (("en", "de"),)
    services: tuple[str, ...] = SERVICES
    max_concurrency: int = 4
    node_id: str | None = None
    token: str | None = field(default=None, repr=False)
    heartbeat_interval: float = 15.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    drain_timeout: float = 60.0
    handshake_timeout: float = 10.0
    accept_public_jobs: bool = True

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("a node needs at least one language pair")
        if not 1 <= self.max_concurrency <= 100_000:
            raise ValueError("max_concurrency must be between 1 and 100000")
        for name in ("heartbeat_interval", "reconnect_initial", "handshake_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than 0")
        if self.reconnect_max < self.reconnect_initial or self.drain_timeout < 0:
            raise ValueError("reconnect_max must be >= reconnect_initial, drain_timeout >= 0")
        for url in self.urls:
            endpoint(url, "/ws/node")  # raises ValueError for an unusable URL

    @property
    def urls(self) -> tuple[str, ...]:
        """Every scheduler, in the order they are tried."""
        return (self.url, *self.more_urls)


class _Outcome(enum.Enum):
    RETRY = "retry"  # the connection ended: reconnect after a backoff
    DONE = "done"  # drained (or asked to stop): exit
    FATAL = "fatal"  # refused for good (wrong token …): exit non-zero


class _Link:
    """One live connection: sends never raise, a lost socket just drops the frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, node_id: str) -> None:
        self.ws = ws
        self.node_id = node_id

    async def send(self, frame: bytes) -> bool:
        if self.ws.closed:
            return False
        try:
            await self.ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
        except _SEND_ERRORS:
            return False
        return True


class _Sink:
    """A job's :class:`PartialSink`: partials become ``asr_partial`` on the job's link."""

    def __init__(self, link: _Link, job: Job) -> None:
        self._link = link
        self._job = job

    async def emit(self, text: str, *, is_final: bool = False) -> None:
        await self._link.send(
            wire.asr_partial(self._job, self._link.node_id, text, is_final=is_final)
        )


@dataclass(slots=True)
class AgentStats:
    """Counters of one agent's life (all connections)."""

    accepted: int = 0  # job_assign taken and started
    refused: int = 0  # answered NODE_BUSY (or unreadable) without running
    answered: int = 0  # job_result sent after running
    cancelled: int = 0  # stopped by job_cancel, a newer attempt, or a lost connection


@dataclass(slots=True)
class _Running:
    job: Job
    task: asyncio.Task[None]


class NodeAgent:
    """Runs ``backend`` behind one scheduler connection until :meth:`drain`."""

    def __init__(
        self,
        config: AgentConfig,
        backend: Backend,
        *,
        on_registered: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.node_id: str | None = config.node_id
        self.registrations = 0
        self.stats = AgentStats()
        self.peak_running = 0
        self.abandoned = 0  # jobs cut short by a lost connection or the drain timeout
        self._urls = tuple(endpoint(url, "/ws/node") for url in config.urls)
        self._at = 0  # the scheduler of the current (or next) connection
        self._on_registered = on_registered
        self._rng = rng
        self._jobs: dict[str, _Running] = {}
        self._draining = asyncio.Event()
        self._registered = asyncio.Event()
        self._sampler: ResourceSampler | None = None
        self._ident: wire.Identity | None = None

    # --- public -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The scheduler of the current (or next) connection, as configured."""
        return self.config.urls[self._at]

    @property
    def _url(self) -> str:
        return self._urls[self._at]

    @property
    def running_jobs(self) -> int:
        return len(self._jobs)

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def drain(self) -> None:
        """Stop taking work, finish running jobs, then make :meth:`run` return (SIGTERM)."""
        if not self._draining.is_set():
            log.info("drain requested with %d job(s) running", len(self._jobs))
        self._draining.set()

    async def wait_registered(self) -> str:
        """The node_id, once the current connection is registered."""
        await self._registered.wait()
        assert self.node_id is not None
        return self.node_id

    async def run(self) -> int:
        """Connect, serve, reconnect as needed, until drained; the process exit status."""
        self._sampler = ResourceSampler(nvml_reader())
        await self.backend.start()
        self._ident = wire.Identity(
            pairs=self.config.pairs,
            services=self.config.services,
            max_concurrency=self.config.max_concurrency,
            backend_name=self.backend.name,
            streams_partials=self.backend.streams_partials,
            hardware=hardware(self._sampler.gpu),
            platform=platform_name(),
            accept_public_jobs=self.config.accept_public_jobs,
        )
        try:
            return await self._run_connections()
        finally:
            await self.backend.close()

    # --- connections ------------------------------------------------------------------------

    async def _run_connections(self) -> int:
        backoff = Backoff(
            initial=self.config.reconnect_initial,
            maximum=self.config.reconnect_max,
            rng=self._rng,
        )
        while not self._draining.is_set():
            outcome = await self._connect_once(backoff)
            if outcome is _Outcome.FATAL:
                return 1
            if outcome is _Outcome.DONE:
                break
            # Lost or refused here (a dead instance, or NODE_ID_CONFLICT while the cluster
            # still counts the node as a dead instance's): the next scheduler gets the next try.
            self._at = (self._at + 1) % len(self._urls)
            delay = backoff.next_delay()
            log.info("reconnecting to %s in %.2fs (attempt %d)", self._url, delay, backoff.failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._draining.wait(), delay)
        return 1 if self.abandoned else 0

    async def _connect_once(self, backoff: Backoff) -> _Outcome:
        timeout = aiohttp.ClientWSTimeout(ws_close=5.0)
        # The session's total timeout bounds the HTTP upgrade only, not the socket's life: a
        # scheduler that accepts TCP but never answers must not hang the agent.
        limit = aiohttp.ClientTimeout(total=self.config.handshake_timeout)
        async with aiohttp.ClientSession(timeout=limit) as http:
            try:
                ws = await http.ws_connect(
                    self._url,
                    autoping=True,
                    max_msg_size=0,
                    timeout=timeout,
                    compress=0,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("cannot connect to %s: %s", self._url, exc or type(exc).__name__)
                return _Outcome.RETRY
            async with ws:
                refused = await self._register(ws)
                if refused is not None:
                    return refused
                backoff.reset()
                assert self.node_id is not None
                return await self._serve(_Link(ws, self.node_id))

    async def _register(self, ws: aiohttp.ClientWebSocketResponse) -> _Outcome | None:
        """Send ``node_register`` and read the answer; ``None`` once registered."""
        assert self._ident is not None
        frame = wire.register(self._ident, node_id=self.node_id, token=self.config.token)
        try:
            await ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
            message = await ws.receive(timeout=self.config.handshake_timeout)
        except (*_SEND_ERRORS, TimeoutError) as exc:
            log.warning("registration with %s failed: %s", self._url, exc or type(exc).__name__)
            return _Outcome.RETRY
        if message.type is not aiohttp.WSMsgType.TEXT:
            log.warning("scheduler closed the connection during registration")
            return _Outcome.RETRY
        try:
            answer, _ = wire.decode(message.data)
        except wire.BadFrame as exc:
            log.warning("unreadable registration answer: %s", exc)
            return _Outcome.RETRY
        return self._registration_answer(answer)

    def _registration_answer(self, answer: wire.Inbound) -> _Outcome | None:
        if isinstance(answer, wire.RegisterAck):
            self.node_id = answer.node_id  # kept: a reconnect re-registers under the same id
            self.registrations += 1
            self._registered.set()
            log.info("registered with %s as %s", self._url, self.node_id)
            if self._on_registered is not None:
                self._on_registered(self.node_id)
            return None
        if isinstance(answer, wire.ErrorFrame):
            if answer.code in _FATAL_CODES:
                log.error("registration refused: %s: %s", answer.code, answer.message)
                return _Outcome.FATAL
            # NODE_ID_CONFLICT: the scheduler has not yet noticed our previous socket died.
            log.warning("registration refused: %s: %s (will retry)", answer.code, answer.message)
            return _Outcome.RETRY
        log.warning("unexpected registration answer: %r", answer)
        return _Outcome.RETRY

    async def _serve(self, link: _Link) -> _Outcome:
        """Heartbeat and take jobs until the socket closes or a drain completes."""
        await self._heartbeat(link)  # "registering" until the first heartbeat (§1 "Status")
        beats = asyncio.create_task(self._heartbeats(link), name="agent-heartbeats")
        reader = asyncio.create_task(self._read(link), name="agent-reader")
        drain = asyncio.create_task(self._draining.wait(), name="agent-drain")
        try:
            await asyncio.wait({reader, drain}, return_when=asyncio.FIRST_COMPLETED)
            if self._draining.is_set():
                await self._finish_draining(link, reader)
                return _Outcome.DONE
            log.warning("connection to %s lost", self._url)
            return _Outcome.RETRY
        finally:
            self._registered.clear()
            for task in (beats, reader, drain):
                task.cancel()
            await asyncio.gather(beats, reader, drain, return_exceptions=True)
            # Results can only go to the connection that assigned the job; the scheduler has
            # already failed these over, so finishing them would be wasted work.
            await self._cancel_all("connection closed")

    async def _finish_draining(self, link: _Link, reader: asyncio.Task[None]) -> None:
        await self._heartbeat(link)  # nothing ready: the scheduler stops sending work
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while self._jobs and not reader.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("drain timeout: abandoning %d job(s)", len(self._jobs))
                break
            tasks = {running.task for running in self._jobs.values()}
            await asyncio.wait(
                {*tasks, reader}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        if reader.done() and self._jobs:
            log.warning("connection lost while draining %d job(s)", len(self._jobs))
        self.abandoned += len(self._jobs)
        log.info("drained: closing the connection")
        with contextlib.suppress(*_SEND_ERRORS):
            await link.ws.close()

    # --- heartbeats -------------------------------------------------------------------------

    async def _heartbeats(self, link: _Link) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            await self._heartbeat(link)

    async def _heartbeat(self, link: _Link) -> None:
        assert self._sampler is not None and self._ident is not None
        usage = self._sampler.sample()
        frame = wire.heartbeat(
            self._ident,
            node_id=link.node_id,
            cpu_percent=usage.cpu_percent,
            mem_percent=usage.mem_percent,
            gpu_percent=usage.gpu_percent,
            gpu_mem_percent=usage.gpu_mem_percent,
            running_jobs=len(self._jobs),
            ready=not self._draining.is_set(),
        )
        await link.send(frame)

    # --- frames from the scheduler ----------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        async for message in link.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                await self._on_frame(link, message.data)
            elif message.type is aiohttp.WSMsgType.ERROR:
                log.warning("socket error: %s", link.ws.exception())
                return

    async def _on_frame(self, link: _Link, data: Any) -> None:
        try:
            frame, raw = wire.decode(data)
        except wire.BadFrame as exc:
            await self._refuse_unreadable(link, exc, code=ErrorCode.INVALID_MESSAGE)
            return
        if isinstance(frame, wire.JobAssign):
            await self._on_assign(link, frame, raw)
        elif isinstance(frame, wire.JobCancel):
            self._cancel(frame.job_id, frame.reason or "job_cancel")
        elif isinstance(frame, wire.ErrorFrame):
            log.warning("scheduler reports %s: %s", frame.code, frame.message)
        else:
            log.debug("ignoring frame %r", frame)

    async def _refuse_unreadable(self, link: _Link, exc: wire.BadFrame, *, code: str) -> None:
        """Answer a job we cannot run at once, so its client is not left waiting for the
        job timeout; a frame without readable ids gets ``node_error`` instead."""
        ref = wire.JobRef.from_raw(exc.job) if exc.job is not None else None
        log.warning("unusable frame from the scheduler: %s", exc)
        if ref is not None:
            self.stats.refused += 1
            await link.send(wire.job_failure(ref, link.node_id, code=code, message=str(exc)))
            return
        await link.send(wire.encode_node_error(link.node_id, ErrorCode.INVALID_MESSAGE, str(exc)))

    async def _on_assign(self, link: _Link, assign: wire.JobAssign, raw: dict[str, Any]) -> None:
        try:
            job = wire.to_job(assign, raw)
        except wire.BadFrame as exc:
            await self._refuse_unreadable(link, exc, code=INVALID_AUDIO)
            return
        self._cancel(job.job_id, f"superseded by attempt {job.attempt_id}")
        if len(self._jobs) >= self.config.max_concurrency:
            log.warning("job %s refused: %d running (NODE_BUSY)", job.job_id, len(self._jobs))
            self.stats.refused += 1
            await link.send(
                wire.job_failure(
                    wire.JobRef.of(job),
                    link.node_id,
                    code=NODE_BUSY,
                    message=f"node runs {len(self._jobs)} of {self.config.max_concurrency} jobs",
                )
            )
            return
        task = asyncio.create_task(self._execute(link, job), name=f"job-{job.job_id}")
        self._jobs[job.job_id] = _Running(job, task)
        self.stats.accepted += 1
        self.peak_running = max(self.peak_running, len(self._jobs))

    def _cancel(self, job_id: str, reason: str) -> None:
        running = self._jobs.pop(job_id, None)
        if running is not None:
            log.info("job %s cancelled (%s)", job_id, reason)
            self.stats.cancelled += 1
            running.task.cancel()

    async def _cancel_all(self, reason: str) -> None:
        tasks = [running.task for running in self._jobs.values()]
        for job_id in list(self._jobs):
            self._cancel(job_id, reason)
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- running one job --------------------------------------------------------------------

    async def _execute(self, link: _Link, job: Job) -> None:
        me = asyncio.current_task()
        started = time.perf_counter()
        try:
            await link.send(wire.job_ack(job, link.node_id))
            await link.send(wire.job_started(job, link.node_id))
            frame = await self._outcome(link, job, started)
        finally:
            # Free the slot before the result leaves: the scheduler may assign the next job
            # the moment it reads the result, and that job must find the slot free.
            current = self._jobs.get(job.job_id)
            if current is not None and current.task is me:
                del self._jobs[job.job_id]
        if await link.send(frame):
            self.stats.answered += 1

    async def _outcome(self, link: _Link, job: Job, started: float) -> bytes:
        """The ``job_result`` frame for one run of the backend (cancellation propagates)."""
        ref = wire.JobRef.of(job)
        try:
            result = await self.backend.run(job, _Sink(link, job))
        except BackendError as exc:
            return wire.job_failure(
                ref,
                link.node_id,
                code=exc.code,
                message=exc.message,
                details=exc.details,
                processing_ms=_ms_since(started),
            )
        except Exception as exc:  # a backend bug costs one answer, never the agent
            log.exception("backend %s failed job %s", self.backend.name, job.job_id)
            return wire.job_failure(
                ref,
                link.node_id,
                code=ErrorCode.NODE_ERROR,
                message=f"{type(exc).__name__}: {exc}",
                processing_ms=_ms_since(started),
            )
        return wire.job_success(ref, link.node_id, result, processing_ms=_ms_since(started))


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
