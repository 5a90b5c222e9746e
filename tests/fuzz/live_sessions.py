"""Live fuzzing, session side (``test_live_fuzz.py`` runs it with ``live_nodes.py``).

Workers share one scheduler (memory store, node and session tokens set) and one honest node
that answers every job after 30 ms:

- **session workers** (here) send mutated session frames on an open session, in batches, each batch
  followed by a ``client_heartbeat`` as a barrier; the replies before the barrier's
  ``server_heartbeat`` must be exactly the expected ones, in order (contract §2–§3: a bad frame
  gets ``error INVALID_MESSAGE``, another session's id ``INVALID_SESSION``, a valid heartbeat a
  ``server_heartbeat``, a valid ``session_close`` its ack and the close).  Every utterance the
  scheduler accepts must get exactly one answer, in order, by the end.
- **node workers** send mutated node frames on a registered node, including results, acks and
  partials for the honest node's jobs (in its name and their own): replies must be exactly the
  expected errors, and no forged result may ever reach a session.
- **first-frame workers** open a connection per frame: a mutated ``node_register`` /
  ``session_init`` (or another type first) gets the ack or the right error and close 1008.

What is expected of a frame is decided by :func:`switchboard.protocol.codec.decode_session` /
``decode_node`` (the decoder, fuzzed on its own in ``test_codec_fuzz.py`` against a schema)
plus the session and identity rules, modelled here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from switchboard.errors import ProtocolError
from switchboard.protocol import codec
from switchboard.protocol.messages import (
    AudioChunk,
    ClientHeartbeat,
    SessionClose,
    SessionInit,
    TtsPlayEnded,
    Utterance,
)
from switchboard.protocol.rooms import RoomCreate, RoomInbound, Signal
from tests.fuzz import messages
from tests.fuzz.mutate import Fuzzed, Mutator

NODE_TOKEN = "nt-Zq8fuzz-node-secret"
SESSION_TOKEN = "st-Vx3fuzz-session-secret"
BATCH = 16
OVERSIZE = 1 << 20  # the fuzz server's --max-frame-bytes

Expect = tuple[str, str | None]  # ("error", code) | ("server_heartbeat", None) | …
HEARTBEAT: Expect = ("server_heartbeat", None)
CLOSE_ACK: Expect = ("session_close_ack", None)
ROOM_ERROR: Expect = ("room_error", None)


@dataclass
class Tally:
    """What the fuzzers did and found; ``problems`` must stay empty."""

    frames: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    accepted_utterances: int = 0
    problems: list[str] = field(default_factory=list)
    received_text: list[str] = field(default_factory=list)  # scanned for secrets at the end

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


def _kind(frame: dict[str, Any]) -> Expect:
    return (str(frame.get("type")), frame.get("code") if frame.get("type") == "error" else None)


def _is_answer(frame: dict[str, Any]) -> bool:
    """An answer to an accepted utterance (ordered stream), as opposed to a rejection."""
    if frame.get("type") in ("translation_result", "missing_result"):
        return True
    details = frame.get("details")
    return frame.get("type") == "error" and isinstance(details, dict) and "job_id" in details


def _label(wanted: list[Expect]) -> str:
    if not wanted:
        return "accepted"
    kind, code = wanted[0]
    return code or kind


def _answer_index(frame: dict[str, Any]) -> object:
    if frame["type"] == "translation_result":
        return frame.get("utterance_index")
    return frame["details"].get("utterance_index")


# --- sessions ------------------------------------------------------------------------------------


class SessionWorker:
    def __init__(self, url: str, seed: int, tally: Tally, peers: list[SessionWorker]) -> None:
        self.url = url + "/ws/session"
        self.mutator = Mutator(seed)
        self.rng = random.Random(seed)
        self.tally = tally
        self.peers = peers
        self.session_id = ""
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._index = itertools.count()
        self._used: set[int] = set()
        self.accepted: dict[str, list[int]] = {}  # session id → accepted indexes, in order
        self.answers: dict[str, list[dict[str, Any]]] = {}

    async def open(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, max_msg_size=0)
        self._inbox = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(self._ws))
        await self._ws.send_str(json.dumps(messages.session_init(SESSION_TOKEN)))
        ack = await self._next()
        assert ack is not None and ack["type"] == "session_init_ack", ack
        self.session_id = ack["session_id"]
        self.accepted[self.session_id] = []
        self.answers[self.session_id] = []

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.tally.received_text.append(message.data)
                frame = json.loads(message.data)
                if _is_answer(frame):
                    self.answers[self.session_id].append(frame)
                else:
                    self._inbox.put_nowait(frame)
        self._inbox.put_nowait(None)

    async def _next(self, within: float = 10.0) -> dict[str, Any] | None:
        async with asyncio.timeout(within):
            return await self._inbox.get()

    def _base(self) -> dict[str, Any]:
        index = next(self._index)
        other = self.rng.choice(self.peers).session_id if self.rng.random() < 0.1 else None
        bases = messages.session_frames(other or self.session_id, index)
        return self.rng.choice(bases)

    def expect(self, fuzzed: Fuzzed) -> list[Expect] | None:
        """The immediate replies; None: skip this frame (its outcome would be ambiguous)."""
        if fuzzed.binary:
            return [("error", "INVALID_MESSAGE")]
        try:
            msg = codec.decode_session(fuzzed.data)
        except ProtocolError:
            return [("error", "INVALID_MESSAGE")]
        if isinstance(msg, SessionInit):
            return [("error", "INVALID_MESSAGE")]
        if isinstance(msg, RoomInbound):
            return self._expect_room(msg)
        if msg.session_id != self.session_id:
            return [("error", "INVALID_SESSION")]
        if isinstance(msg, Utterance):
            if msg.utterance_index in self._used:
                return None  # pending or not by now: either reply would be right
            self._used.add(msg.utterance_index)
            self.accepted[self.session_id].append(msg.utterance_index)
            return []
        if isinstance(msg, AudioChunk):
            try:
                codec.chunk_audio(msg)
            except ProtocolError:
                return [("error", "INVALID_MESSAGE")]  # not buffered
            # A final would cut an utterance whose index the worker cannot foresee: skipped.
            # Other chunks are buffered and never cut (the fuzz server's limits), no reply.
            return None if msg.is_final else []
        if isinstance(msg, ClientHeartbeat):
            return [HEARTBEAT]
        if isinstance(msg, TtsPlayEnded):
            return []  # never answered (lingua-parity §4)
        assert isinstance(msg, SessionClose)
        return [CLOSE_ACK]

    @staticmethod
    def _expect_room(msg: RoomInbound) -> list[Expect] | None:
        """No worker is ever in a room (a room_create is not sent), so no room exists: a
        join, leave or preference is ROOM_NOT_FOUND, a signal is dropped without a word."""
        if isinstance(msg, RoomCreate):
            return None
        if isinstance(msg, Signal):
            return []
        return [ROOM_ERROR]

    async def run(self, count: int) -> None:
        sent = 0
        while sent < count:
            sent += await self._batch(min(BATCH, count - sent))

    async def _batch(self, size: int) -> int:
        assert self._ws is not None
        expected: list[Expect] = []
        sent = 0
        while sent < size:
            fuzzed = self.mutator.frame(self._base())
            wanted = self.expect(fuzzed)
            if wanted is None:
                continue
            await self._send(fuzzed)
            sent += 1
            self.tally.frames += 1
            self.tally.by_class["session " + _label(wanted)] += 1
            expected += wanted
            if wanted == [CLOSE_ACK]:
                await self._closed_by_request(expected)
                return sent
        await self._ws.send_str(
            json.dumps({"type": "client_heartbeat", "session_id": self.session_id, "timestamp": 1})
        )
        await self._check([*expected, HEARTBEAT])
        return sent

    async def _send(self, fuzzed: Fuzzed) -> None:
        assert self._ws is not None
        if fuzzed.binary:
            await self._ws.send_bytes(fuzzed.data)
        else:
            await self._ws.send_frame(fuzzed.data, aiohttp.WSMsgType.TEXT)

    async def _check(self, expected: list[Expect]) -> None:
        got: list[Expect] = []
        while len(got) < len(expected):
            frame = await self._next()
            if frame is None:
                self.tally.problem(f"session closed unexpectedly; expected {expected}, got {got}")
                await self.open()
                return
            got.append(_kind(frame))
            if frame.get("type") == "error" and len(str(frame.get("message"))) > 300:
                self.tally.problem(f"long error message: {str(frame)[:200]}")
        if got != expected:
            self.tally.problem(f"session {self.session_id}: expected {expected}, got {got}")

    async def _closed_by_request(self, expected: list[Expect]) -> None:
        """A valid session_close: the replies so far, its ack, then the socket closes."""
        await self._check(expected)
        assert self._ws is not None
        if await self._next() is not None:
            self.tally.problem("session_close was not followed by the close")
        if self._ws.close_code != 1000:
            self.tally.problem(f"session_close: close code {self._ws.close_code}")
        self.accepted.pop(self.session_id, None)  # dropped unanswered: allowed (§2 "Ending")
        await self.open()

    async def oversize(self) -> None:
        """A frame above --max-frame-bytes: PAYLOAD_TOO_LARGE, then close 1009."""
        assert self._ws is not None
        self.tally.frames += 1
        self.tally.by_class["session oversize"] += 1
        try:
            await self._ws.send_str('{"type":"utterance","pad":"' + "x" * OVERSIZE + '"}')
        except ConnectionError:
            # The server refuses the frame at its header and closes while the body is still
            # being written: the reset can overtake the error and the close frame, which are
            # then lost to us.  The server's side is checked by what follows (it still serves).
            self.tally.by_class["session oversize, reset while sending"] += 1
            self.accepted.pop(self.session_id, None)
            await self.open()
            return
        frame = await self._next()
        if frame is None or _kind(frame) != ("error", "PAYLOAD_TOO_LARGE"):
            self.tally.problem(f"oversize frame answered {frame}")
        await self._next()
        # 1009, or 1006 when the server's reset (the peer was still writing the frame, so the
        # close handshake could not finish in time) overtook its close frame on our side.
        if self._ws.close_code not in (1009, 1006):
            self.tally.problem(f"oversize frame: close code {self._ws.close_code}")
        self.accepted.pop(self.session_id, None)
        await self.open()

    def verify_answers(self) -> None:
        """Every accepted utterance answered exactly once, in the order accepted."""
        for session_id, indexes in self.accepted.items():
            got = [_answer_index(f) for f in self.answers.get(session_id, [])]
            if got != indexes:
                missing = sorted(set(indexes) - set(got))[:5]
                extra = [i for i, n in Counter(got).items() if n > 1 or i not in indexes][:5]
                self.tally.problem(
                    f"session {session_id}: {len(indexes)} accepted, {len(got)} answers,"
                    f" missing {missing}, doubled or unknown {extra}"
                )
            for frame in self.answers.get(session_id, []):
                if "FORGED" in json.dumps(frame):
                    self.tally.problem(f"a forged result reached a session: {frame}")

    def pending(self) -> int:
        return sum(len(ix) for ix in self.accepted.values()) - sum(
            len(self.answers.get(s, [])) for s in self.accepted
        )

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None:
            await self._http.close()
