"""Live fuzzing, node side and first frames (see ``live_sessions.py`` for the set-up).

- :class:`NodeWorker`: a registered node sending mutated node frames — heartbeats, acks,
  results and partials, many of them for the honest node's real jobs, in its name or the
  honest node's (contract §1 "Identity": they change nothing, are never relayed, and get an
  error only when malformed) — each batch closed by a barrier: a frame of an unknown type
  whose ``INVALID_MESSAGE`` carries a marker index.
- :func:`first_frames`: a connection per frame; a mutated ``node_register`` /
  ``session_init``, or another message first (a ``node_heartbeat`` before ``node_register``,
  a ``job_result`` before any ``job_assign``, an ``utterance`` before ``session_init``) gets
  the ack or the right error, then close 1008 (contract §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from typing import Any

import aiohttp

from switchboard.errors import ProtocolError
from switchboard.protocol import codec
from switchboard.protocol.messages import NodeHeartbeat, NodeRegister, SessionInit
from switchboard.protocol.profile import priority_of
from tests.e2e.harness import FakeNode
from tests.fuzz import messages
from tests.fuzz.live_sessions import NODE_TOKEN, SESSION_TOKEN, Expect, Tally
from tests.fuzz.mutate import Fuzzed, Mutator

BATCH = 16
_markers = itertools.count(2_000_000_000)
INVALID: Expect = ("error", "INVALID_MESSAGE")


class NodeWorker:
    def __init__(self, url: str, node_id: str, seed: int, tally: Tally, honest: FakeNode) -> None:
        self.url = url + "/ws/node"
        self.node_id = node_id
        self.mutator = Mutator(seed)
        self.rng = random.Random(seed)
        self.tally = tally
        self.honest = honest
        self.jobs_seen = 0  # job_assign frames it got (mutated heartbeats may make it eligible)
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read(self._ws))
        await self._ws.send_str(json.dumps(messages.node_register(self.node_id, NODE_TOKEN)))
        ack = await self._next()
        assert ack is not None and ack["type"] == "node_register_ack", ack

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.tally.received_text.append(message.data)
                frame = json.loads(message.data)
                if frame.get("type") in ("job_assign", "job_cancel"):
                    self.jobs_seen += frame["type"] == "job_assign"
                else:
                    self._inbox.put_nowait(frame)
        self._inbox.put_nowait(None)

    async def _next(self, within: float = 10.0) -> dict[str, Any] | None:
        async with asyncio.timeout(within):
            return await self._inbox.get()

    @property
    def closed(self) -> bool:
        return self._ws is None or self._ws.closed

    def _base(self) -> dict[str, Any]:
        assigns = self.honest.assigns[-20:]
        if assigns and self.rng.random() < 0.7:
            job: dict[str, Any] = dict(self.rng.choice(assigns))  # someone else's real job
        else:
            job = {"job_id": "job-none", "attempt_id": 1, "session_id": "s-x", "trace_id": "t"}
        speaker = self.honest.node_id if self.rng.random() < 0.3 else self.node_id
        assert speaker is not None
        return self.rng.choice(messages.node_frames(speaker, job))

    def expect(self, fuzzed: Fuzzed) -> list[Expect]:
        if fuzzed.binary:
            return [INVALID]
        try:
            msg = codec.decode_node(fuzzed.data)
        except ProtocolError:
            return [INVALID]
        if isinstance(msg, NodeRegister):
            return [INVALID]  # already registered
        if isinstance(msg, NodeHeartbeat) and msg.node_id != self.node_id:
            return [INVALID]
        return []  # acks, results, partials, errors: silence, whosever job they name

    async def run(self, count: int) -> None:
        sent = 0
        while sent < count:
            sent += await self._batch(min(BATCH, count - sent))

    async def _batch(self, size: int) -> int:
        assert self._ws is not None
        expected: list[Expect] = []
        for _ in range(size):
            fuzzed = self.mutator.frame(self._base())
            wanted = self.expect(fuzzed)
            if fuzzed.binary:
                await self._ws.send_bytes(fuzzed.data)
            else:
                await self._ws.send_frame(fuzzed.data, aiohttp.WSMsgType.TEXT)
            self.tally.frames += 1
            self.tally.by_class["node " + ("silent" if not wanted else "INVALID_MESSAGE")] += 1
            expected += wanted
        marker = next(_markers)
        await self._ws.send_str(json.dumps({"type": "fuzz_sync", "utterance_index": marker}))
        await self._check([*expected, INVALID], marker)
        return size

    async def _check(self, expected: list[Expect], marker: int) -> None:
        got: list[Expect] = []
        while True:
            frame = await self._next()
            if frame is None:
                self.tally.problem(f"node {self.node_id} closed; expected {expected}, got {got}")
                return
            got.append((str(frame.get("type")), frame.get("code")))
            if (frame.get("details") or {}).get("utterance_index") == marker:
                break
        if got != expected:
            self.tally.problem(f"node {self.node_id}: expected {expected}, got {got}")

    async def sync(self) -> bool:
        """Still registered and answering (the run's end)."""
        if self.closed:
            return False
        marker = next(_markers)
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"type": "fuzz_sync", "utterance_index": marker}))
        await self._check([INVALID], marker)
        return not self.closed

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None:
            await self._http.close()


# --- first frames --------------------------------------------------------------------------------


def _first_bases(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A channel and a first frame: mostly the right handshake, sometimes another type."""
    job = {"job_id": "job-none", "attempt_id": 1, "session_id": "s-x", "trace_id": "t"}
    if rng.random() < 0.5:
        others = messages.node_frames("node-first", job)[:-1]  # heartbeat, ack, result …
        register = messages.node_register(f"first-{rng.randrange(10**9)}", NODE_TOKEN)
        return "node", register if rng.random() < 0.7 else rng.choice(others)
    others = messages.session_frames("s-x", 0)[:-1]  # utterance, audio_chunk, heartbeat …
    init = messages.session_init(SESSION_TOKEN)
    return "session", init if rng.random() < 0.7 else rng.choice(others)


def first_expect(channel: str, fuzzed: Fuzzed, taken: set[str]) -> Expect | None:
    """The first reply; None: skip (a node id this worker registered before)."""
    if fuzzed.binary:
        return INVALID
    decode = codec.decode_node if channel == "node" else codec.decode_session
    try:
        msg = decode(fuzzed.data)
    except ProtocolError:
        return INVALID
    if channel == "session":
        if not isinstance(msg, SessionInit):
            return INVALID
        if msg.token != SESSION_TOKEN:
            return ("error", "UNAUTHORIZED")
        try:
            priority_of(msg.features)  # a bad features.priority is refused (protocol.md §2.4)
        except ProtocolError:
            return INVALID
        return ("session_init_ack", None)
    if isinstance(msg, NodeHeartbeat):
        return None  # skipped while the server waits for node_register (lingua-parity §7)
    if not isinstance(msg, NodeRegister):
        return INVALID
    if msg.token != NODE_TOKEN:
        return ("error", "UNAUTHORIZED")
    if msg.node_id is not None and msg.node_id in taken:
        return None
    if msg.node_id is not None:
        taken.add(msg.node_id)
    return ("node_register_ack", None)


async def first_frames(url: str, seed: int, count: int, tally: Tally, taken: set[str]) -> None:
    rng = random.Random(seed)
    mutator = Mutator(seed)
    async with aiohttp.ClientSession() as http:
        done = 0
        while done < count:
            channel, base = _first_bases(rng)
            fuzzed = mutator.frame(base, max_ops=2) if rng.random() < 0.8 else _plain(base)
            wanted = first_expect(channel, fuzzed, taken)
            if wanted is None:
                continue
            done += 1
            tally.frames += 1
            tally.by_class[f"first {channel} {wanted[1] or wanted[0]}"] += 1
            await _one_first(http, f"{url}/ws/{channel}", fuzzed, wanted, tally)


def _plain(base: dict[str, Any]) -> Fuzzed:
    return Fuzzed(json.dumps(base).encode(), False, ("none",))


async def _one_first(
    http: aiohttp.ClientSession, url: str, fuzzed: Fuzzed, wanted: Expect, tally: Tally
) -> None:
    async with http.ws_connect(url, max_msg_size=0) as ws:
        if fuzzed.binary:
            await ws.send_bytes(fuzzed.data)
        else:
            await ws.send_frame(fuzzed.data, aiohttp.WSMsgType.TEXT)
        reply = await ws.receive(timeout=10)
        if reply.type is not aiohttp.WSMsgType.TEXT:
            tally.problem(f"first frame {fuzzed.mutations}: no reply ({reply.type}), want {wanted}")
            return
        tally.received_text.append(reply.data)
        frame = json.loads(reply.data)
        got = (str(frame.get("type")), frame.get("code"))
        if got != wanted:
            shown = fuzzed.data[:120]
            tally.problem(f"first frame {fuzzed.mutations} {shown!r}: {got} != {wanted}")
            return
        if wanted[0] == "error":
            closing = await ws.receive(timeout=10)
            if closing.type is not aiohttp.WSMsgType.CLOSE or ws.close_code != 1008:
                tally.problem(f"refused first frame: then {closing.type} {ws.close_code}")
