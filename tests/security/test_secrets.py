"""Secrets never leave the scheduler (style.md 7, docs/security.md): not in its log (at debug
level), not in /metrics or the operator API, not in any frame — whatever peers try."""

from __future__ import annotations

import asyncio
import json

import pytest

from switchboard.tools.procs import free_port
from tests.e2e.harness import FakeNode, ServerProcess, b64
from tests.security.clients import Client, session_init
from tests.security.conftest import Serve

# Distinctive strings: if any of them shows up anywhere, it leaked.
NODE_TOKEN = "nodetok-7Hq2Xv9LmZ"
SESSION_TOKEN = "sesstok-3Kp8Rw1YdN"
ADMIN_TOKEN = "admintok-5Jt6Fc4BsQ"
SECRETS = (NODE_TOKEN, SESSION_TOKEN, ADMIN_TOKEN)
TOKEN_FLAGS = (
    "--node-token", NODE_TOKEN,
    "--session-token", SESSION_TOKEN,
    "--admin-token", ADMIN_TOKEN,
    "--log-level", "debug",
)  # fmt: skip


async def _knock(server: ServerProcess, path: str, message: dict[str, object]) -> list[str]:
    client = await Client.connect(server, path)
    await client.send(message)
    while await client.receive() is not None:
        pass
    await client.close()
    return client.texts


async def _wrong_tokens(server: ServerProcess) -> list[str]:
    """Every way of getting a token wrong, on every channel; the texts the server sent."""
    node = FakeNode(server.ws_url + "/ws/node", node_id="n").register_message()
    texts: list[str] = []
    for own, other in ((NODE_TOKEN, SESSION_TOKEN), (SESSION_TOKEN, NODE_TOKEN)):
        path = "/ws/node" if own == NODE_TOKEN else "/ws/session"
        first = node if own == NODE_TOKEN else session_init()
        for token in (None, "", "wrong", own + "x", own[:-1], other, 12345, [own], {"t": own}):
            texts += await _knock(server, path, {**first, "token": token})
    for header in (f"Bearer {ADMIN_TOKEN}x", f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN, "Bearer"):
        status, body = await _get(server, "/api/v1/nodes", header)
        assert status == 401, header
        texts.append(body)
    # Tokens in query strings, where a proxy or a script might put them: the access log
    # prints paths, never query strings.
    for secret in SECRETS:
        for path in ("/api/v1/nodes", "/metrics", "/no-such-page"):
            status, body = await _get(server, f"{path}?token={secret}&key={secret}", "")
            texts.append(body)
        for path in ("/ws/session", "/ws/node"):
            client = await Client.connect(server, f"{path}?key={secret}")
            await client.close()
    return texts


async def _get(server: ServerProcess, path: str, authorization: str) -> tuple[int, str]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + path, headers={"Authorization": authorization}) as resp,
    ):
        return resp.status, await resp.text()


async def _right_tokens(server: ServerProcess) -> list[str]:
    """A node and a session with the right tokens, an utterance that carries a token field of
    its own (it must not reach the node), and the operator API."""
    node = FakeNode(server.ws_url + "/ws/node", node_id="good-node", token=NODE_TOKEN)
    await node.connect()
    await node.register()
    await node.heartbeat()
    await server.wait_node_status("good-node", "ready")
    client = await Client.connect(server, "/ws/session")
    await client.send(session_init(token=SESSION_TOKEN))
    ack = await client.receive()
    assert ack is not None
    utterance = {
        "type": "utterance",
        "session_id": ack["session_id"],
        "utterance_index": 0,
        "src_lang": "en",
        "tgt_lang": "de",
        "audio": b64(b"a"),
        "audio_format": "pcm16",
        "sample_rate": 16000,
        "token": SESSION_TOKEN,
    }
    await client.send(utterance)
    answer = await client.receive()
    assert answer is not None and answer["type"] == "translation_result", answer
    texts = [*client.texts, *(f.raw for f in node.frames)]
    for path in ("/metrics", "/api/v1/stats", "/api/v1/nodes", "/api/v1/pools", "/health"):
        status, body = await server.http("GET", path)
        assert status == 200, path
        texts.append(body if isinstance(body, str) else json.dumps(body))
    await client.close()
    await node.close()
    return texts


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_tokens_appear_in_no_log_metric_api_answer_or_frame(
    serve: Serve, log_format: str
) -> None:
    """Right and wrong tokens on the node, session and admin channels (in frames, headers
    and query strings), at --log-level debug, in both log formats, so with every job step and
    the access log: none of the three token strings appears in the whole log, in /metrics, in
    the operator API's answers, in any frame to a node or a client, or in any error."""
    server = await serve(*TOKEN_FLAGS, "--log-format", log_format, admin_token=ADMIN_TOKEN)
    texts = await _right_tokens(server)
    texts += await _wrong_tokens(server)
    await asyncio.to_thread(server.terminate)
    # stderr (the log) and stdout; output() also shows the command line, tokens and all.
    stdout = server.output().partition("--- stdout")[2].partition("--- stderr")[0]
    log = server.log_path.read_text(errors="replace") + stdout
    assert "'log_level': 'debug'" in log  # the log is the most verbose one
    assert "job answered" in log and "/ws/session" in log  # job steps and access lines too
    for secret in SECRETS:
        assert secret not in log, f"{secret} in the log"
        leaked = [text for text in texts if secret in text]
        assert not leaked, f"{secret} sent to a peer: {leaked[:2]}"


async def test_redis_password_appears_nowhere(serve: Serve) -> None:
    """A Redis URL's password (user-info or query) is shown as *** at start-up and never
    appears while the store is unreachable: not in the log, /health, /api/v1/stats or the
    SCHEDULER_DEPENDENCY_DOWN a client gets."""
    password = "redispw-8Gk2Qs7VxL"
    url = f"redis://user:{password}@127.0.0.1:{free_port()}/0?password={password}"
    server = await serve("--redis-url", url, "--log-level", "debug")
    texts = []
    for path in ("/health", "/api/v1/stats", "/metrics"):
        _, body = await server.http("GET", path)
        texts.append(json.dumps(body))
    node = FakeNode(server.ws_url + "/ws/node")
    await node.connect()
    await node.register()
    await node.heartbeat()
    client = await Client.connect(server, "/ws/session")
    await client.send(session_init())
    ack = await client.receive()
    assert ack is not None
    await client.send(
        {
            "type": "utterance",
            "session_id": ack["session_id"],
            "utterance_index": 0,
            "src_lang": "en",
            "tgt_lang": "de",
            "audio": b64(b"a"),
            "audio_format": "pcm16",
            "sample_rate": 16000,
        }
    )
    answer = await client.receive(within=10)
    assert answer is not None and answer.get("code") == "SCHEDULER_DEPENDENCY_DOWN", answer
    await client.close()
    await node.close()
    await asyncio.to_thread(server.terminate)
    log = server.log_path.read_text(errors="replace")
    assert "***" in log  # the URL was logged, redacted
    assert password not in log
    assert not [t for t in [*texts, *client.texts] if password in t]
