"""Tokens and exposure end to end (protocol.md §3 wrong token, §4 bearer, §6 --insecure)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import ServerProcess, clean_env, scaled

NODE_TOKEN, SESSION_TOKEN, ADMIN_TOKEN = "node-s3cret", "session-s3cret", "admin-s3cret"
TOKENS = pytest.mark.server(
    node_token=NODE_TOKEN, session_token=SESSION_TOKEN, admin_token=ADMIN_TOKEN
)


@MEMORY_ONLY
@TOKENS
async def test_node_needs_the_node_token(server: ServerProcess, peers: Peers) -> None:
    """With --node-token, a node_register with a missing, wrong or empty token gets
    UNAUTHORIZED, then close 1008, and the node is never registered."""
    for token in (None, "wrong", "", NODE_TOKEN + "x"):
        node = await peers.raw_node(server, node_id="no-entry", token=token)
        await node.register(expect_ack=False)
        assert await node.wait_closed() == 1008, token
        (error,) = node.frames
        assert error["type"] == "error" and error["code"] == "UNAUTHORIZED", (token, error)
        assert NODE_TOKEN not in error.raw
    assert "no-entry" not in await server.nodes()


@MEMORY_ONLY
@TOKENS
async def test_session_needs_the_session_token(server: ServerProcess, peers: Peers) -> None:
    """With --session-token, a session_init with a missing, wrong or empty token (or another
    peer's token) gets UNAUTHORIZED, then close 1008."""
    for token in (None, "wrong", "", SESSION_TOKEN + "x", NODE_TOKEN):
        session = await peers.raw_session(server)
        extra = {"token": token} if token is not None else {}
        await session.send(session.init_message(**extra))
        assert await session.wait_closed() == 1008, token
        (error,) = session.frames
        assert error["type"] == "error" and error["code"] == "UNAUTHORIZED", (token, error)
    assert (await server.stats())["sessions"] == 0


@MEMORY_ONLY
@TOKENS
async def test_right_tokens_work_end_to_end(server: ServerProcess, peers: Peers) -> None:
    """With all three tokens set, peers presenting them register, open a session and are
    served; no token ever appears in the server's log."""
    node = await peers.node(server, token=NODE_TOKEN)
    session = await peers.session(server, token=SESSION_TOKEN)
    await session.utter(0)
    answer = await session.wait_answer(0)
    assert answer["type"] == "translation_result" and answer["node_id"] == node.node_id
    status, _ = await server.http("GET", "/api/v1/stats")
    assert status == 200
    log = server.log_path.read_text()
    assert "starting with" in log
    for secret in (NODE_TOKEN, SESSION_TOKEN, ADMIN_TOKEN):
        assert secret not in log, "a token reached the log"


@MEMORY_ONLY
@TOKENS
async def test_operator_api_needs_the_bearer_token(server: ServerProcess) -> None:
    """With --admin-token, /api/v1/* and /dashboard answer 401 without the bearer token (or
    with a wrong one) and 200 with it; /health and /metrics stay open."""
    for path in ("/api/v1/stats", "/api/v1/nodes", "/api/v1/pools", "/dashboard"):
        status, _ = await server.http("GET", path, token=False)
        assert status == 401, path
        status, _ = await server.http("GET", path, token="not-it")
        assert status == 401, path
    status, _ = await server.http("PUT", "/api/v1/pools", token=False, json_body={"pools": []})
    assert status == 401
    status, _ = await server.http("POST", "/api/v1/nodes/x/drain", token=False)
    assert status == 401
    for path in ("/api/v1/stats", "/api/v1/nodes", "/api/v1/pools"):
        status, _ = await server.http("GET", path)
        assert status == 200, path
    for path in ("/health", "/metrics"):
        status, _ = await server.http("GET", path, token=False)
        assert status == 200, path


async def test_public_host_without_tokens_refuses_to_start() -> None:
    """`switchboard serve --host 0.0.0.0` without tokens exits with status 2, says why
    (--insecure), and never listens."""
    command = [sys.executable, "-m", "switchboard", "serve", "--host", "0.0.0.0", "--port", "0"]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
    )
    async with asyncio.timeout(scaled(10)):
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 2, (stdout, stderr)
    assert b"--insecure" in stderr, stderr
    assert b"listening" not in stdout
