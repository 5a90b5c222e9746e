"""Administrative Redis calls for the tools that run a redis-server (the fault rig).

Only ``switchboard.store`` talks to Redis (``tests/unit/test_layers.py`` pins it), so a tool
that needs to ping or pause a server it started asks here instead of importing redis-py.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import redis.asyncio as aioredis
from redis import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError as RedisError  # re-exported: the tools catch it


async def ping(port: int) -> bool:
    """Whether a redis-server answers PING on ``127.0.0.1:port`` within half a second."""
    client = aioredis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def pause(port: int, seconds: float) -> None:
    """``CLIENT PAUSE <ms> ALL``: connections stay open, nothing is answered."""
    client = aioredis.Redis(port=port, socket_timeout=5)
    try:
        await client.client_pause(int(seconds * 1000), all=True)
    finally:
        await client.aclose()


# A synchronous client, for the tools' set-up, inspection and faults (never the hot path).
SyncClient = redis.Redis


def sync_client(port: int, *, timeout: float) -> SyncClient:
    """A blocking client of the redis-server on ``127.0.0.1:port``."""
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout)


def answers(port: int) -> bool:
    """Whether a redis-server answers PING on ``127.0.0.1:port`` (blocking, half a second)."""
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as probe:
            return bool(probe.ping())
    except (RedisError, OSError):
        return False


# --- Redis Cluster (the shard-failover fault; blocking, run it on a worker thread) ---------


def _nodes(client: Redis) -> list[list[str]]:
    raw = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return [line.split() for line in text.splitlines() if line.strip()]


def _serves(fields: list[str], slot: int) -> bool:
    for part in fields[8:]:
        if part.startswith("["):  # a slot being migrated
            continue
        low, _, high = part.partition("-")
        if int(low) <= slot <= int(high or low):
            return True
    return False


def fail_over_shard(url: str, namespace: str, *, within: float = 30.0) -> str:
    """Promote a replica of the primary serving ``{namespace}``'s slot (``CLUSTER FAILOVER
    FORCE`` on the replica); wait until it reports itself primary.  Its address."""
    slot = key_slot(f"{{{namespace}}}".encode())
    with Redis.from_url(url) as client:
        nodes = _nodes(client)
    primary = next(f for f in nodes if "master" in f[2] and _serves(f, slot))
    replica = next(f for f in nodes if "slave" in f[2] and f[3] == primary[0])
    host, _, rest = replica[1].partition(":")
    port = int(rest.split("@", 1)[0])
    with Redis(host=host or "127.0.0.1", port=port) as client:
        client.execute_command("CLUSTER", "FAILOVER", "FORCE")
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            role = client.execute_command("ROLE")
            if role and (role[0] in (b"master", "master")):
                return f"{host}:{port}"
            time.sleep(0.05)
    raise TimeoutError(f"replica {host}:{port} was not promoted within {within:g} s")


def command(client: SyncClient, *args: str) -> Any:
    """Any command on a synchronous client: the cluster launcher's ``CLUSTER NODES``,
    ``CLUSTER FAILOVER``, ``ROLE``, ... (redis-py leaves ``execute_command`` untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]
