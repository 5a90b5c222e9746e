"""The limits of docs/security.md, end to end: each answered with its error, then the close
(protocol.md §3), and each configurable (§6)."""

from __future__ import annotations

import asyncio
import json
import time

from switchboard.chaos.ledger import Ledger
from switchboard.chaos.slow import SlowConsumer
from tests.e2e.harness import FakeNode, NodeBehaviour, b64, eventually, scaled
from tests.security.clients import Client, session_init
from tests.security.conftest import Serve


async def test_no_handshake_in_time_is_handshake_timeout_then_1008(serve: Serve) -> None:
    """A connection that sends nothing within --handshake-timeout gets HANDSHAKE_TIMEOUT (not
    UNAUTHORIZED: nothing says its credentials are wrong, and a node should retry) and 1008."""
    server = await serve("--handshake-timeout", str(scaled(0.5)))
    for path in ("/ws/node", "/ws/session"):
        client = await Client.connect(server, path)
        started = time.monotonic()
        assert await client.refused() == ("HANDSHAKE_TIMEOUT", 1008), path
        assert time.monotonic() - started >= scaled(0.5) * 0.8
        await client.close()


async def test_frame_of_exactly_max_bytes_passes_one_more_is_payload_too_large(
    serve: Serve,
) -> None:
    """--max-frame-bytes is the largest frame accepted (aiohttp's own limit is one lower, and
    is set one higher to match): a frame of that size is served; one byte more gets
    PAYLOAD_TOO_LARGE with the limit, then close 1009 — also as the very first frame."""
    server = await serve("--max-frame-bytes", "2000")
    client = await Client.connect(server, "/ws/session")
    await client.send(session_init())
    ack = await client.receive()
    assert ack is not None and ack["type"] == "session_init_ack"
    beat = {"type": "client_heartbeat", "session_id": ack["session_id"], "timestamp": 1, "pad": ""}
    beat["pad"] = "x" * (2000 - len(json.dumps(beat)))
    await client.ws.send_str(json.dumps(beat))
    answer = await client.receive()
    assert answer is not None and answer["type"] == "server_heartbeat", answer
    beat["pad"] += "x"
    await client.ws.send_str(json.dumps(beat))
    error = await client.receive()
    assert error is not None and error["code"] == "PAYLOAD_TOO_LARGE", error
    assert error["details"] == {"max_frame_bytes": 2000}
    assert await client.receive() is None and client.ws.close_code == 1009
    await client.close()

    first = await Client.connect(server, "/ws/node")
    await first.ws.send_str("x" * 2001)
    assert await first.refused() == ("PAYLOAD_TOO_LARGE", 1009)
    await first.close()
    await server.wait_stats(lambda s: s["sessions"] == 0, "the refused session is gone")


async def test_max_sessions_refuses_one_more_with_too_many_sessions(serve: Serve) -> None:
    """With --max-sessions 2, a third session_init gets TOO_MANY_SESSIONS, then 1008; once a
    session closes, a new one opens."""
    server = await serve("--max-sessions", "2")
    clients = [await Client.connect(server, "/ws/session") for _ in range(3)]
    for client in clients[:2]:
        await client.send(session_init())
        ack = await client.receive()
        assert ack is not None and ack["type"] == "session_init_ack"
    await clients[2].send(session_init())
    assert await clients[2].refused() == ("TOO_MANY_SESSIONS", 1008)
    await clients[0].close()
    await server.wait_stats(lambda s: s["sessions"] == 1, "one session left")
    again = await Client.connect(server, "/ws/session")
    await again.send(session_init())
    ack = await again.receive()
    assert ack is not None and ack["type"] == "session_init_ack"
    for client in [*clients[1:], again]:
        await client.close()


async def test_connections_per_address_count_handshakes_and_loopback(serve: Serve) -> None:
    """With --max-connections-per-address 2, two connections from 127.0.0.1 that have sent
    nothing yet (loopback counts too) leave no room for a third on either channel:
    TOO_MANY_CONNECTIONS, then 1008.  Another address is counted apart; a closed connection
    frees its place."""
    server = await serve("--max-connections-per-address", "2")
    held = [await Client.connect(server, "/ws/session") for _ in range(2)]
    for path in ("/ws/node", "/ws/session"):
        third = await Client.connect(server, path)
        assert await third.refused() == ("TOO_MANY_CONNECTIONS", 1008), path
        await third.close()
    other = await Client.connect(server, "/ws/session", source="127.0.0.2")
    await other.send(session_init())
    ack = await other.receive()
    assert ack is not None and ack["type"] == "session_init_ack"
    await held[0].close()

    async def admitted() -> bool:
        client = await Client.connect(server, "/ws/session")
        await client.send(session_init())
        frame = await client.receive()
        await client.close()
        return frame is not None and frame["type"] == "session_init_ack"

    await eventually(admitted, "a place from 127.0.0.1 again")
    for client in [held[1], other]:
        await client.close()


async def test_zero_turns_the_per_address_limit_off(serve: Serve) -> None:
    server = await serve("--max-connections-per-address", "0")
    clients = [await Client.connect(server, "/ws/session") for _ in range(40)]
    for client in clients:
        await client.send(session_init())
    for client in clients:
        frame = await client.receive()
        assert frame is not None and frame["type"] == "session_init_ack", frame
    for client in clients:
        await client.close()


async def test_a_client_that_never_reads_is_cut_off_and_frees_its_place(serve: Serve) -> None:
    """A session that stops reading while answers keep coming is ended past
    --session-outbox-limit, and its connection is gone within the close timeout
    (--handshake-timeout) although it never reads again: its place under
    --max-connections-per-address comes back."""
    server = await serve(
        "--session-outbox-limit", "8",
        "--handshake-timeout", str(scaled(1.0)),
        "--max-connections-per-address", "1",
    )  # fmt: skip
    node = FakeNode(
        server.ws_url + "/ws/node",
        behaviour=NodeBehaviour(extra={"tts_audio": b64(b"\0" * 64 * 1024)}),
        max_concurrency=64,
    )
    await node.connect()
    await node.register()
    await node.heartbeat()
    await server.wait_node_status(str(node.node_id), "ready")
    ledger = Ledger()
    hog = SlowConsumer(server.host, server.port, ledger, time.monotonic, source="127.0.0.3")
    await hog.open()
    stop = asyncio.Event()
    flood = asyncio.create_task(hog.flood(rate=300, until=stop))
    try:
        await server.wait_stats(lambda s: s["sessions"] == 0, "the hog ended", within=10)
    finally:
        stop.set()
        await flood

    async def place_is_free() -> bool:
        client = await Client.connect(server, "/ws/session", source="127.0.0.3")
        await client.send(session_init())
        frame = await client.receive()
        await client.close()
        return frame is not None and frame["type"] == "session_init_ack"

    await eventually(place_is_free, "the hog's connection dropped", within=scaled(1.0) + 5)
    await hog.close()
    await node.close()
