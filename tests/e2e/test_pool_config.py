"""Pools as configuration end to end (protocol.md §5–§6): `[[pools]]` in the config file,
shared and kept by Redis, and `switchboard pools get|put`, with real scheduler processes, real
sockets and a real redis-server."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import Peers, ServerFactory
from tests.e2e.harness import ServerProcess, clean_env, eventually, scaled

if TYPE_CHECKING:
    from tests.conftest import RedisServer

FILE_POOLS = """
log_level = "info"

[[pools]]
pool_id = 10
name = "euro"
languages = ["en", "DE"]
required_services = ["asr"]

[[pools]]
pool_id = 11
name = "cjk"
languages = ["zh_CN", "en"]
"""
FROM_FILE = [(10, "euro"), (11, "cjk")]
PUT_BODY: dict[str, Any] = {"pools": [{"pool_id": 20, "name": "nordic", "languages": ["sv", "en"]}]}
FROM_PUT = [(20, "nordic")]
TOKEN = "pools-admin-token-e2e"


def write_config(tmp_path: Path, text: str = FILE_POOLS, name: str = "switchboard.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def ids_and_names(pools: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(p["pool_id"], p["name"]) for p in pools]


async def pools_of(server: ServerProcess) -> list[tuple[int, str]]:
    return ids_and_names(await server.get_json("/api/v1/pools"))


async def restart(server: ServerProcess) -> None:
    """SIGTERM, wait for a clean exit, start again with the same flags on the same port."""
    assert await asyncio.to_thread(server.terminate) == 0
    await asyncio.to_thread(server.start)


async def test_file_pools_are_served_and_survive_a_restart(
    server_factory: ServerFactory, peers: Peers, tmp_path: Path
) -> None:
    """Embedded store: the file's [[pools]] are the configured pools (order, normalised codes,
    membership); a PUT lasts until the process ends, and after a restart the file's pools
    are served again."""
    server = await server_factory("--store", "memory", "--config", write_config(tmp_path))
    pools = await server.get_json("/api/v1/pools")
    assert ids_and_names(pools) == FROM_FILE
    assert pools[0]["languages"] == ["de", "en"] and pools[0]["required_services"] == ["asr"]
    assert pools[1]["languages"] == ["en", "zh-cn"]
    node = await peers.node(server, pairs=[("en", "de"), ("de", "en")])
    assert (await server.get_json("/api/v1/pools"))[0]["members"] == [node.node_id]
    status, _ = await server.http("PUT", "/api/v1/pools", json_body=PUT_BODY)
    assert status == 200
    assert await pools_of(server) == FROM_PUT

    await peers.close_all()
    await restart(server)
    assert await pools_of(server) == FROM_FILE


@pytest.mark.redis
async def test_redis_shares_pools_between_instances_and_keeps_them(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """On one Redis namespace: A's file seeds Redis and B (no file) starts with A's pools; a
    PUT on A reaches B within a few seconds; a restarted B loads the PUT pools from Redis, and
    a restarted A too: once written, Redis wins over A's file."""
    on_redis = ("--redis-url", redis_server.url, "--redis-namespace", namespace)
    a = await server_factory(*on_redis, "--config", write_config(tmp_path))
    b = await server_factory(*on_redis)
    assert await pools_of(a) == FROM_FILE
    assert await pools_of(b) == FROM_FILE

    status, reply = await a.http("PUT", "/api/v1/pools", json_body=PUT_BODY)
    assert status == 200, reply
    assert ids_and_names(reply) == FROM_PUT
    seen: list[object] = []

    async def b_has_the_put() -> bool:
        seen[:] = [await pools_of(b)]
        return seen[0] == FROM_PUT

    # Instances poll the configuration every second (server/pool_sync.py).
    await eventually(b_has_the_put, "B serving A's PUT", within=5.0, detail=lambda: str(seen))

    await restart(b)
    assert await pools_of(b) == FROM_PUT, "a restarted instance did not load Redis's pools"
    await restart(a)
    assert await pools_of(a) == FROM_PUT, "the file won over the pools stored in Redis"
    # Each start says which source it used.
    log = a.output()
    assert "pools from the config file, stored in redis as revision 1" in log
    assert "the config file's [[pools]] are ignored: redis holds a pool configuration" in log
    assert "pools from redis (revision 2)" in log


@pytest.mark.redis
async def test_put_with_redis_down_changes_nothing(
    server_factory: ServerFactory, own_redis_server: RedisServer, tmp_path: Path
) -> None:
    """With Redis unreachable a PUT is refused with 503 and the instance keeps its pools,
    rather than drifting apart from the others."""
    server = await server_factory(
        "--redis-url", own_redis_server.url, "--config", write_config(tmp_path)
    )
    await asyncio.to_thread(own_redis_server.stop)
    status, reply = await server.http("PUT", "/api/v1/pools", json_body=PUT_BODY)
    assert status == 503, reply
    assert reply["error"] == "SCHEDULER_DEPENDENCY_DOWN"
    assert await pools_of(server) == FROM_FILE


@dataclass(frozen=True)
class Ran:
    status: int
    stdout: str
    stderr: str


async def switchboard(*args: str, **env: str) -> Ran:
    """`python -m switchboard ARGS` in a clean environment plus ``env``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), scaled(30))
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


async def test_pools_command_gets_and_puts(server_factory: ServerFactory, tmp_path: Path) -> None:
    """`switchboard pools put FILE` (JSON, the list `get` prints, or the TOML config file) and
    `pools get` against a real server with an admin token from SWITCHBOARD_ADMIN_TOKEN; the
    server's own error and exit status 1 when it refuses."""
    server = await server_factory("--store", "memory", admin_token=TOKEN)
    auth = {"SWITCHBOARD_ADMIN_TOKEN": TOKEN}
    body = tmp_path / "pools.json"
    body.write_text(json.dumps(PUT_BODY))

    put = await switchboard("pools", "put", str(body), "--url", server.url, **auth)
    assert put.status == 0, put
    assert ids_and_names(json.loads(put.stdout)) == FROM_PUT
    assert await pools_of(server) == FROM_PUT

    got = await switchboard("pools", "get", **auth, SWITCHBOARD_URL=server.url)
    assert got.status == 0, got
    assert json.loads(got.stdout) == await server.get_json("/api/v1/pools")

    listed = tmp_path / "listed.json"
    listed.write_text(got.stdout)  # get's output, sent back as it is
    put = await switchboard("pools", "put", str(listed), "--url", server.url, **auth)
    assert put.status == 0, put
    assert await pools_of(server) == FROM_PUT

    put = await switchboard(
        "pools", "put", write_config(tmp_path), "--url", server.url, "--format", "table", **auth
    )
    assert put.status == 0, put
    assert await pools_of(server) == FROM_FILE
    header, *rows = put.stdout.splitlines()
    assert header.split()[:2] == ["POOL_ID", "NAME"]
    assert [row.split()[:2] for row in rows] == [["10", "euro"], ["11", "cjk"]]

    duplicate = tmp_path / "duplicate.json"
    duplicate.write_text(json.dumps({"pools": PUT_BODY["pools"] * 2}))
    refused = await switchboard("pools", "put", str(duplicate), "--url", server.url, **auth)
    assert refused.status == 1
    assert "HTTP 400" in refused.stderr and "pool_id values must be unique" in refused.stderr
    assert await pools_of(server) == FROM_FILE

    anonymous = await switchboard("pools", "get", "--url", server.url)
    assert anonymous.status == 1 and "HTTP 401" in anonymous.stderr
    assert "Traceback" not in anonymous.stderr + refused.stderr


async def test_invalid_pools_table_stops_the_start(tmp_path: Path) -> None:
    """`switchboard serve` with an invalid [[pools]] table exits with status 2 and says what
    is wrong, before listening."""
    bad = write_config(tmp_path, '[[pools]]\npool_id = 1\nname = "x"\nlanguages = []\n')
    ran = await switchboard("serve", "--port", "0", "--config", bad)
    assert ran.status == 2, ran
    assert "[[pools]]" in ran.stderr and "$.pools[0].languages" in ran.stderr
    assert "listening" not in ran.stdout
