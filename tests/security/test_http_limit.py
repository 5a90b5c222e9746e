"""--max-http-requests-per-address end to end (docs/security.md): plain HTTP requests in
progress from one address are capped, the one too many gets 429 with a JSON body and its
connection closed; other addresses and WebSocket connections are not affected."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from tests.e2e.harness import DEFAULT_WAIT, ServerProcess, eventually, scaled
from tests.security.clients import Client, session_init
from tests.security.conftest import Serve

BODY = json.dumps({"pools": []}).encode()


class HeldRequest:
    """A ``PUT /api/v1/pools`` whose body stops half-way: its handler is running, waiting for
    the rest (a slow upload, or a client holding requests open on purpose)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def start(cls, server: ServerProcess, *, source: str = "127.0.0.1") -> HeldRequest:
        reader, writer = await asyncio.open_connection(
            server.host, server.port, local_addr=(source, 0)
        )
        head = (
            f"PUT /api/v1/pools HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        )
        writer.write(head.encode() + BODY[:5])
        await writer.drain()
        return cls(reader, writer)

    async def finish(self) -> bytes:
        """Send the rest of the body; the status line of the answer."""
        self.writer.write(BODY[5:])
        await self.writer.drain()
        async with asyncio.timeout(scaled(DEFAULT_WAIT)):
            return await self.reader.readline()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def _get(
    server: ServerProcess, path: str, *, source: str = "127.0.0.1"
) -> tuple[int, Any, Mapping[str, str]]:
    timeout = aiohttp.ClientTimeout(total=scaled(DEFAULT_WAIT))
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        http.get(server.url + path) as resp,
    ):
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, body, dict(resp.headers)


async def test_one_request_too_many_from_an_address_is_429_and_the_rest_unaffected(
    serve: Serve,
) -> None:
    """With --max-http-requests-per-address 2 and two requests held in progress from
    127.0.0.1, a third request from there gets 429 with a JSON error, Retry-After and
    Connection: close; 127.0.0.2 is served, and so is a WebSocket session from 127.0.0.1.
    Once the held requests finish, 127.0.0.1 is served again."""
    server = await serve("--max-http-requests-per-address", "2")
    held = [await HeldRequest.start(server) for _ in range(2)]

    async def refused() -> bool:
        return (await _get(server, "/health/live"))[0] == 429

    # The held requests count once the server has read their headers.
    await eventually(refused, "the third request from 127.0.0.1 refused")
    for path in ("/metrics", "/api/v1/stats", "/health"):
        status, body, headers = await _get(server, path)
        assert status == 429, (path, status, body)
        assert body["error"] == "TOO_MANY_REQUESTS" and "limit 2" in body["message"]
        assert headers["Retry-After"] == "1" and headers["Connection"] == "close"
    assert (await _get(server, "/health/live", source="127.0.0.2"))[0] == 200

    session = await Client.connect(server, "/ws/session")
    await session.send(session_init())
    ack = await session.receive()
    assert ack is not None and ack["type"] == "session_init_ack"

    for request in held:
        assert (await request.finish()).startswith(b"HTTP/1.1 200"), "held request served"
        await request.close()
    status, _, _ = await _get(server, "/api/v1/stats")
    assert status == 200
    await session.close()


async def test_open_websockets_do_not_count_against_the_http_limit(serve: Serve) -> None:
    """Three open WebSocket sessions from one address leave a limit of 1 HTTP request free."""
    server = await serve("--max-http-requests-per-address", "1")
    sessions = [await Client.connect(server, "/ws/session") for _ in range(3)]
    for session in sessions:
        await session.send(session_init())
        assert await session.receive() is not None
    status, body, _ = await _get(server, "/api/v1/stats")
    assert status == 200 and body["sessions"] == 3
    for session in sessions:
        await session.close()


async def test_zero_turns_the_http_limit_off(serve: Serve) -> None:
    server = await serve("--max-http-requests-per-address", "0")
    held = [await HeldRequest.start(server) for _ in range(40)]

    async def served() -> bool:
        return (await _get(server, "/health/live"))[0] == 200

    await eventually(served, "a request beside 40 held ones")
    for request in held:
        await request.close()


async def test_an_abandoned_request_gives_its_place_back(serve: Serve) -> None:
    """A client that hangs up half-way through its upload does not keep its place: with a
    limit of 1, the address is served again once that connection is gone."""
    server = await serve("--max-http-requests-per-address", "1")
    held = await HeldRequest.start(server)

    async def refused() -> bool:
        return (await _get(server, "/health/live"))[0] == 429

    await eventually(refused, "the held request takes the only place")
    await held.close()

    async def served() -> bool:
        return (await _get(server, "/health/live"))[0] == 200

    await eventually(served, "the abandoned request's place given back")
