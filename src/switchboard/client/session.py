"""``Session``: the client side of contract §2 as an async Python API.

::

    async with Session.connect("ws://127.0.0.1:5010", src_lang="en", tgt_lang="de") as s:
        result = await s.translate(pcm16_bytes, sample_rate=16000)
        pending = [await s.send(chunk) for chunk in chunks]   # several in flight
        for p in pending:
            print((await p).text_translated)                  # answers arrive in order

The scheduler answers each accepted utterance exactly once, in the order sent (§2 "Exactly one
answer, in order"); the SDK resolves each :class:`PendingTranslation` as its answer arrives, so
they resolve in that order too.  An ``error`` answer raises the exception of its code
(:mod:`switchboard.client.errors`) from the awaited handle.

Speech can also be streamed (contract v1.1 ``audio_chunk``): :meth:`Session.stream` sends
chunks, and the scheduler cuts them into utterances (on demand, on a pause, or when one grows
too long), answering each like any other::

    stream = s.stream()
    for chunk in chunks:
        await stream.send(chunk)
    await stream.end()                       # this utterance is over
    print((await stream.answer()).text_translated)

A scheduler that is saturated refuses a new utterance with ``OVERLOADED`` and a
``retry_after_ms`` hint (protocol.md §3).  The whole session then backs off
(:mod:`switchboard.client.backoff`): it holds the refused utterance and every one it is asked
to send from then on until the hint, stretched by random jitter and doubled at each retry, has
passed, then sends them in their order, the refused one first.  An utterance is resent up to
``overload_retries`` times (:meth:`Session.connect`); only then does its handle raise
:class:`Overloaded`.  Streamed utterances are not resent (the SDK does not keep their audio).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import platform
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import aiohttp
import msgspec

from switchboard import __version__
from switchboard.client.backoff import Hold, backoff_delay
from switchboard.client.errors import (
    ConnectFailed,
    ConnectionLost,
    InvalidMessage,
    Overloaded,
    ServerError,
    SessionClosed,
    error_from_frame,
)
from switchboard.client.rooms import Rooms
from switchboard.client.urls import DEFAULT_URL, endpoint

log = logging.getLogger("switchboard.client")

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_SEND_ERRORS: Final = (ConnectionError, RuntimeError, aiohttp.ClientError)


@dataclass(frozen=True, slots=True)
class Translation:
    """One ``translation_result``, or one ``missing_result``; ``latency_s`` is the round trip
    this client observed (utterance written → answer read).

    A ``missing_result`` (the node heard nothing: lingua-parity §4) is the utterance's answer
    too: ``missing_reason`` says why (``"silence_detected"``), ``missing`` is true, the texts
    and audio are empty, and ``group_id`` is ``None``.
    """

    utterance_index: int
    job_id: str
    node_id: str
    trace_id: str
    text_asr: str
    text_translated: str
    tts_audio: str
    tts_format: str
    latency_s: float
    fields: Mapping[str, Any] = field(repr=False)
    """Every field of the frame, including the node's own (``extra``, ``processing_time_ms``)."""
    group_id: str | None = None
    """The utterance group (results close together in time, lingua-parity §4), if any."""
    part_index: int | None = None
    missing_reason: str | None = None

    @property
    def missing(self) -> bool:
        """Whether this is a ``missing_result``: the utterance was answered with nothing."""
        return self.missing_reason is not None


@dataclass(frozen=True, slots=True)
class Partial:
    """One ``asr_partial`` relayed from the node."""

    utterance_index: int
    job_id: str
    text: str
    is_final: bool


class PendingTranslation:
    """The answer to one sent utterance: ``await`` it for a :class:`Translation`, or the
    exception of its error code.  Awaiting it from a task that is then cancelled does not
    cancel the utterance."""

    __slots__ = ("_future", "resends", "sent_at", "utterance_index")

    def __init__(self, utterance_index: int, future: asyncio.Future[Translation]) -> None:
        self.utterance_index = utterance_index
        self.sent_at = time.perf_counter()  # asked for: a back-off's hold counts in its latency
        self.resends = 0  # times the SDK sent it again after OVERLOADED: it answers later
        self._future = future

    def done(self) -> bool:
        return self._future.done()

    def __await__(self) -> Generator[Any, None, Translation]:
        return asyncio.shield(self._future).__await__()


class PartialStream:
    """``async for partial in session.partials()``: partials received from now on, until the
    session ends.  Created eagerly, so nothing sent after the call is missed."""

    _END: Final = object()

    def __init__(self, session: Session) -> None:
        self._session = session
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def __aiter__(self) -> PartialStream:
        return self

    async def __anext__(self) -> Partial:
        item = await self._queue.get()
        if item is PartialStream._END:
            raise StopAsyncIteration
        assert isinstance(item, Partial)
        return item

    def put(self, partial: Partial) -> None:
        self._queue.put_nowait(partial)

    def end(self) -> None:
        self._queue.put_nowait(PartialStream._END)

    def close(self) -> None:
        """Stop receiving partials on this stream."""
        self._session._streams.discard(self)
        self.end()


class AudioStream:
    """Streamed speech on a session (``audio_chunk``, docs/protocol.md §2 "Streaming").

    The scheduler decides where utterances end: at :meth:`end` (a chunk with ``is_final``),
    after ``--pause-ms`` without a chunk, or when one is too long or too big.  Each gets one
    answer, with the next ``utterance_index`` of the session, in order; :meth:`answer` returns
    them one by one.  The audio is in the session's format (``audio_format`` and
    ``sample_rate`` given to :meth:`Session.connect`; the scheduler assumes opus at 16000 Hz
    when the session did not say).
    """

    _END: Final = object()

    def __init__(self, session: Session) -> None:
        self._session = session
        self._answers: asyncio.Queue[object] = asyncio.Queue()
        self.sent_chunks = 0
        self.last_sent_at = time.perf_counter()  # a streamed answer's latency counts from here
        self.refused: list[ServerError] = []
        """Errors for chunks the scheduler did not buffer (``details.seq`` names each)."""

    async def send(self, audio: bytes, *, final: bool = False) -> None:
        """One chunk (``final``: the utterance ends with it).  Raises :class:`SessionClosed`
        or :class:`ConnectionLost` when the session is over."""
        session = self._session
        if session.closed:
            raise _fresh(session._end_reason or SessionClosed("the session is closed"))
        frame = {
            "type": "audio_chunk",
            "session_id": session.session_id,
            "seq": self.sent_chunks,
            "is_final": final,
            "payload": base64.b64encode(audio).decode("ascii"),
            "client_timestamp_ms": int(time.time() * 1000),
        }
        if not await session._send(frame):
            raise _fresh(
                session._end_reason or ConnectionLost("the connection to the scheduler is gone")
            )
        self.sent_chunks += 1
        self.last_sent_at = time.perf_counter()

    async def end(self, audio: bytes = b"") -> None:
        """End the current utterance now (with ``audio`` as its last chunk, if any).  Nothing
        buffered: nothing happens, and no answer comes."""
        await self.send(audio, final=True)

    async def answer(self) -> Translation:
        """The next streamed utterance's answer, in order: its :class:`Translation` (``missing``
        for a ``missing_result``), or the exception of its ``error``.  Raises
        :class:`SessionClosed` / :class:`ConnectionLost` once the session ends."""
        item = await self._answers.get()
        if item is AudioStream._END:
            self._answers.put_nowait(item)  # every later call ends the same way
            raise _fresh(self._session._end_reason or SessionClosed("the session is closed"))
        if isinstance(item, ServerError):
            raise item
        assert isinstance(item, Translation)
        return item

    def _put(self, item: Translation | ServerError) -> None:
        self._answers.put_nowait(item)

    def _end(self) -> None:
        self._answers.put_nowait(AudioStream._END)


class Session:
    """One open session.  Make it with :meth:`connect`; close it with :meth:`close` (or leave
    the ``async with`` block)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        ack: Mapping[str, Any],
        *,
        src_lang: str,
        tgt_lang: str,
        heartbeat_interval: float | None,
        overload_retries: int = 3,
    ) -> None:
        self.session_id: str = str(ack["session_id"])
        self.trace_id: str = str(ack.get("trace_id") or "")
        # What the scheduler negotiated (lingua-parity §1); older schedulers send none.
        self.negotiated_codec: str | None = ack.get("negotiated_codec")
        self.negotiated_sample_rate: int | None = ack.get("negotiated_sample_rate")
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang
        self.last_server_heartbeat: float | None = None
        self._http = http
        self._ws = ws
        self._pending: dict[int, tuple[PendingTranslation, asyncio.Future[Translation]]] = {}
        # Kept only while resending is on: an utterance refused OVERLOADED is sent again.
        self._overload_retries = overload_retries
        # index → (frame, retries, ticket: its place in the session's order)
        self._unanswered: dict[int, tuple[dict[str, Any], int, int]] = {}
        self._hold = Hold() if overload_retries else None  # None: never resend, never hold
        self._releaser: asyncio.Task[None] | None = None  # the one timer of a hold that is on
        self._rng = random.Random()
        self._next_index = 0
        self._streams: set[PartialStream] = set()
        self._audio: AudioStream | None = None  # made by stream()
        self._close_acked = asyncio.Event()
        self._ended = asyncio.Event()
        self._end_reason: SessionClosed | None = None
        self._closing: SessionClosed | None = None  # set by close(): why handles still fail
        self.rooms = Rooms(self.session_id, self._send)
        """Rooms and WebRTC signalling (``switchboard.client.rooms``)."""
        self._reader = asyncio.create_task(self._read(), name=f"session-{self.session_id}")
        self._beats: asyncio.Task[None] | None = None
        if heartbeat_interval:
            self._beats = asyncio.create_task(self._heartbeats(heartbeat_interval))

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str = DEFAULT_URL,
        *,
        src_lang: str,
        tgt_lang: str,
        token: str | None = None,
        trace_id: str | None = None,
        heartbeat_interval: float | None = 10.0,
        connect_timeout: float = 10.0,
        overload_retries: int = 3,
        **init_fields: Any,
    ) -> SessionOpener:
        """Open a session: ``async with Session.connect(...) as s`` or ``await``.

        ``url`` is the scheduler (``ws://host:port``; ``http://`` works too).  Extra keyword
        arguments go into ``session_init`` as they are (``dialect``, ``features``,
        ``tenant_id``, ``mode`` … contract §2).  Raises :class:`ConnectFailed`, or the
        error of the scheduler's refusal (:class:`Unauthorized` …).  An utterance answered
        ``OVERLOADED`` puts the session on hold for the server's ``retry_after_ms`` (with
        jitter, doubling): it and the utterances sent meanwhile go out, in order, once the
        hold has passed.  It is resent up to ``overload_retries`` times (0: never, and the
        session never holds) before its handle raises :class:`Overloaded`.
        """
        if overload_retries < 0:
            raise ValueError("overload_retries must be 0 or more")
        init: dict[str, Any] = {
            "type": "session_init",
            "client_version": f"switchboard-sdk/{__version__}",
            "platform": f"python-{platform.python_version()}",
            "src_lang": src_lang,
            "tgt_lang": tgt_lang,
            **init_fields,
        }
        if trace_id is not None:
            init["trace_id"] = trace_id
        if token is not None:
            init["token"] = token
        return SessionOpener(
            lambda http, ws, ack: cls(
                http,
                ws,
                ack,
                src_lang=src_lang,
                tgt_lang=tgt_lang,
                heartbeat_interval=heartbeat_interval,
                overload_retries=overload_retries,
            ),
            endpoint(url, "/ws/session"),
            init,
            connect_timeout,
        )

    # --- sending ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ended.is_set() or self._ws.closed

    @property
    def pending(self) -> int:
        """Utterances sent and not yet answered (held ones included)."""
        return len(self._pending)

    @property
    def held(self) -> int:
        """Utterances held back by the back-off after ``OVERLOADED``: not on the wire now."""
        return 0 if self._hold is None else len(self._hold)

    async def send(
        self,
        audio: bytes,
        *,
        sample_rate: int = 16000,
        audio_format: str = "pcm16",
        utterance_index: int | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        pipeline: Mapping[str, bool] | None = None,
        trace_id: str | None = None,
        **extra: Any,
    ) -> PendingTranslation:
        """Send one utterance; returns at once with a handle to ``await`` for its answer.

        ``utterance_index`` defaults to one more than the last used.  Extra keyword arguments
        are sent as opaque utterance fields (``manual_cut``, ``dialect``, ``features`` …).
        While the session backs off after ``OVERLOADED``, the utterance is held and goes out
        after those held before it.
        """
        if self.closed:
            raise _fresh(self._end_reason or SessionClosed("the session is closed"))
        index = self._next_index if utterance_index is None else utterance_index
        if index in self._pending:
            raise InvalidMessage(f"utterance_index {index} is already pending")
        frame: dict[str, Any] = {
            "type": "utterance",
            "session_id": self.session_id,
            "utterance_index": index,
            "src_lang": src_lang or self.src_lang,
            "tgt_lang": tgt_lang or self.tgt_lang,
            "audio": base64.b64encode(audio).decode("ascii"),
            "audio_format": audio_format,
            "sample_rate": sample_rate,
            **extra,
        }
        if pipeline is not None:
            frame["pipeline"] = dict(pipeline)
        if trace_id is not None:
            frame["trace_id"] = trace_id
        future: asyncio.Future[Translation] = asyncio.get_running_loop().create_future()
        handle = PendingTranslation(index, future)
        self._pending[index] = (handle, future)
        self._next_index = max(self._next_index, index + 1)
        hold = self._hold
        if hold is not None:
            ticket = hold.ticket()
            self._unanswered[index] = (frame, 0, ticket)
            if hold.on:  # backing off: it goes out with the held ones, in its turn
                hold.defer(ticket, index)
                return handle
        if not await self._send(frame):
            self._pending.pop(index, None)
            self._unanswered.pop(index, None)
            raise _fresh(
                self._end_reason or ConnectionLost("the connection to the scheduler is gone")
            )
        return handle

    async def translate(self, audio: bytes, **options: Any) -> Translation:
        """Send one utterance and wait for its answer (options as for :meth:`send`).

        To bound the wait, wrap the call: ``async with asyncio.timeout(5): ...``.
        """
        return await (await self.send(audio, **options))

    def stream(self) -> AudioStream:
        """The session's audio stream (one per session: every call returns the same one).

        Utterances cut from it take the session's next indexes, so mixing :meth:`send` and a
        stream on one session works only with explicit ``utterance_index`` values that the
        stream's cannot reach; the SDK resolves answers by index.
        """
        if self._audio is None:
            self._audio = AudioStream(self)
            if self._ended.is_set():
                self._audio._end()
        return self._audio

    async def tts_play_ended(self, group_id: str, *, ts_end_ms: int | None = None) -> None:
        """Say that playing ``group_id``'s audio ended (now, or at ``ts_end_ms``): the
        next result within 2 s of it continues that group (lingua-parity §4).  No reply."""
        frame = {
            "type": "tts_play_ended",
            "session_id": self.session_id,
            "trace_id": self.trace_id,
            "group_id": group_id,
            "ts_end_ms": int(time.time() * 1000) if ts_end_ms is None else ts_end_ms,
        }
        if self.closed or not await self._send(frame):
            raise _fresh(
                self._end_reason or ConnectionLost("the connection to the scheduler is gone")
            )

    def partials(self) -> PartialStream:
        """An async iterator over the ``asr_partial`` frames received from now on."""
        stream = PartialStream(self)
        if self._ended.is_set():
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    async def _send(self, frame: Mapping[str, Any]) -> bool:
        if self._ws.closed:
            return False
        try:
            await self._ws.send_frame(_encode(frame), aiohttp.WSMsgType.TEXT)
        except _SEND_ERRORS:
            return False
        return True

    async def _heartbeats(self, interval: float) -> None:
        while not self.closed:
            await asyncio.sleep(interval)
            beat = {
                "type": "client_heartbeat",
                "session_id": self.session_id,
                "timestamp": int(time.time() * 1000),
            }
            await self._send(beat)

    # --- receiving --------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._on_frame(message.data)
        except Exception:  # a bug here must end the session, not hang its callers
            log.exception("session %s: reader failed", self.session_id)
        finally:
            self._end(self._closing or ConnectionLost("the connection to the scheduler was lost"))

    def _on_frame(self, data: str) -> None:
        try:
            frame = _decode(data)
        except msgspec.DecodeError:
            log.warning("session %s: unreadable frame from the scheduler", self.session_id)
            return
        kind = frame.get("type")
        if self.rooms.on_frame(kind, frame):
            return  # a room frame, or another member's speech translated for this one
        if kind == "translation_result" or kind == "missing_result":
            self._resolve(frame)
        elif kind == "error":
            self._on_error(error_from_frame(frame))
        elif kind == "asr_partial":
            self._on_partial(frame)
        elif kind == "server_heartbeat":
            self.last_server_heartbeat = time.monotonic()
        elif kind == "session_close_ack":
            self._close_acked.set()

    def _resolve(self, frame: Mapping[str, Any]) -> None:
        index = frame.get("utterance_index")
        if not isinstance(index, int):
            log.warning("session %s: result for unknown utterance %r", self.session_id, index)
            return
        entry = self._pending.pop(index, None)
        if entry is None and self._audio is not None:
            latency = time.perf_counter() - self._audio.last_sent_at
            self._streamed(index, _translation(frame, latency))
            return
        if entry is None:
            log.warning("session %s: result for unknown utterance %r", self.session_id, index)
            return
        self._unanswered.pop(index, None)
        handle, future = entry
        if not future.done():
            future.set_result(_translation(frame, time.perf_counter() - handle.sent_at))

    def _on_error(self, error: ServerError) -> None:
        index = error.utterance_index
        if isinstance(error, Overloaded) and index is not None and self._resend_later(index, error):
            return
        if index is not None:
            self._unanswered.pop(index, None)
        entry = self._pending.pop(index, None) if index is not None else None
        if entry is not None:
            if not entry[1].done():
                entry[1].set_exception(error)
        elif index is not None and self._audio is not None:
            self._streamed(index, error)
        elif "seq" in error.details and self._audio is not None:
            self._audio.refused.append(error)  # a chunk refused at once, not an utterance
        elif isinstance(error, SessionClosed):
            self._end_reason = error  # the server ends the session; the socket closes next
        else:
            log.warning("session %s: %s", self.session_id, error)

    def _resend_later(self, index: int, error: Overloaded) -> bool:
        """Back off after an ``OVERLOADED``: hold the session, and the refused utterance with
        it; ``False`` when it is not ours to resend or its retries are used up (its handle
        then raises, and the session still holds the others)."""
        hold = self._hold
        kept = self._unanswered.get(index)
        if hold is None or kept is None or index not in self._pending or self.closed:
            return False
        frame, retries, ticket = kept
        delay = backoff_delay(error.retry_after_ms, retries, self._rng.random())
        until = asyncio.get_running_loop().time() + delay
        if retries >= self._overload_retries:
            hold.refused(until)
            self._start_releaser()
            return False
        self._unanswered[index] = (frame, retries + 1, ticket)
        self._pending[index][0].resends = retries + 1
        hold.refused(until, ticket, index)
        self._start_releaser()
        return True

    def _start_releaser(self) -> None:
        if self._releaser is None:
            self._releaser = asyncio.get_running_loop().create_task(self._release())

    async def _release(self) -> None:
        """The hold's one timer: sleep until it has passed (a refusal meanwhile lengthens it),
        send the held utterances in order, and lift it once none is left."""
        hold = self._hold
        assert hold is not None
        loop = asyncio.get_running_loop()
        try:
            while not self.closed:
                wait = hold.wait(loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                index = hold.release()
                if index is None:
                    return  # lifted: nothing awaited since the last look, so nothing slipped by
                kept = self._unanswered.get(index)
                if kept is not None and index in self._pending and not await self._send(kept[0]):
                    self._fail(index, ConnectionLost("the connection is gone"))
        finally:
            self._releaser = None

    def _fail(self, index: int, reason: SessionClosed) -> None:
        entry = self._pending.pop(index, None)
        self._unanswered.pop(index, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(_fresh(self._end_reason or reason))

    def _streamed(self, index: int, answer: Translation | ServerError) -> None:
        """An answer to no utterance this SDK sent: a streamed one.  Later indexes chosen by
        :meth:`send` stay above it."""
        self._next_index = max(self._next_index, index + 1)
        assert self._audio is not None
        self._audio._put(answer)

    def _on_partial(self, frame: Mapping[str, Any]) -> None:
        partial = Partial(
            utterance_index=int(frame.get("utterance_index", -1)),
            job_id=str(frame.get("job_id", "")),
            text=str(frame.get("text", "")),
            is_final=bool(frame.get("is_final", False)),
        )
        for stream in self._streams:
            stream.put(partial)

    # --- closing ----------------------------------------------------------------------------

    def _end(self, reason: SessionClosed) -> None:
        """The session is over: every unanswered handle fails, every partial stream ends."""
        if self._ended.is_set():
            return
        failure = self._end_reason or reason
        self._end_reason = failure
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(_fresh(failure))
                # An unawaited handle of a closed session is not an error worth a log line.
                future.add_done_callback(_retrieve)
        self._pending.clear()
        self._unanswered.clear()
        if self._hold is not None:
            self._hold.clear()
        if self._releaser is not None:
            self._releaser.cancel()
        for stream in self._streams:
            stream.end()
        self._streams.clear()
        self.rooms.end()
        if self._audio is not None:
            self._audio._end()
        self._ended.set()

    async def close(self, reason: str = "client closed", *, ack_wait: float = 5.0) -> None:
        """``session_close``, wait for ``session_close_ack``, close the socket.  Utterances
        still unanswered fail with :class:`SessionClosed` (the server drops them, §2)."""
        self._closing = SessionClosed("the session was closed with this utterance unanswered")
        if not self._ended.is_set() and not self._ws.closed:
            sent = await self._send(
                {"type": "session_close", "session_id": self.session_id, "reason": reason}
            )
            if sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._close_acked.wait(), ack_wait)
        self._end(self._closing)
        if self._beats is not None:
            self._beats.cancel()
        with contextlib.suppress(*_SEND_ERRORS):
            await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, *(b for b in [self._beats] if b), return_exceptions=True)
        await self._http.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


_Make = Callable[
    [aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, Mapping[str, Any]], Session
]


class SessionOpener:
    """What :meth:`Session.connect` returns: ``await`` it, or ``async with`` it."""

    def __init__(
        self,
        make: _Make,
        url: str,
        init: Mapping[str, Any],
        timeout: float,
    ) -> None:
        self._make = make
        self._url = url
        self._init = init
        self._timeout = timeout
        self._session: Session | None = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._open().__await__()

    async def __aenter__(self) -> Session:
        self._session = await self._open()
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def _open(self) -> Session:
        http = aiohttp.ClientSession()
        try:
            ws, ack = await self._handshake(http)
        except BaseException:
            await http.close()
            raise
        session: Session = self._make(http, ws, ack)
        return session

    async def _handshake(
        self, http: aiohttp.ClientSession
    ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
        try:
            async with asyncio.timeout(self._timeout):
                ws = await http.ws_connect(self._url, autoping=True, max_msg_size=0, compress=0)
                await ws.send_frame(_encode(self._init), aiohttp.WSMsgType.TEXT)
                message = await ws.receive()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise ConnectFailed(f"cannot open a session at {self._url}: {detail}") from None
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectFailed(f"{self._url} closed the connection during session_init")
        try:
            frame = _decode(message.data)
        except msgspec.DecodeError:
            raise ConnectFailed(f"{self._url} answered session_init with garbage") from None
        if frame.get("type") == "error":
            raise error_from_frame(frame)
        if frame.get("type") != "session_init_ack" or not frame.get("session_id"):
            raise ConnectFailed(f"{self._url} answered session_init with {frame.get('type')!r}")
        return ws, frame


def _translation(frame: Mapping[str, Any], latency_s: float) -> Translation:
    group_id = frame.get("group_id")
    part_index = frame.get("part_index")
    missing = frame.get("type") == "missing_result"
    return Translation(
        utterance_index=int(frame["utterance_index"]),
        job_id=str(frame.get("job_id", "")),
        node_id=str(frame.get("node_id", "")),
        trace_id=str(frame.get("trace_id", "")),
        text_asr=str(frame.get("text_asr", "")),
        text_translated=str(frame.get("text_translated", "")),
        tts_audio=str(frame.get("tts_audio", "")),
        tts_format=str(frame.get("tts_format", "")),
        latency_s=latency_s,
        fields=dict(frame),
        group_id=group_id if isinstance(group_id, str) else None,
        part_index=part_index if isinstance(part_index, int) else None,
        missing_reason=str(frame.get("reason") or "unknown") if missing else None,
    )


def _fresh(reason: SessionClosed) -> SessionClosed:
    """A new exception like ``reason``: one instance raised in many places would pile up
    every place's traceback on itself."""
    return type(reason)(reason.message, code=reason.code, details=reason.details)


def _retrieve(future: asyncio.Future[Translation]) -> None:
    if not future.cancelled():
        future.exception()
