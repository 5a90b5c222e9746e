"""End-to-end harness: the real ``switchboard serve`` process and fake peers on real sockets.

- :class:`ServerProcess` runs ``python -m switchboard serve --port 0 …`` (the tools' launcher,
  ``switchboard.tools.procs``) and learns its port from the one line it prints
  (``switchboard listening on http://HOST:PORT (store=…)``).
- :class:`FakeNode` speaks the node side of protocol.md §1 over ``/ws/node``, with the frames
  of the tools' fake node (``switchboard.tools.fakenode``), and records every frame it gets.
- :class:`FakeSession` speaks the client side of protocol.md §2 over ``/ws/session``.

Every wait has a deadline multiplied by :data:`SCALE` (``SWITCHBOARD_TEST_TIMEOUT_SCALE`` or
``--timeout-scale``); nothing sleeps for a fixed time where a condition can be awaited.
Frames are kept as :class:`Frame`, a ``dict`` that also remembers its raw text, so tests can
check that opaque fields travel byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from switchboard.bench.wsclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    client_frame,
    read_frame,
)
from switchboard.tools import fakenode
from switchboard.tools.procs import SchedulerProcess, child_env

SCALE_ENV = "SWITCHBOARD_TEST_TIMEOUT_SCALE"
SCALE: float = float(os.environ.get(SCALE_ENV, "1"))
"""Factor for every wall-clock bound (set from the ``timeout_scale`` fixture by conftest)."""

DEFAULT_WAIT = 5.0  # seconds, before scaling: how long a frame or condition may take to appear
SERVICES = fakenode.SERVICES

JSON = dict[str, Any]


def scaled(seconds: float) -> float:
    """``seconds`` stretched by the timeout scale."""
    return seconds * SCALE


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Frame(dict[str, Any]):
    """A received JSON frame; ``raw`` is the exact text it arrived as."""

    raw: str

    @classmethod
    def parse(cls, raw: str) -> Frame:
        frame = cls(json.loads(raw))
        frame.raw = raw
        return frame


Predicate = Callable[[Frame], bool]


def of_type(kind: str, **fields: object) -> Predicate:
    """A predicate: the frame's ``type`` is ``kind`` and each given field has the given value."""

    def match(frame: Frame) -> bool:
        return frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items())

    return match


def is_error(code: str | None = None, **details: object) -> Predicate:
    """An ``error`` frame, with ``code`` and these ``details`` entries when given."""

    def match(frame: Frame) -> bool:
        if frame.get("type") != "error" or (code is not None and frame.get("code") != code):
            return False
        got = frame.get("details") or {}
        return all(got.get(k) == v for k, v in details.items())

    return match


# --------------------------------------------------------------------------- the server


class ServerFailed(AssertionError):
    """The server process did not start, or misbehaved as a process."""


class ServerProcess(SchedulerProcess):
    """One real scheduler process (the tools' launcher) with the suite's timeout scale, its
    admin token and the operator-API waits; stopped with SIGTERM, then SIGKILL."""

    failure = ServerFailed

    def __init__(
        self,
        args: Sequence[str],
        *,
        log_path: Path,
        admin_token: str | None = None,
        heartbeat_interval: float = 15.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(args, log_path=log_path, env=env)
        self.admin_token = admin_token
        self.heartbeat_interval = heartbeat_interval

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> re.Match[str] | None:
        """Launch and wait for the ``listening`` line (blocking; ~0.5 s), scaled."""
        return super().start(scaled(timeout))

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` (scaled), then SIGKILL; returns the exit status."""
        return super().terminate(scaled(timeout))

    # --- HTTP -----------------------------------------------------------------------------------

    async def http(
        self,
        method: str,
        path: str,
        *,
        token: str | Literal[False] | None = None,
        json_body: object = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        """``(status, body)``; JSON bodies are decoded. ``token=None`` uses the server's admin
        token, ``False`` sends no Authorization header, a string sends that token."""
        bearer = self.admin_token if token is None else (token or None)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        timeout = aiohttp.ClientTimeout(total=scaled(DEFAULT_WAIT))
        async with (
            aiohttp.ClientSession(timeout=timeout) as client,
            client.request(
                method, self.url + path, headers=headers, json=json_body, data=data
            ) as resp,
        ):
            text = await resp.text()
            body: Any = text
            if resp.content_type == "application/json":
                body = json.loads(text)
            return resp.status, body

    async def get_json(self, path: str) -> Any:
        status, body = await self.http("GET", path)
        assert status == 200, f"GET {path} -> {status}: {body}"
        return body

    async def stats(self) -> JSON:
        body: JSON = await self.get_json("/api/v1/stats")
        return body

    async def nodes(self) -> dict[str, JSON]:
        body: list[JSON] = await self.get_json("/api/v1/nodes")
        return {node["node_id"]: node for node in body}

    async def wait_stats(
        self, check: Callable[[JSON], bool], what: str, within: float = DEFAULT_WAIT
    ) -> JSON:
        """Poll ``/api/v1/stats`` until ``check`` holds."""
        last: list[JSON] = []

        async def probe() -> bool:
            last[:] = [await self.stats()]
            return check(last[0])

        await eventually(probe, what, within=within, detail=lambda: f"last stats: {last}")
        return last[0]

    async def wait_idle(self) -> JSON:
        """No job in flight and no slot held (releases are asynchronous)."""
        return await self.wait_stats(
            lambda s: s["jobs_in_flight"] == 0 and s["reservations_held"] == 0,
            "jobs_in_flight == 0 and reservations_held == 0",
        )

    async def wait_node_status(
        self, node_id: str, status: str | None, within: float = DEFAULT_WAIT
    ) -> None:
        """Poll ``/api/v1/nodes`` until the node shows ``status`` (``None``: not listed)."""
        seen: list[object] = []

        async def probe() -> bool:
            node = (await self.nodes()).get(node_id)
            seen[:] = [node]
            return (node is None) if status is None else (node or {}).get("status") == status

        await eventually(
            probe, f"node {node_id} status {status}", within=within, detail=lambda: str(seen)
        )


clean_env = child_env  # this environment without SWITCHBOARD_* (tools.procs)


async def eventually(
    probe: Callable[[], Awaitable[bool]],
    what: str,
    *,
    within: float = DEFAULT_WAIT,
    interval: float = 0.02,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``probe`` until it returns true, failing after ``within`` (scaled)."""
    deadline = time.monotonic() + scaled(within)
    while True:
        if await probe():
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {scaled(within):.1f}s waiting for {what}. {detail()}"
            )
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- peers


class Peer:
    """A WebSocket client that records every frame it receives, and can wait for one."""

    kind = "peer"

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[Frame] = []
        self.close_code: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._cond = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def connect(self) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, autoping=True, max_msg_size=0)
        self._reader = asyncio.create_task(self._read(), name=f"{self.kind}-reader")

    @property
    def ws(self) -> aiohttp.ClientWebSocketResponse:
        assert self._ws is not None, "not connected"
        return self._ws

    async def _read(self) -> None:
        ws = self.ws
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    frame = Frame.parse(msg.data)
                    self.frames.append(frame)
                    self.on_frame(frame)
                    async with self._cond:
                        self._cond.notify_all()
        finally:
            self.close_code = ws.close_code
            self._closed.set()
            async with self._cond:
                self._cond.notify_all()

    def on_frame(self, frame: Frame) -> None:
        """Hook for subclasses (runs in the reader, before waiters wake)."""

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # --- sending --------------------------------------------------------------------------------

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    # --- waiting --------------------------------------------------------------------------------

    def matching(self, pred: Predicate, *, after: int = 0) -> list[Frame]:
        return [f for f in self.frames[after:] if pred(f)]

    async def wait_count(
        self, pred: Predicate, count: int, *, within: float = DEFAULT_WAIT, after: int = 0
    ) -> list[Frame]:
        """The first ``count`` frames (from index ``after``) that match ``pred``."""

        def enough() -> bool:
            return len(self.matching(pred, after=after)) >= count or self.closed

        try:
            async with asyncio.timeout(scaled(within)), self._cond:
                await self._cond.wait_for(enough)
        except TimeoutError:
            pass
        found = self.matching(pred, after=after)
        if len(found) < count:
            state = f"closed with {self.close_code}" if self.closed else "open"
            raise AssertionError(
                f"{self.kind}: got {len(found)} of {count} expected frames within "
                f"{scaled(within):.1f}s ({state}); received: {self.frames}"
            )
        return found[:count]

    async def wait_for(
        self, pred: Predicate, *, within: float = DEFAULT_WAIT, after: int = 0
    ) -> Frame:
        """The first frame (from index ``after``) that matches ``pred``."""
        return (await self.wait_count(pred, 1, within=within, after=after))[0]

    async def wait_closed(self, within: float = DEFAULT_WAIT) -> int | None:
        """Wait for the server to close the socket; returns the close code."""
        try:
            async with asyncio.timeout(scaled(within)):
                await self._closed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.kind}: socket still open after {scaled(within):.1f}s; "
                f"received: {self.frames}"
            ) from None
        return self.close_code

    async def close(self) -> None:
        """Close from our side (idempotent) and release everything."""
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), scaled(2))
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()


# --------------------------------------------------------------------------- node


Pair = tuple[str, str]
NodeMode = Literal["result", "fail", "none"]
_sync_ids = itertools.count(1_000_000_000)


@dataclass(frozen=True)
class NodeBehaviour:
    """How a :class:`FakeNode` answers ``job_assign`` by itself.

    ``mode``: ``result`` answers success, ``fail`` answers ``success: false`` with ``error``,
    ``none`` never answers (the test answers by hand with :meth:`FakeNode.answer`).
    ``answer_cancelled``: still answer a job after its ``job_cancel`` (a late result).
    """

    mode: NodeMode = "result"
    delay: float = 0.0
    partials: Sequence[str] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    raw_extra: str = ""  # appended verbatim to the result JSON object (byte-for-byte checks)
    error: Mapping[str, Any] | None = None
    answer_cancelled: bool = False
    # Lingua's node (node-agent-result-sender.ts) drops a result whose text_asr equals, up to
    # whitespace, the last one it sent for the same session_id.
    lingua_dedup: bool = False


class FakeNode(Peer):
    """A GPU node: registers, heartbeats, answers jobs, and counts how many it runs at once."""

    kind = "node"

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        pairs: Iterable[Pair] = (("en", "de"),),
        services: Mapping[str, bool] | None = None,
        max_concurrency: int | None = None,
        accept_public_jobs: bool = True,
        token: str | None = None,
        pairs_from_models: bool = False,
        behaviour: NodeBehaviour | None = None,
    ) -> None:
        super().__init__(url)
        self.node_id = node_id
        self.pairs = list(pairs)
        self.services = dict(services) if services is not None else dict.fromkeys(SERVICES, True)
        self.max_concurrency = max_concurrency
        self.accept_public_jobs = accept_public_jobs
        self.token = token
        self.pairs_from_models = pairs_from_models
        self.behaviour = behaviour or NodeBehaviour()
        self.running: dict[tuple[str, int], Frame] = {}
        self.max_running = 0
        self.cancelled: set[str] = set()
        self.results_sent: list[JSON] = []
        self.dropped_duplicates: list[Frame] = []
        self._last_text: dict[str, str] = {}
        self._heartbeats: asyncio.Task[None] | None = None
        self.last_heartbeat = 0.0

    # --- registration and heartbeats ----------------------------------------------------------

    def register_message(self) -> JSON:
        models = [
            {
                "model_id": f"nmt-{src}-{tgt}",
                "kind": "nmt",
                "src_lang": src,
                "tgt_lang": tgt,
                "dialect": None,
                "version": "1",
            }
            for src, tgt in self.pairs
        ]
        message = fakenode.register_message(
            self.node_id,
            self.pairs,
            version="2.1.0",
            services=self.services,
            max_concurrency=self.max_concurrency,
            token=self.token,
            accept_public_jobs=self.accept_public_jobs,
            hardware={"cpu_cores": 8, "memory_gb": 32, "gpus": [{"name": "fake", "mem": 24}]},
            installed_models=[*models, {"model_id": "whisper", "kind": "asr"}],
            installed_services=[
                {"service_id": f"{n}-1", "type": n, "device": "cuda", "status": "running"}
                for n in self.services
            ],
            features={"streaming": True},
            pairs_from_models=self.pairs_from_models,
        )
        if not self.pairs_from_models:
            message["language_capabilities"]["asr_languages"] = sorted({s for s, _ in self.pairs})
        return message

    async def register(self, *, expect_ack: bool = True) -> Frame:
        """Send ``node_register``; return the ack (or, if not expected, the first frame)."""
        await self.send(self.register_message())
        if not expect_ack:
            return await self.wait_for(lambda f: True)
        ack = await self.wait_for(lambda f: f.get("type") in ("node_register_ack", "error"))
        assert ack["type"] == "node_register_ack", f"registration refused: {ack}"
        self.node_id = ack["node_id"]
        return ack

    def heartbeat_message(self, node_id: str | None = None) -> JSON:
        return fakenode.heartbeat_message(
            node_id or self.node_id,
            running_jobs=len(self.running),
            services=self.services,
            usage={"cpu_percent": 12.5, "mem_percent": 40, "gpu_percent": 30},
        )

    async def heartbeat(self) -> None:
        await self.send(self.heartbeat_message())
        self.last_heartbeat = time.monotonic()

    def start_heartbeats(self, every: float) -> None:
        """Heartbeat every ``every`` seconds until :meth:`stop_heartbeats`."""

        async def loop() -> None:
            while not self.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.heartbeat()
                await asyncio.sleep(every)

        self.stop_heartbeats()
        self._heartbeats = asyncio.create_task(loop(), name="node-heartbeats")

    def stop_heartbeats(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            self._heartbeats = None

    async def sync(self) -> None:
        """Barrier: once this returns, the server has handled every frame sent before it
        (an unknown ``type`` is answered in order with ``INVALID_MESSAGE``)."""
        marker = next(_sync_ids)
        after = len(self.frames)
        await self.send({"type": "e2e_sync", "utterance_index": marker})
        await self.wait_for(is_error(utterance_index=marker), after=after)

    # --- jobs -----------------------------------------------------------------------------------

    @property
    def assigns(self) -> list[Frame]:
        return self.matching(of_type("job_assign"))

    @property
    def errors(self) -> list[Frame]:
        """``error`` frames other than the replies to :meth:`sync`."""
        return [
            f
            for f in self.matching(of_type("error"))
            if (f.get("details") or {}).get("utterance_index", 0) < 1_000_000_000
        ]

    async def wait_assign(self, *, within: float = DEFAULT_WAIT, **fields: object) -> Frame:
        return await self.wait_for(of_type("job_assign", **fields), within=within)

    def on_frame(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "job_assign":
            self.running[(frame["job_id"], frame["attempt_id"])] = frame
            self.max_running = max(self.max_running, len(self.running))
            if self.behaviour.mode != "none":
                self.spawn(self._auto_answer(frame))
        elif kind == "job_cancel":
            self.cancelled.add(frame["job_id"])
            for key in [k for k in self.running if k[0] == frame["job_id"]]:
                del self.running[key]

    async def _auto_answer(self, assign: Frame) -> None:
        b = self.behaviour
        with contextlib.suppress(ConnectionError, RuntimeError):  # the socket may be gone
            for text in b.partials:
                await self.partial(assign, text)
            if b.delay:
                await asyncio.sleep(scaled(b.delay))
            key = (assign["job_id"], assign["attempt_id"])
            if key not in self.running and not b.answer_cancelled:
                return  # cancelled meanwhile
            if b.lingua_dedup and b.mode == "result" and self._duplicate(assign):
                self.running.pop(key, None)
                self.dropped_duplicates.append(assign)
                return
            await self.answer(assign, success=b.mode == "result")

    def _duplicate(self, assign: Frame) -> bool:
        text = " ".join(self.result_message(assign)["text_asr"].split())
        session_id = assign["session_id"]
        if text and self._last_text.get(session_id) == text:
            return True
        self._last_text[session_id] = text
        return False

    def result_message(
        self, assign: Mapping[str, Any], *, success: bool = True, **overrides: Any
    ) -> JSON:
        index = assign["utterance_index"]
        if success:
            fields: dict[str, Any] = {
                "text_asr": f"asr {index} by {self.node_id}",
                "text_translated": f"translated {index} by {self.node_id}",
                "tts_audio": b64(f"tts {index}".encode()),
                "processing_time_ms": 12,
            }
            fields.update(self.behaviour.extra)  # the behaviour's own fields win (a big audio)
            message = fakenode.result_message(assign, self.node_id, **fields)
        else:
            message = fakenode.result_message(
                assign, self.node_id, success=False, error=self.behaviour.error
            )
        message.update(overrides)
        return message

    async def answer(
        self, assign: Mapping[str, Any], *, success: bool = True, **overrides: Any
    ) -> None:
        """Send the ``job_result`` for ``assign`` (whatever its state: late answers too)."""
        message = self.result_message(assign, success=success, **overrides)
        self.running.pop((assign["job_id"], assign["attempt_id"]), None)
        text = json.dumps(message)
        if self.behaviour.raw_extra:
            text = text[:-1] + ", " + self.behaviour.raw_extra + "}"
        self.results_sent.append(message)
        await self.send_raw(text)

    async def partial(self, assign: Mapping[str, Any], text: str, *, final: bool = False) -> None:
        await self.send(fakenode.partial_message(assign, self.node_id, text, final=final))

    async def close(self) -> None:
        self.stop_heartbeats()
        await super().close()


# --------------------------------------------------------------------------- session

ANSWER_TYPES = ("translation_result", "missing_result", "error")


class FakeSession(Peer):
    """A client: opens a session, sends utterances, collects answers in arrival order."""

    kind = "session"

    def __init__(self, url: str, *, src_lang: str = "en", tgt_lang: str = "de") -> None:
        super().__init__(url)
        self.session_id = ""
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang
        self._heartbeat_count = 0

    def init_message(self, **extra: Any) -> JSON:
        return {
            "type": "session_init",
            "client_version": "3.0.0",
            "platform": "e2e",
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            **extra,
        }

    async def init(self, **extra: Any) -> Frame:
        """Send ``session_init`` (``token=…``, ``trace_id=…`` …) and return the ack."""
        await self.send(self.init_message(**extra))
        ack = await self.wait_for(lambda f: True)
        assert ack["type"] == "session_init_ack", f"session refused: {ack}"
        self.session_id = ack["session_id"]
        return ack

    def utterance_message(self, index: int, **extra: Any) -> JSON:
        return {
            "type": "utterance",
            "session_id": self.session_id,
            "utterance_index": index,
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "audio": b64(f"audio {index}".encode() * 4),
            "audio_format": "pcm16",
            "sample_rate": 16000,
            **extra,
        }

    async def utter(self, index: int, **extra: Any) -> None:
        await self.send(self.utterance_message(index, **extra))

    @property
    def answers(self) -> list[Frame]:
        """``translation_result``, ``missing_result`` and ``error`` frames, in arrival order."""
        return [f for f in self.frames if f.get("type") in ANSWER_TYPES]

    async def wait_answers(self, count: int, *, within: float = DEFAULT_WAIT) -> list[Frame]:
        return await self.wait_count(lambda f: f.get("type") in ANSWER_TYPES, count, within=within)

    async def wait_answer(self, index: int, *, within: float = DEFAULT_WAIT) -> Frame:
        """The answer (result or error) for ``utterance_index == index``."""

        def match(frame: Frame) -> bool:
            if frame.get("type") in ("translation_result", "missing_result"):
                return frame.get("utterance_index") == index
            return (
                frame.get("type") == "error"
                and (frame.get("details") or {}).get("utterance_index") == index
            )

        return await self.wait_for(match, within=within)

    async def heartbeat(self) -> Frame:
        """``client_heartbeat``; returns the matching ``server_heartbeat``."""
        after = len(self.frames)
        await self.send(
            {
                "type": "client_heartbeat",
                "session_id": self.session_id,
                "timestamp": int(time.time() * 1000),
            }
        )
        return await self.wait_for(of_type("server_heartbeat"), after=after)

    async def sync(self) -> None:
        """Barrier: every frame the server queued for us before now has arrived."""
        await self.heartbeat()

    async def close_session(self, reason: str = "done") -> None:
        await self.send({"type": "session_close", "session_id": self.session_id, "reason": reason})

    # --- rooms (lingua-parity §5) -----------------------------------------------------------

    async def create_room(self, **fields: Any) -> str:
        """``room_create``; the room code from ``room_create_ack``, once ``room_members`` has
        followed it."""
        after = len(self.frames)
        await self.send({"type": "room_create", "client_ts": int(time.time() * 1000), **fields})
        ack = await self.wait_for(of_type("room_create_ack"), after=after)
        # The creator's own room_members follows the ack: wait for it, so that what a test
        # reads next comes after it.
        await self.wait_for(of_type("room_members"), after=after)
        code: str = ack["room_code"]
        return code

    async def join_room(self, code: str, **fields: Any) -> Frame:
        """``room_join``; returns the ``room_members`` (or ``room_error``) it gets."""
        after = len(self.frames)
        await self.send({"type": "room_join", "room_code": code, **fields})
        return await self.wait_for(
            lambda f: f.get("type") in ("room_members", "room_error"), after=after
        )

    async def leave_room(self, code: str) -> None:
        await self.send({"type": "room_leave", "room_code": code})

    async def raw_voice(self, code: str, target: str, receive: bool) -> None:
        await self.send(
            {
                "type": "room_raw_voice_preference",
                "room_code": code,
                "target_session_id": target,
                "receive_raw_voice": receive,
            }
        )

    def members(self, after: int = 0) -> list[Frame]:
        return self.matching(of_type("room_members"), after=after)


# --------------------------------------------------------------------------- raw socket


class RawWebSocket:
    """A minimal WebSocket client on a bare TCP stream, for what aiohttp cannot do: put several
    frames into one TCP write, so the server reads them in one go (RFC 6455 framing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, server: ServerProcess, path: str) -> RawWebSocket:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        key = b64(os.urandom(16))
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(scaled(DEFAULT_WAIT)):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    @staticmethod
    def frame(payload: str | bytes) -> bytes:
        """One masked client frame: text for ``str``, binary for ``bytes``."""
        if isinstance(payload, str):
            return client_frame(payload.encode(), OP_TEXT)
        return client_frame(payload, OP_BINARY)

    async def send_together(self, *payloads: str | bytes) -> None:
        """Every payload as its own frame, all in one write."""
        self._writer.write(b"".join(self.frame(p) for p in payloads))
        await self._writer.drain()

    async def ping(self, payload: bytes) -> None:
        self._writer.write(client_frame(payload, OP_PING))
        await self._writer.drain()

    async def next_frame(self) -> tuple[int, bytes]:
        """The next frame of any kind: (opcode, payload)."""
        async with asyncio.timeout(scaled(DEFAULT_WAIT)):
            return await read_frame(self._reader)

    async def receive_texts(self, count: int) -> list[Frame]:
        """The next ``count`` text frames the server sends (control frames are skipped)."""
        frames: list[Frame] = []
        async with asyncio.timeout(scaled(DEFAULT_WAIT)):
            while len(frames) < count:
                opcode, payload = await read_frame(self._reader)
                if opcode == OP_TEXT:
                    frames.append(Frame.parse(payload.decode()))
                elif opcode == OP_CLOSE:
                    break
        return frames

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
