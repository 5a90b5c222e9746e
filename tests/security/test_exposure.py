"""A non-loopback --host needs all three tokens or --insecure (protocol.md §6), end to end with
the real command: it refuses to start (status 2) and says why, or starts and listens.
(tests/e2e/test_security.py covers the case with no token at all.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.e2e.harness import clean_env, scaled
from tests.security.conftest import Serve

PUBLIC = ("--host", "0.0.0.0")


async def _run_to_exit(*flags: str, env: dict[str, str]) -> tuple[int | None, str, str]:
    command = [sys.executable, "-m", "switchboard", "serve", "--port", "0", *flags]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    async with asyncio.timeout(scaled(15)):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_a_missing_token_is_named_and_nothing_listens() -> None:
    """With two of the three tokens it still exits with status 2, names the missing flag and
    --insecure, and never says it is listening; the tokens it was given are not echoed."""
    code, out, err = await _run_to_exit(
        *PUBLIC, "--node-token", "n-s3cret", "--session-token", "s-s3cret", env=clean_env()
    )
    assert code == 2, (out, err)
    assert "and --admin-token is not set" in err and "--insecure" in err, err
    assert "listening" not in out
    assert "n-s3cret" not in err + out and "s-s3cret" not in err + out


async def test_insecure_starts_on_a_public_address(serve: Serve) -> None:
    """--insecure (flag or SWITCHBOARD_INSECURE) accepts a public --host without tokens."""
    for flags, env in (
        ((*PUBLIC, "--insecure"), clean_env()),
        (PUBLIC, clean_env(SWITCHBOARD_INSECURE="1")),
    ):
        server = await serve(*flags, env=env)
        assert server.host == "0.0.0.0"
        status, body = await server.http("GET", "/health")
        assert (status, body) == (200, {"status": "ok"})


async def test_tokens_from_the_environment_let_it_start(serve: Serve) -> None:
    """The three tokens from SWITCHBOARD_*_TOKEN are enough for a public --host."""
    env = clean_env(
        SWITCHBOARD_NODE_TOKEN="n-env",
        SWITCHBOARD_SESSION_TOKEN="s-env",
        SWITCHBOARD_ADMIN_TOKEN="a-env",
    )
    server = await serve(*PUBLIC, env=env, admin_token="a-env")
    status, _ = await server.http("GET", "/api/v1/stats")
    assert status == 200
    status, _ = await server.http("GET", "/api/v1/stats", token=False)
    assert status == 401
