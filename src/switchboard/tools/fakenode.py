"""The fake GPU node every tool uses: what it says (contract §1), how it behaves, what it counts.

Three layers, so that a caller with its own socket still speaks exactly what the others speak:

- the frames (:func:`register_message`, :func:`heartbeat_message`, :func:`ack_message`,
  :func:`result_message`, :func:`partial_message`): plain dicts, nothing sent;
- :class:`Conduct`: how a node answers a ``job_assign``, changed while it runs by a fault —
  latency (fixed, jittered or the stand-in backend's lognormal model), ``job_ack`` /
  ``job_started`` first or a bare ``job_result`` as Lingua's Electron node sends, failures,
  partials, silence, lateness, readiness, heartbeats;
- :class:`FakeNode`: one node on a real socket (aiohttp) that registers under a fixed id,
  heartbeats, answers by its :class:`Conduct`, reconnects when dropped, and counts on the node
  side what it received and sent (:class:`NodeCounts`; the chaos ledger reads them).

The benchmark's load generator keeps its own transport (``bench/fakes.py``: a raw socket with
callbacks, thousands of nodes in one process on a machine the scheduler shares) but builds its
frames and draws its delays here; the e2e suite's node (``tests/e2e/harness.py``) records every
frame for assertions and builds its frames here too.

Node-side capacity: a job runs from its ``job_assign`` until the node answers it, the scheduler
cancels it, or the connection ends.  More than ``capacity`` at once is an over-capacity event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import msgspec

from switchboard.agent.pseudo import LatencyModel

SERVICES: Final = ("asr", "nmt", "tts")
STALE_MARK: Final = "STALE:"
"""Starts the translated text of an answer sent after its job was cancelled (a late node)."""
DEFAULT_ERROR: Final[Mapping[str, Any]] = {"code": "ASR_FAILED"}
DEFAULT_HARDWARE: Final[Mapping[str, Any]] = {"cpu_cores": 8, "memory_gb": 32}
DEFAULT_USAGE: Final[Mapping[str, float]] = {"cpu_percent": 10, "mem_percent": 20}

Pair = tuple[str, str]
JSON = dict[str, Any]
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_SEND_ERRORS: Final = (ConnectionError, RuntimeError, aiohttp.ClientError)


# --- frames ------------------------------------------------------------------------------------


def capabilities(services: Mapping[str, bool]) -> list[JSON]:
    return [{"type": name, "ready": ready} for name, ready in services.items()]


def all_services(ready: bool = True) -> dict[str, bool]:
    return dict.fromkeys(SERVICES, ready)


def register_message(
    node_id: str | None,
    pairs: Iterable[Pair],
    *,
    version: str,
    services: Mapping[str, bool] | None = None,
    max_concurrency: int | None = None,
    token: str | None = None,
    accept_public_jobs: bool = True,
    hardware: Mapping[str, Any] = DEFAULT_HARDWARE,
    installed_models: Sequence[JSON] = (),
    installed_services: Sequence[JSON] | None = None,
    features: Mapping[str, Any] | None = None,
    platform: str = "linux-x86_64",
    pairs_from_models: bool = False,
) -> JSON:
    """``node_register`` (contract §1).  ``pairs_from_models``: leave out
    ``language_capabilities``, so the scheduler must derive the pairs from the models."""
    pairs = list(pairs)
    message: JSON = {
        "type": "node_register",
        "version": version,
        "platform": platform,
        "hardware": dict(hardware),
        "installed_models": list(installed_models),
        "capability_by_type": capabilities(services if services is not None else all_services()),
        "features_supported": dict(features or {}),
        "accept_public_jobs": accept_public_jobs,
    }
    if installed_services is not None:
        message["installed_services"] = list(installed_services)
    if not pairs_from_models:
        message["language_capabilities"] = {
            "supported_language_pairs": [{"src": s, "tgt": t} for s, t in pairs]
        }
    if node_id is not None:
        message["node_id"] = node_id
    if max_concurrency is not None:
        message["max_concurrency"] = max_concurrency
    if token is not None:
        message["token"] = token
    return message


def heartbeat_message(
    node_id: str | None,
    *,
    running_jobs: int,
    services: Mapping[str, bool] | None = None,
    usage: Mapping[str, float] = DEFAULT_USAGE,
) -> JSON:
    """``node_heartbeat`` with the node's running jobs and its services' readiness."""
    return {
        "type": "node_heartbeat",
        "node_id": node_id,
        "timestamp": int(time.time() * 1000),
        "resource_usage": {**usage, "running_jobs": running_jobs},
        "capability_by_type": capabilities(services if services is not None else all_services()),
    }


def job_ref(assign: Mapping[str, Any], node_id: str | None) -> JSON:
    """The fields that name one attempt of one job in every node → scheduler job frame."""
    return {
        "job_id": assign["job_id"],
        "attempt_id": assign["attempt_id"],
        "node_id": node_id,
        "session_id": assign["session_id"],
        "trace_id": assign["trace_id"],
    }


def ack_message(assign: Mapping[str, Any], node_id: str | None, kind: str = "job_ack") -> JSON:
    """``job_ack`` (or, with ``kind="job_started"``, ``job_started``) for ``assign``."""
    return {"type": kind, **job_ref(assign, node_id)}


def result_message(
    assign: Mapping[str, Any],
    node_id: str | None,
    *,
    success: bool = True,
    text_asr: str = "",
    text_translated: str = "",
    tts_audio: str = "",
    error: Mapping[str, Any] | None = None,
    **extra: Any,
) -> JSON:
    """``job_result`` for ``assign``: the answer's texts and audio, or ``success: false`` with
    ``error`` (``ASR_FAILED`` unless given).  ``extra`` fields are added as they are."""
    message: JSON = {
        "type": "job_result",
        **job_ref(assign, node_id),
        "utterance_index": assign.get("utterance_index", 0),
        "success": success,
    }
    if success:
        message |= {
            "text_asr": text_asr,
            "text_translated": text_translated,
            "tts_audio": tts_audio,
            "tts_format": "pcm16",
        }
    else:
        message["error"] = dict(error if error is not None else DEFAULT_ERROR)
    message.update(extra)
    return message


def partial_message(
    assign: Mapping[str, Any], node_id: str | None, text: str, *, final: bool = False
) -> JSON:
    """``asr_partial`` for ``assign`` (relayed to the session as ``partial_result``)."""
    return {
        "type": "asr_partial",
        "job_id": assign["job_id"],
        "node_id": node_id,
        "session_id": assign["session_id"],
        "utterance_index": assign["utterance_index"],
        "text": text,
        "is_final": final,
        "trace_id": assign["trace_id"],
    }


# --- behaviour ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Conduct:
    """How a node behaves right now (a fault changes it while it runs).

    ``silent``: take every new job (ack it, if ``acks``) and never answer it.
    ``late_by``: answer every new job this many seconds after its ``job_assign``, even once
    the scheduler has cancelled it (such an answer is marked :data:`STALE_MARK`: a session
    that ever sees one proves the scheduler relayed a stale answer).
    """

    latency: float = 0.03  # median answer time, seconds
    jitter: float = 0.5  # the answer comes after latency × U[1 − jitter, 1 + jitter)
    model: LatencyModel | None = None  # draws the answer time instead of latency and jitter
    acks: bool = True  # job_ack first; False: a bare job_result, as Lingua's Electron node
    started: bool = False  # job_started after the ack
    partials: tuple[str, ...] = ()  # asr_partial texts sent before the answer
    failure_rate: float = 0.0  # the share of answers that are success: false
    error: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_ERROR))
    silent: bool = False
    late_by: float | None = None
    ready: bool = True  # the services its heartbeats report ready (a flapping node flips it)
    heartbeats: bool = True
    result_bytes: int = 0  # size of the (zero) audio in each answer

    def delay(self, rng: random.Random) -> float:
        """Seconds from ``job_assign`` to the answer."""
        if self.late_by is not None:
            return self.late_by
        if self.model is not None:
            return self.model.draw(rng)
        return self.latency * (1 - self.jitter + 2 * self.jitter * rng.random())

    def fails(self, rng: random.Random) -> bool:
        """Whether the next answer is a failure."""
        return self.failure_rate > 0 and rng.random() < self.failure_rate


@dataclass(slots=True)
class NodeCounts:
    """What a node saw and did, over all its connections."""

    assigns: int = 0
    answers: int = 0  # successful results sent in time
    failures: int = 0  # success: false sent
    stale_answers: int = 0  # results sent after the job was cancelled
    partials: int = 0
    cancels: int = 0
    over_capacity: int = 0
    peak_running: int = 0
    connections: int = 0
    received: Counter[str] = field(default_factory=Counter)  # frames by type


# --- the node on a socket ----------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    assign: JSON
    late: bool  # answered after the job timeout on purpose
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Link:
    ws: aiohttp.ClientWebSocketResponse
    running: dict[tuple[str, int], _Job] = field(default_factory=dict)
    # Late jobs the scheduler cancelled: still answered (stale) when their delay is up.
    cancelled_late: dict[tuple[str, int], _Job] = field(default_factory=dict)


class FakeNode:
    """One fake GPU node on ``url`` (``ws://host:port``); :meth:`start` until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        node_id: str,
        *,
        pairs: Sequence[Pair],
        capacity: int,
        heartbeat_every: float,
        conduct: Conduct | None = None,
        seed: int = 0,
        version: str = "fake",
    ) -> None:
        self.url = url.rstrip("/") + "/ws/node"
        self.node_id = node_id
        self.pairs = tuple(pairs)
        self.capacity = capacity
        self.heartbeat_every = heartbeat_every
        self.conduct = conduct or Conduct()
        self.version = version
        self.counts = NodeCounts()
        self.registered = asyncio.Event()
        self._rng = random.Random(seed)
        self._link: _Link | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"fake-node-{self.node_id}")

    async def stop(self) -> None:
        self._stopping = True
        link = self._link
        if link is not None:
            with contextlib.suppress(*_SEND_ERRORS, asyncio.TimeoutError):
                await asyncio.wait_for(link.ws.close(), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(*_SEND_ERRORS, OSError, asyncio.TimeoutError):
                await self._connect_once()
            self.registered.clear()
            if not self._stopping:
                await asyncio.sleep(0.1 + self._rng.random() * 0.1)

    async def _connect_once(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.ws_connect(self.url, max_msg_size=0, autoping=True) as ws,
        ):
            await ws.send_frame(_encode(self._register_message()), aiohttp.WSMsgType.TEXT)
            first = await ws.receive(timeout=5)
            if first.type is not aiohttp.WSMsgType.TEXT:
                return
            if _decode(first.data).get("type") != "node_register_ack":
                return  # NODE_ID_CONFLICT while the scheduler forgets our last socket: retry
            link = _Link(ws)
            self._link = link
            self.counts.connections += 1
            await self.heartbeat()
            self.registered.set()
            beats = asyncio.create_task(self._heartbeats(link))
            try:
                await self._read(link)
            finally:
                beats.cancel()
                self._drop(link)

    def _drop(self, link: _Link) -> None:
        """The connection ended: its jobs are void (the scheduler retries them)."""
        for job in link.running.values():
            if job.task is not None:
                job.task.cancel()
        link.running.clear()
        if self._link is link:
            self._link = None

    # --- frames out -------------------------------------------------------------------------

    def _register_message(self) -> JSON:
        return register_message(
            self.node_id,
            self.pairs,
            version=self.version,
            services=all_services(self.conduct.ready),
            max_concurrency=self.capacity,
        )

    async def _send(self, link: _Link, message: JSON) -> bool:
        if link.ws.closed:
            return False
        try:
            await link.ws.send_frame(_encode(message), aiohttp.WSMsgType.TEXT)
        except _SEND_ERRORS:
            return False
        return True

    async def heartbeat(self) -> None:
        """One heartbeat now (a flapping node reports its new readiness at once)."""
        link = self._link
        if link is None:
            return
        message = heartbeat_message(
            self.node_id,
            running_jobs=len(link.running),
            services=all_services(self.conduct.ready),
        )
        await self._send(link, message)

    async def _heartbeats(self, link: _Link) -> None:
        while not link.ws.closed:
            await asyncio.sleep(self.heartbeat_every)
            if self.conduct.heartbeats:
                await self.heartbeat()

    # --- frames in --------------------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        async for message in link.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = _decode(message.data)
            kind = frame.get("type")
            self.counts.received[str(kind)] += 1
            if kind == "job_assign":
                await self._on_assign(link, frame)
            elif kind == "job_cancel":
                self._on_cancel(link, str(frame.get("job_id")))

    async def _on_assign(self, link: _Link, assign: JSON) -> None:
        key = (str(assign["job_id"]), int(assign["attempt_id"]))
        conduct = self.conduct
        job = _Job(assign, late=conduct.late_by is not None)
        link.running[key] = job
        self.counts.assigns += 1
        self.counts.peak_running = max(self.counts.peak_running, len(link.running))
        if len(link.running) > self.capacity:
            self.counts.over_capacity += 1
        if conduct.acks:
            await self._send(link, ack_message(assign, self.node_id))
        if conduct.started:
            await self._send(link, ack_message(assign, self.node_id, "job_started"))
        if conduct.silent:
            return  # taken, never answered: the scheduler's job timeout must act
        delay = conduct.delay(self._rng)
        job.task = asyncio.create_task(self._answer_later(link, key, assign, delay))

    def _on_cancel(self, link: _Link, job_id: str) -> None:
        # Cancelled jobs stop counting at once: the scheduler may reuse the slot right away.
        for key in [k for k in link.running if k[0] == job_id]:
            job = link.running.pop(key)
            self.counts.cancels += 1
            if job.late:
                link.cancelled_late[key] = job  # a late node answers anyway, after its delay
            elif job.task is not None:
                job.task.cancel()

    async def _answer_later(
        self, link: _Link, key: tuple[str, int], assign: JSON, delay: float
    ) -> None:
        for text in self.conduct.partials:
            if await self._send(link, partial_message(assign, self.node_id, text)):
                self.counts.partials += 1
        await asyncio.sleep(delay)
        job = link.running.pop(key, None)
        stale = job is None
        if job is None:
            job = link.cancelled_late.pop(key, None)
            if job is None:
                return
        failed = self.conduct.fails(self._rng)
        if not await self._send(link, self._result(job.assign, stale=stale, failed=failed)):
            return
        if stale:
            self.counts.stale_answers += 1
        elif failed:
            self.counts.failures += 1
        else:
            self.counts.answers += 1

    def _result(self, assign: JSON, *, stale: bool, failed: bool) -> JSON:
        if failed:
            return result_message(assign, self.node_id, success=False, error=self.conduct.error)
        marker = STALE_MARK if stale else ""
        audio = base64.b64encode(b"\0" * self.conduct.result_bytes).decode("ascii")
        return result_message(
            assign,
            self.node_id,
            text_asr=self.version,
            text_translated=f"{marker}{self.node_id}",
            tts_audio=audio,
        )
