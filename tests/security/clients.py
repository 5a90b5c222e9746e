"""A bare WebSocket client for the security tests: any source address on the loopback network
(Linux routes all of 127.0.0.0/8 to ``lo``), every frame kept, the close code read."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp

from tests.e2e.harness import DEFAULT_WAIT, ServerProcess, scaled


class Client:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.texts: list[str] = []

    @classmethod
    async def connect(
        cls, server: ServerProcess, path: str, *, source: str = "127.0.0.1"
    ) -> Client:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        http = aiohttp.ClientSession(connector=connector)
        try:
            ws = await http.ws_connect(server.ws_url + path, max_msg_size=0)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def receive(self, within: float = DEFAULT_WAIT) -> dict[str, Any] | None:
        """The next text frame as JSON, or None once the socket is closed."""
        while True:
            message = await self.ws.receive(timeout=scaled(within))
            if message.type is aiohttp.WSMsgType.TEXT:
                self.texts.append(message.data)
                frame: dict[str, Any] = json.loads(message.data)
                return frame
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return None

    async def refused(self, within: float = DEFAULT_WAIT) -> tuple[str | None, int | None]:
        """``(error code, close code)`` of a connection the server refuses."""
        frame = await self.receive(within)
        code = frame.get("code") if frame and frame.get("type") == "error" else None
        rest = await self.receive(within)
        assert rest is None, f"more frames after the refusal: {rest}"
        return code, self.ws.close_code

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.http.close()


def session_init(**extra: Any) -> dict[str, Any]:
    return {
        "type": "session_init",
        "client_version": "1",
        "platform": "security",
        "src_lang": "en",
        "tgt_lang": "de",
        **extra,
    }
