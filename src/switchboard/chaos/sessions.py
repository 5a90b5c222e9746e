"""Client sessions that write every utterance and answer into the :class:`Ledger`.

A :class:`ChaosSession` keeps one session open (``reconnect``: opens a new one, as a new ledger
line, whenever the scheduler goes away), sends utterances when the load driver asks, and files
every answer.  How its lines end decides what the ledger may call lost: the scheduler closing
the socket (after ``SESSION_CLOSED`` or not) cuts the line's unanswered utterances, which
contract §2 "Ending" allows; the run's own final close does not, so what is unanswered by then
is lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp
import msgspec

from switchboard.chaos.ledger import RESULT, SHED, Ledger
from switchboard.tools.fakenode import STALE_MARK

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_AUDIO: Final = base64.b64encode(b"\x01\x00" * 160).decode("ascii")  # 10 ms of pcm16 at 16 kHz
_SEND_ERRORS: Final = (ConnectionError, RuntimeError, aiohttp.ClientError)
SERVER_ENDED: Final = "SESSION_CLOSED"  # the scheduler said so before closing
DISCONNECTED: Final = "disconnected"  # the socket went without a word (a crash)
CLIENT_DROPPED: Final = "client dropped"  # our own deliberate drop (connection storm)

Clock = Callable[[], float]


def init_message(src: str, tgt: str) -> dict[str, Any]:
    return {
        "type": "session_init",
        "client_version": "chaos",
        "platform": "chaos",
        "src_lang": src,
        "tgt_lang": tgt,
    }


def utterance_message(session_id: str, index: int, src: str, tgt: str) -> dict[str, Any]:
    return {
        "type": "utterance",
        "session_id": session_id,
        "utterance_index": index,
        "src_lang": src,
        "tgt_lang": tgt,
        "audio": _AUDIO,
        "audio_format": "pcm16",
        "sample_rate": 16000,
    }


def file_answer(ledger: Ledger, line: int, frame: dict[str, Any], at: float) -> str | None:
    """Put one received frame into the ledger; the error code of a session-level error."""
    kind = frame.get("type")
    if kind == "translation_result":
        if str(frame.get("text_translated", "")).startswith(STALE_MARK):
            ledger.stale()
        ledger.answered(line, _index(frame.get("utterance_index")), RESULT, at)
    elif kind == "error":
        details = frame.get("details") or {}
        index = _index(details.get("utterance_index")) if isinstance(details, dict) else None
        code = str(frame.get("code"))
        if index is None:
            return code
        if code == "OVERLOADED" and "job_id" not in details:
            code = SHED  # refused at once: outside the ordered stream, like TOO_MANY_PENDING
        ledger.answered(line, index, code, at)
    return None


def _index(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ChaosSession:
    """One client: a session at a time, utterances on demand, answers into the ledger."""

    def __init__(
        self,
        ws_url: str,
        ledger: Ledger,
        clock: Clock,
        *,
        pair: tuple[str, str] = ("en", "de"),
        window: int = 4,
        reconnect: bool = True,
        connector: Callable[[], aiohttp.BaseConnector] | None = None,
        resend: bool = False,
    ) -> None:
        self.url = ws_url.rstrip("/") + "/ws/session"
        # A client that resends, on its next session, what a lost connection left unanswered
        # (the scheduler died: it never answers them, and the client knows it).
        self.resend = resend
        self.resent = 0  # utterances sent again on a new line
        self.to_resend = 0  # cut on the last line, not yet sent again
        self.ledger = ledger
        self.clock = clock
        self.src, self.tgt = pair
        self.window = window
        self.reconnect = reconnect
        self._connector = connector
        self.line: int | None = None
        self.session_id = ""
        self.opened = 0
        self.refused: dict[str, int] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_index = 0
        self._closing = False
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chaos-session")

    async def wait_connected(self, within: float) -> None:
        async with asyncio.timeout(within):
            await self._connected.wait()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        return self.ledger.pending(self.line) if self.line is not None else 0

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(*_SEND_ERRORS, OSError, asyncio.TimeoutError):
                await self._connect_once()
            if not self.reconnect:
                return
            if not self._closing:
                await asyncio.sleep(0.1)

    async def _connect_once(self) -> None:
        connector = self._connector() if self._connector is not None else None
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.ws_connect(self.url, max_msg_size=0, autoping=True) as ws,
        ):
            await ws.send_frame(_encode(init_message(self.src, self.tgt)), aiohttp.WSMsgType.TEXT)
            first = await ws.receive(timeout=10)
            if first.type is not aiohttp.WSMsgType.TEXT:
                return
            ack = _decode(first.data)
            if ack.get("type") != "session_init_ack":
                code = str(ack.get("code"))
                self.refused[code] = self.refused.get(code, 0) + 1
                return
            self.session_id = str(ack["session_id"])
            self.line = self.ledger.open_line()
            self.opened += 1
            self._ws = ws
            reader = asyncio.create_task(self._read(ws, self.line))
            await self._resend()
            self._connected.set()
            try:
                reason = await reader
            finally:
                self._connected.clear()
                self._ws = None
            if reason is not None:
                cut = self.ledger.end_line(self.line, reason, self.clock())
                if self.resend and reason == DISCONNECTED:
                    self.to_resend += cut

    async def _resend(self) -> None:
        """What the last line's loss left unanswered, sent again first on this one."""
        while self.to_resend and await self._send_one(force=True):
            self.to_resend -= 1
            self.resent += 1

    def retarget(self, ws_url: str) -> None:
        """Connect to ``ws_url`` from the next connection on (as a client with several URLs,
        or behind a load balancer, ends up on a live instance)."""
        self.url = ws_url.rstrip("/") + "/ws/session"

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, line: int) -> str | None:
        """Answers until the socket closes; why the line ended (None: we closed it)."""
        told: str | None = None
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = _decode(message.data)
            code = file_answer(self.ledger, line, frame, self.clock())
            if code is not None:
                told = code
            if frame.get("type") == "session_close_ack":
                return None
        if self._closing:
            return None
        return SERVER_ENDED if told == SERVER_ENDED else DISCONNECTED

    # --- use --------------------------------------------------------------------------------

    async def try_send(self) -> bool:
        """Send one utterance if connected and under the window; whether it went out."""
        if not self._connected.is_set():
            return False
        return await self._send_one(force=False)

    async def _send_one(self, *, force: bool) -> bool:
        ws, line = self._ws, self.line
        if ws is None or line is None or ws.closed:
            return False
        if not force and self.pending >= self.window:
            return False
        index = self._next_index
        self._next_index += 1
        frame = _encode(utterance_message(self.session_id, index, self.src, self.tgt))
        # Filed before the write: an answer can come back before send_frame returns.
        self.ledger.sent(line, index, self.clock())
        try:
            await ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
        except _SEND_ERRORS:
            return True  # sent as far as we know; the line's end decides its fate
        return True

    async def close(self, within: float = 5.0) -> None:
        """End the run: ``session_close``, then wait for the socket to go."""
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            message = {"type": "session_close", "session_id": self.session_id, "reason": "done"}
            with contextlib.suppress(*_SEND_ERRORS):
                await ws.send_frame(_encode(message), aiohttp.WSMsgType.TEXT)
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, within)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()


async def wait_answered(sessions: list[ChaosSession], *, within: float) -> bool:
    """Until no session has an utterance pending (or ``within`` s); whether all were."""
    deadline = time.monotonic() + within
    while any(s.pending for s in sessions):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
