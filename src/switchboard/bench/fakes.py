"""The load generator's fake nodes and sessions (contract §1 and §2, just enough of them).

Both live in the generator process and stamp times with ``time.perf_counter`` — on Linux
``CLOCK_MONOTONIC``, one clock for every process of the machine — so "session sent" and "node
received" are comparable even when they sit in different generator processes.  The send time
travels inside the utterance as the opaque field ``bench_t0``, which the scheduler relays
unchanged in ``job_assign`` (contract §1), so no table has to match jobs to utterances.

A fake node is the tools' (``switchboard.tools.fakenode``) on this module's raw socket; it
answers after a latency drawn from the stand-in backend's model
(``switchboard.agent.pseudo.LatencyModel``: lognormal from a median and a p99, seeded).

A fake session sends what it is asked to at once, whatever the scheduler answers (``open``),
or, given a ``hint`` random source, backs off after ``OVERLOADED`` as the SDK does
(``switchboard.client.backoff``): the whole session holds its sends for the
``retry_after_ms`` hint (jittered, doubling while the same utterance is refused), then sends
the refused utterance and the held ones in their order; an utterance refused again after
:data:`HINT_RESENDS` resends is given up, and that ``OVERLOADED`` is its answer.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from switchboard.agent.pseudo import LatencyModel
from switchboard.bench import wsclient
from switchboard.client.backoff import Hold, backoff_delay
from switchboard.tools import fakenode
from switchboard.tools.fakenode import Conduct

Pair = tuple[str, str]
_encode = msgspec.json.encode
SHED_CODE = "OVERLOADED"  # contract §7 "Saturation": the code a hint-following client backs off on
HINT_RESENDS = 3  # a hint-following session gives an utterance up after this many resends


@dataclass(slots=True)
class Tally:
    """What the fake peers of one generator process saw."""

    ext: array[float] = field(default_factory=lambda: array("d"))  # (sent at, → node) pairs
    rtt: array[float] = field(default_factory=lambda: array("d"))  # (sent at, → answer) pairs
    failed: array[float] = field(default_factory=lambda: array("d"))  # sent at, error answers
    # (sent at, → error answer) pairs per code, for errors in the ordered stream (accepted
    # utterances) and for refusals outside it: how fast each answer arrives (E5).
    error_rtt: dict[str, array[float]] = field(default_factory=dict)
    reject_rtt: dict[str, array[float]] = field(default_factory=dict)
    sent: int = 0
    results: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    assigns: int = 0  # job_assign frames received by nodes, retries included
    cancels: int = 0
    node_errors: Counter[str] = field(default_factory=Counter)
    dropped_unanswered: int = 0  # pending when its session ended on purpose
    unsent: int = 0  # paced plan: due by its schedule, skipped because the generator lagged
    stray: int = 0  # answers to no utterance pending: a second answer, or one never sent
    # Sessions that follow the hint (E5 ``--e5-clients hint``); all 0 for the others.
    asked: int = 0  # utterances the plan asked the sessions to send (the offered schedule)
    deferred: int = 0  # of those, asked for while their session held: first sent later
    resends: int = 0  # frames sent again after an OVERLOADED (on the wire: sent + resends)
    refusals: int = 0  # OVERLOADED answers received, the ones backed off on included
    given_up: int = 0  # refused again after HINT_RESENDS resends: answered OVERLOADED
    sent_while_held: int = 0  # frames written while their session held: must stay 0
    # (first asked at, → answer) pairs of accepted utterances: the wait a user feels.
    first_rtt: array[float] = field(default_factory=lambda: array("d"))

    @property
    def answered(self) -> int:
        return self.results + sum(self.errors.values()) + sum(self.rejected.values())


# --- nodes -------------------------------------------------------------------------------------


class _Assign(msgspec.Struct):
    type: str
    job_id: str = ""
    attempt_id: int = 0
    session_id: str = ""
    utterance_index: int = 0
    trace_id: str = ""
    bench_t0: float | None = None
    code: str | None = None
    node_id: str | None = None


_assign_decoder = msgspec.json.Decoder(_Assign)


_HARDWARE = {"cpu_cores": 8, "memory_gb": 32, "gpus": [{"name": "stand-in"}]}
_USAGE = {"cpu_percent": 20.0, "mem_percent": 30.0}


class FakeNode:
    """The tools' fake node (``switchboard.tools.fakenode``: its frames, its :class:`Conduct`)
    on the benchmark's raw socket: a bare ``job_result`` after a latency drawn from ``latency``,
    no ``job_ack``, as Lingua's Electron node answers."""

    def __init__(
        self,
        node_id: str,
        pairs: Sequence[Pair],
        *,
        max_concurrency: int,
        latency: LatencyModel,
        tally: Tally,
        rng: random.Random,
    ) -> None:
        self.node_id = node_id
        self.pairs = tuple(pairs)
        self.max_concurrency = max_concurrency
        self.latency = latency
        self.conduct = Conduct(model=latency, acks=False)
        self.tally = tally
        self.rng = rng
        self.ws: wsclient.WSClient | None = None
        self.running: dict[str, asyncio.TimerHandle] = {}
        self._registered: asyncio.Future[None] | None = None

    @property
    def healthy(self) -> bool:
        """Whether its heartbeats report its services ready (the storm flips it)."""
        return self.conduct.ready

    @healthy.setter
    def healthy(self, ready: bool) -> None:
        self.conduct.ready = ready

    async def connect(self, host: str, port: int) -> None:
        self._registered = asyncio.get_running_loop().create_future()
        self.ws = await wsclient.connect(host, port, "/ws/node", self._on_message)
        self.ws.send(_encode(self._register()))
        async with asyncio.timeout(10):
            await self._registered
        self.heartbeat()  # registering → ready now, not at the first periodic beat

    def _register(self) -> dict[str, Any]:
        return fakenode.register_message(
            self.node_id,
            self.pairs,
            version="bench",
            services=fakenode.all_services(self.healthy),
            max_concurrency=self.max_concurrency,
            hardware=_HARDWARE,
            platform="linux-x64",
        )

    def heartbeat(self) -> None:
        if self.ws is None:
            return
        message = fakenode.heartbeat_message(
            self.node_id,
            running_jobs=len(self.running),
            services=fakenode.all_services(self.healthy),
            usage=_USAGE,
        )
        self.ws.send(_encode(message))

    def _on_message(self, payload: bytes) -> None:
        now = time.perf_counter()
        msg = _assign_decoder.decode(payload)
        if msg.type == "job_assign":
            self._assigned(msg, now)
        elif msg.type == "job_cancel":
            self.tally.cancels += 1
            handle = self.running.pop(msg.job_id, None)
            if handle is not None:
                handle.cancel()
        elif msg.type == "node_register_ack" and self._registered is not None:
            if not self._registered.done():
                self._registered.set_result(None)
        elif msg.type == "error":
            self.tally.node_errors[msg.code or "?"] += 1

    def _assigned(self, msg: _Assign, now: float) -> None:
        self.tally.assigns += 1
        if msg.attempt_id == 1 and msg.bench_t0 is not None:
            self.tally.ext.append(msg.bench_t0)
            self.tally.ext.append(now - msg.bench_t0)
        delay = self.conduct.delay(self.rng)
        if delay == 0.0:
            # An instant node (scenario E0) answers from this handler, as a node that has
            # the result at hand would, not one loop iteration later.
            self._finish(msg)
            return
        loop = asyncio.get_running_loop()
        self.running[msg.job_id] = loop.call_later(delay, self._finish, msg)

    def _finish(self, msg: _Assign) -> None:
        self.running.pop(msg.job_id, None)
        if self.ws is None:
            return
        assign = {
            "job_id": msg.job_id,
            "attempt_id": msg.attempt_id,
            "session_id": msg.session_id,
            "utterance_index": msg.utterance_index,
            "trace_id": msg.trace_id,
        }
        result = fakenode.result_message(
            assign, self.node_id, text_asr="stand-in", text_translated="[bench] stand-in"
        )
        self.ws.send(_encode(result))

    def leave(self) -> None:
        """Disconnect at once (running jobs are retried elsewhere by the scheduler)."""
        for handle in self.running.values():
            handle.cancel()
        self.running.clear()
        if self.ws is not None:
            self.ws.abort()
            self.ws = None


# --- sessions ----------------------------------------------------------------------------------


class _Answer(msgspec.Struct):
    type: str
    session_id: str | None = None
    utterance_index: int | None = None
    job_id: str | None = None
    node_id: str | None = None
    code: str | None = None
    details: dict[str, Any] | None = None


_answer_decoder = msgspec.json.Decoder(_Answer)
_RESULT_TYPES = frozenset({"translation_result", "missing_result"})  # one answer each


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer as the client saw it (kept only when a session logs answers: replay)."""

    index: int
    kind: str  # "result", "error" or "rejected"
    job_id: str | None
    node_id: str | None
    code: str | None
    at: float


def audio_b64(size: int, *, seed: int = 0) -> bytes:
    """``size`` bytes of stand-in audio, base64 (as the wire carries it)."""
    return base64.b64encode(random.Random(seed).randbytes(size))


@dataclass(slots=True)
class _Asked:
    """What a hint-following session keeps of an utterance until its answer."""

    at: float  # first asked for
    pair: Pair | None
    ticket: int  # its place in the session's order
    written: bool = False
    resends: int = 0


class FakeSession:
    """One client session.  ``on_answer(session)`` runs after every answer (closed loops).
    With ``hint`` (a random source for the jitter) it backs off after ``OVERLOADED``."""

    def __init__(
        self,
        pair: Pair,
        *,
        tally: Tally,
        audio: bytes,
        on_answer: Callable[[FakeSession], None] | None = None,
        log_answers: bool = False,
        hint: random.Random | None = None,
    ) -> None:
        self.pair = pair
        self.tally = tally
        self.audio = audio
        self.on_answer = on_answer
        self.session_id = ""
        self.next_index = 0
        self.pending: dict[int, float] = {}  # index → sent at
        self.order: deque[int] = deque()  # pending indexes in send order
        self.answers: list[Answer] | None = [] if log_answers else None
        self.ws: wsclient.WSClient | None = None
        self._acked: asyncio.Future[str] | None = None
        self.closed = asyncio.Event()
        self.close_acked = False
        self._rng = hint
        self._hold = Hold() if hint is not None else None
        self._asked: dict[int, _Asked] = {}  # hint: every utterance asked for, until answered
        self._timer: asyncio.TimerHandle | None = None
        self._releasing = False

    @property
    def held(self) -> int:
        """Utterances held back by the back-off (not on the wire now)."""
        return 0 if self._hold is None else len(self._hold)

    @property
    def owed(self) -> int:
        """Utterances asked for and not yet answered: on the wire or held."""
        return len(self.pending) + self.held

    async def connect(
        self, host: str, port: int, init: dict[str, Any] | None = None, within: float = 10.0
    ) -> None:
        self._acked = asyncio.get_running_loop().create_future()
        self.ws = await wsclient.connect(
            host, port, "/ws/session", self._on_message, on_close=self.closed.set, within=within
        )
        first = init or {"src_lang": self.pair[0], "tgt_lang": self.pair[1]}
        self.ws.send(
            _encode(
                {"type": "session_init", "client_version": "bench", "platform": "bench", **first}
            )
        )
        async with asyncio.timeout(within):
            self.session_id = await self._acked

    def send(self, index: int | None = None, pair: Pair | None = None) -> int:
        """Send one utterance now (or, backing off, once the hold has passed); returns its
        index."""
        if index is None:
            index = self.next_index
        self.next_index = max(self.next_index, index + 1)
        hold = self._hold
        if hold is None:
            self._write(index, pair)
            return index
        asked = _Asked(time.perf_counter(), pair, hold.ticket())
        self._asked[index] = asked
        self.tally.asked += 1
        if hold.on:
            hold.defer(asked.ticket, index)
            self.tally.deferred += 1
        else:
            self._write(index, pair, asked)
        return index

    def _write(self, index: int, pair: Pair | None, asked: _Asked | None = None) -> None:
        if self._hold is not None and self._hold.on and not self._releasing:
            self.tally.sent_while_held += 1
        src, tgt = pair or self.pair
        sent = time.perf_counter()
        frame = b'{"type":"utterance","session_id":"%s","utterance_index":%d,' % (
            self.session_id.encode(),
            index,
        )
        frame += b'"src_lang":"%s","tgt_lang":"%s","audio_format":"pcm16",' % (
            src.encode(),
            tgt.encode(),
        )
        frame += b'"sample_rate":16000,"bench_t0":%r,"audio":"%s"}' % (sent, self.audio)
        if self.ws is None or not self.ws.send(frame):
            return
        self.pending[index] = sent
        self.order.append(index)
        if asked is not None and asked.written:
            self.tally.resends += 1
            return
        if asked is not None:
            asked.written = True
        self.tally.sent += 1

    def _back_off(self, index: int, msg: _Answer, now: float) -> bool:
        """An ``OVERLOADED`` for ``index``: hold the session for the hint and hold the
        utterance for a resend; ``False`` when it is given up (or not ours): then the
        refusal is its answer."""
        assert self._hold is not None and self._rng is not None
        asked = self._asked.get(index)
        sent = self.pending.get(index)
        if asked is None or sent is None:
            return False
        self.tally.refusals += 1
        hint = (msg.details or {}).get("retry_after_ms")
        hint_ms = hint if isinstance(hint, int) and hint >= 0 else None
        until = now + backoff_delay(hint_ms, asked.resends, self._rng.random())
        if asked.resends >= HINT_RESENDS:
            self.tally.given_up += 1
            self._hold.refused(until)
            self._arm()
            return False
        del self.pending[index]
        self.order.remove(index)
        # Each refusal is an OVERLOADED answer seen, as fast as the scheduler gave it.
        waited = self.tally.reject_rtt.setdefault(SHED_CODE, array("d"))
        waited.append(sent)
        waited.append(now - sent)
        asked.resends += 1
        self._hold.refused(until, asked.ticket, index)
        self._arm()
        return True

    def _arm(self) -> None:
        """The hold's one timer."""
        if self._timer is None and self._hold is not None:
            wait = max(0.0, self._hold.wait(time.perf_counter()))
            self._timer = asyncio.get_running_loop().call_later(wait, self._release)

    def _release(self) -> None:
        """The hold has passed (unless a refusal lengthened it): send what it held, in
        order, at once, and lift it."""
        self._timer = None
        hold = self._hold
        if hold is None or self.ws is None:
            return
        if hold.wait(time.perf_counter()) > 0:
            self._arm()
            return
        self._releasing = True
        try:
            while (index := hold.release()) is not None:
                asked = self._asked.get(index)
                if asked is not None:
                    self._write(index, asked.pair, asked)
        finally:
            self._releasing = False

    def _on_message(self, payload: bytes) -> None:
        now = time.perf_counter()
        msg = _answer_decoder.decode(payload)
        kind = msg.type
        if kind in _RESULT_TYPES and msg.utterance_index is not None:
            self._answered(msg.utterance_index, "result", msg, now)
        elif kind == "error":
            self._error(msg, now)
        elif kind == "session_init_ack" and self._acked is not None and not self._acked.done():
            self._acked.set_result(msg.session_id or "")
        elif kind == "session_close_ack":
            self.close_acked = True

    def _error(self, msg: _Answer, now: float) -> None:
        details = msg.details or {}
        index = details.get("utterance_index")
        if not isinstance(index, int):
            if self._acked is not None and not self._acked.done():
                self._acked.set_exception(ConnectionError(f"refused: {msg.code}"))
            return
        self._answered(index, "error" if "job_id" in details else "rejected", msg, now)

    def _hinted(self, index: int, kind: str, msg: _Answer, now: float) -> bool:
        """A hint-following session's answer: ``True`` when it was an ``OVERLOADED`` backed
        off on (not the utterance's answer yet)."""
        if kind != "result" and msg.code == SHED_CODE and self._back_off(index, msg, now):
            return True
        asked = self._asked.pop(index, None)
        if asked is not None and index in self.pending and msg.code != SHED_CODE:
            self.tally.first_rtt.append(asked.at)
            self.tally.first_rtt.append(now - asked.at)
        return False

    def _answered(self, index: int, kind: str, msg: _Answer, now: float) -> None:
        if self._hold is not None and self._hinted(index, kind, msg, now):
            return
        if index not in self.pending:
            self.tally.stray += 1
        sent = self.pending.pop(index, None)
        if kind != "result":
            self._failed(sent, kind, msg, now)
        if kind == "rejected":
            self.tally.rejected[msg.code or "?"] += 1
            if sent is not None:
                self.order.remove(index)
        else:
            if self.order and self.order[0] != index:
                self.tally.out_of_order += 1  # contract §2: answers in arrival order
            if sent is not None:
                self.order.remove(index)
            if kind == "result":
                self.tally.results += 1
                if sent is not None:
                    self.tally.rtt.append(sent)
                    self.tally.rtt.append(now - sent)
            else:
                self.tally.errors[msg.code or "?"] += 1
        if self.answers is not None:
            self._log(index, kind, msg, now)
        if self.on_answer is not None:
            self.on_answer(self)

    def _failed(self, sent: float | None, kind: str, msg: _Answer, now: float) -> None:
        self.tally.failed.append(sent if sent is not None else now)
        if sent is not None:
            by_code = self.tally.reject_rtt if kind == "rejected" else self.tally.error_rtt
            waited = by_code.setdefault(msg.code or "?", array("d"))
            waited.append(sent)
            waited.append(now - sent)

    def _log(self, index: int, kind: str, msg: _Answer, now: float) -> None:
        assert self.answers is not None
        job_id = msg.job_id or _str((msg.details or {}).get("job_id"))
        node_id = msg.node_id or _str((msg.details or {}).get("node_id"))
        self.answers.append(Answer(index, kind, job_id, node_id, msg.code, now))

    def close(self) -> None:
        """``session_close``; pending utterances go unanswered (contract §2 "Ending")."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.ws is not None:
            self.tally.dropped_unanswered += self.owed
            self.ws.send(
                _encode({"type": "session_close", "session_id": self.session_id, "reason": "done"})
            )
            # The server acknowledges, then closes the socket; do not wait forever for it.
            asyncio.get_running_loop().call_later(5.0, self.ws.abort)

    def abandon(self) -> None:
        """Disconnect without a word, as a crashed client does."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.ws is not None:
            self.tally.dropped_unanswered += self.owed
            self.ws.abort()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
