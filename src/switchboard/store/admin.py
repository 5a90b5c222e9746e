"""Administrative Redis calls for the tools that run a redis-server (the fault rig).

Only ``switchboard.store`` talks to Redis (``tests/unit/test_layers.py`` pins it), so a tool
that needs to ping or pause a server it started asks here instead of importing redis-py.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
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


def command(client: SyncClient, *args: str) -> Any:
    """Any command on a synchronous client: the cluster launcher's ``CLUSTER NODES``,
    ``CLUSTER FAILOVER``, ``ROLE``, ... (redis-py leaves ``execute_command`` untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]
