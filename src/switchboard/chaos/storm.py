"""A connection storm: thousands of sessions connect at once, some send an utterance, all drop.

The sessions come from several loopback addresses (127.0.0.2, 127.0.0.3, …: Linux routes all
of 127.0.0.0/8 to ``lo``), at most ``per_address`` from each, so the storm tests the scheduler's
handling of a burst rather than its per-address limit.  Each drops its connection abruptly
(the TCP connection is aborted: no ``session_close``, no close frame), the way a crowd of
phones losing the network would; their unanswered utterances are cut, as contract §2 allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import msgspec

from switchboard.chaos.ledger import Ledger
from switchboard.chaos.sessions import CLIENT_DROPPED, Clock, init_message, utterance_message

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_FIRST_HOST: Final = 2  # 127.0.0.2


@dataclass(slots=True)
class StormOutcome:
    attempted: int = 0
    opened: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)  # connect errors, by exception type
    seconds: float = 0.0


async def storm(
    ws_url: str,
    ledger: Ledger,
    clock: Clock,
    *,
    sessions: int,
    per_address: int,
    with_utterance: float = 0.5,
) -> StormOutcome:
    """Connect ``sessions`` sessions at once; the first ``with_utterance`` share send one
    utterance; then all drop."""
    outcome = StormOutcome(attempted=sessions)
    started = clock()
    addresses = -(-sessions // per_address)
    clients = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{_FIRST_HOST + n}", 0), limit=0),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        for n in range(addresses)
    ]
    go = asyncio.Event()
    speak = int(sessions * with_utterance)
    try:
        tasks = [
            _one(clients[n // per_address], ws_url, ledger, clock, go, n < speak, outcome)
            for n in range(sessions)
        ]
        go.set()
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
    outcome.seconds = clock() - started
    return outcome


async def _one(
    http: aiohttp.ClientSession,
    ws_url: str,
    ledger: Ledger,
    clock: Clock,
    go: asyncio.Event,
    speak: bool,
    outcome: StormOutcome,
) -> None:
    await go.wait()
    try:
        ws = await http.ws_connect(ws_url.rstrip("/") + "/ws/session", max_msg_size=0)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        outcome.failed[type(exc).__name__] += 1
        return
    try:
        await ws.send_frame(_encode(init_message("en", "de")), aiohttp.WSMsgType.TEXT)
        first = await ws.receive(timeout=30)
        if first.type is not aiohttp.WSMsgType.TEXT:
            outcome.failed["closed before ack"] += 1
            return
        ack = _decode(first.data)
        if ack.get("type") != "session_init_ack":
            outcome.refused[str(ack.get("code"))] += 1
            return
        outcome.opened += 1
        if speak:
            line = ledger.open_line()
            frame = utterance_message(str(ack["session_id"]), 0, "en", "de")
            ledger.sent(line, 0, clock())
            await ws.send_frame(_encode(frame), aiohttp.WSMsgType.TEXT)
            ledger.end_line(line, CLIENT_DROPPED, clock())
    except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
        outcome.failed[type(exc).__name__] += 1
    finally:
        _abort(ws)


def _abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop the TCP connection with no closing handshake of any kind."""
    connection = getattr(ws, "_conn", None)
    transport = getattr(getattr(connection, "protocol", None), "transport", None)
    if transport is not None:
        transport.abort()
