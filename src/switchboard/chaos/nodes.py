"""In-process nodes that misbehave on cue and count, on the node side, how many jobs they run.

A :class:`ChaosNode` speaks contract §1 over a real socket: it registers under a fixed node id,
heartbeats, answers ``job_assign`` after a delay, and reconnects when the scheduler drops it.
Its :class:`Conduct` is what the faults turn, while it runs:

``silent``   ack every new job and never answer it;
``late_by``  answer every new job this many seconds after its ``job_assign`` (past the job
             timeout): the scheduler has cancelled the attempt by then, and the answer it still
             gets is marked stale, so a session that ever sees it proves the scheduler relayed it;
``ready``    the services its heartbeats report ready (a flapping node flips it);
``heartbeats`` whether it heartbeats at all.

Node-side capacity: a job runs from its ``job_assign`` until the node answers it, the scheduler
cancels it, or the connection ends.  More than ``capacity`` at once is an over-capacity event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import msgspec

STALE_MARK: Final = "STALE:"
_SERVICES: Final = ("asr", "nmt", "tts")
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_SEND_ERRORS: Final = (ConnectionError, RuntimeError, aiohttp.ClientError)


@dataclass(slots=True)
class Conduct:
    """How a node behaves right now (faults change it while it runs)."""

    latency: float = 0.03
    silent: bool = False
    late_by: float | None = None
    ready: bool = True
    heartbeats: bool = True
    result_bytes: int = 0


@dataclass(slots=True)
class NodeCounts:
    assigns: int = 0
    answers: int = 0
    stale_answers: int = 0
    cancels: int = 0
    over_capacity: int = 0
    peak_running: int = 0
    connections: int = 0


@dataclass(slots=True)
class _Job:
    assign: dict[str, Any]
    late: bool  # answered after the job timeout on purpose
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Link:
    ws: aiohttp.ClientWebSocketResponse
    running: dict[tuple[str, int], _Job] = field(default_factory=dict)
    # Late jobs the scheduler cancelled: still answered (stale) when their delay is up.
    cancelled_late: dict[tuple[str, int], _Job] = field(default_factory=dict)


class ChaosNode:
    """One fake GPU node; :meth:`run` until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        node_id: str,
        *,
        pairs: tuple[tuple[str, str], ...],
        capacity: int,
        heartbeat_every: float,
        conduct: Conduct | None = None,
        seed: int = 0,
    ) -> None:
        self.url = url.rstrip("/") + "/ws/node"
        self.node_id = node_id
        self.pairs = pairs
        self.capacity = capacity
        self.heartbeat_every = heartbeat_every
        self.conduct = conduct or Conduct()
        self.counts = NodeCounts()
        self.registered = asyncio.Event()
        self._rng = random.Random(seed)
        self._link: _Link | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"chaos-node-{self.node_id}")

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

    def _register_message(self) -> dict[str, Any]:
        return {
            "type": "node_register",
            "node_id": self.node_id,
            "version": "chaos",
            "platform": "linux-x86_64",
            "hardware": {"cpu_cores": 8, "memory_gb": 32},
            "installed_models": [],
            "capability_by_type": self._capabilities(),
            "features_supported": {},
            "accept_public_jobs": True,
            "max_concurrency": self.capacity,
            "language_capabilities": {
                "supported_language_pairs": [{"src": s, "tgt": t} for s, t in self.pairs]
            },
        }

    def _capabilities(self) -> list[dict[str, object]]:
        return [{"type": name, "ready": self.conduct.ready} for name in _SERVICES]

    async def _send(self, link: _Link, message: dict[str, Any]) -> bool:
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
        await self._send(
            link,
            {
                "type": "node_heartbeat",
                "node_id": self.node_id,
                "timestamp": int(time.time() * 1000),
                "resource_usage": {
                    "cpu_percent": 10,
                    "mem_percent": 20,
                    "running_jobs": len(link.running),
                },
                "capability_by_type": self._capabilities(),
            },
        )

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
            if kind == "job_assign":
                await self._on_assign(link, frame)
            elif kind == "job_cancel":
                self._on_cancel(link, str(frame.get("job_id")))

    async def _on_assign(self, link: _Link, assign: dict[str, Any]) -> None:
        key = (str(assign["job_id"]), int(assign["attempt_id"]))
        conduct = self.conduct
        job = _Job(assign, late=conduct.late_by is not None)
        link.running[key] = job
        self.counts.assigns += 1
        self.counts.peak_running = max(self.counts.peak_running, len(link.running))
        if len(link.running) > self.capacity:
            self.counts.over_capacity += 1
        await self._send(link, {**_job_ref(assign, self.node_id), "type": "job_ack"})
        if conduct.silent:
            return  # acked, never answered: the scheduler's job timeout must act
        if conduct.late_by is not None:
            delay = conduct.late_by
        else:
            delay = conduct.latency * (0.5 + self._rng.random())
        job.task = asyncio.create_task(self._answer_later(link, key, delay))

    def _on_cancel(self, link: _Link, job_id: str) -> None:
        # Cancelled jobs stop counting at once: the scheduler may reuse the slot right away.
        for key in [k for k in link.running if k[0] == job_id]:
            job = link.running.pop(key)
            self.counts.cancels += 1
            if job.late:
                link.cancelled_late[key] = job  # a late node answers anyway, after its delay
            elif job.task is not None:
                job.task.cancel()

    async def _answer_later(self, link: _Link, key: tuple[str, int], delay: float) -> None:
        await asyncio.sleep(delay)
        job = link.running.pop(key, None)
        stale = job is None
        if job is None:
            job = link.cancelled_late.pop(key, None)
            if job is None:
                return
        if await self._send(link, self._result(job.assign, stale=stale)):
            if stale:
                self.counts.stale_answers += 1
            else:
                self.counts.answers += 1

    def _result(self, assign: dict[str, Any], *, stale: bool) -> dict[str, Any]:
        marker = STALE_MARK if stale else ""
        audio = base64.b64encode(b"\0" * self.conduct.result_bytes).decode("ascii")
        return {
            **_job_ref(assign, self.node_id),
            "type": "job_result",
            "utterance_index": assign.get("utterance_index", 0),
            "success": True,
            "text_asr": "chaos",
            "text_translated": f"{marker}{self.node_id}",
            "tts_audio": audio,
            "tts_format": "pcm16",
        }


def _job_ref(assign: dict[str, Any], node_id: str) -> dict[str, Any]:
    return {
        "job_id": assign["job_id"],
        "attempt_id": assign["attempt_id"],
        "node_id": node_id,
        "session_id": assign["session_id"],
        "trace_id": assign["trace_id"],
    }
