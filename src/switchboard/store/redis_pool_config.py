"""The configured pools in Redis: one key shared by every instance on the namespace.

Layout (``keys.py``): ``sb:{<ns>}:pools`` is a string, ``{"revision": n, "pools": [...]}``.
Writes go through one Lua script (``lua/write_pools.lua``) that reads the revision and writes
the next one in one atomic step, so two operators' PUTs on two instances leave one of the two
configurations with a revision above both, never a mix.  Reads are a plain ``GET``: a
scheduler polls it (``server/pool_sync.py``), and a value it has already parsed is not parsed
again.

Its own small connection pool, not the reservation store's: this is the operator's path, a
read a second, and must never wait behind (or hold up) reservations.  Failures are translated
as the reservation store translates them (``redis_store._translate``): ``StoreUnavailable``
when Redis cannot be reached, ``StoreError`` when it answered with an error or holds a value
that is not a valid configuration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import msgspec

from switchboard.errors import StoreError
from switchboard.runtime.pool_config import PoolConfigInvalid, parse_pools_body, pool_specs
from switchboard.runtime.values import Pool
from switchboard.store.keys import DEFAULT_NAMESPACE, StoreKeys
from switchboard.store.pool_config import PoolConfigStore, StoredPools
from switchboard.store.redis_store import (
    AnyRedis,
    _config_errors,
    _load_lua,
    bounded,
    client_from_url,
)

T = TypeVar("T")
_CONNECTIONS: Final = 2  # a poll and a PUT at once, at most


class _Stored(msgspec.Struct):
    """The part of the stored value that is not the PUT body (which the pool parser reads)."""

    revision: int


class RedisPoolConfig(PoolConfigStore):
    name = "redis"
    shared = True

    def __init__(
        self, client: AnyRedis, *, namespace: str = DEFAULT_NAMESPACE, timeout_s: float = 1.0
    ) -> None:
        """Wrap ``client`` (``decode_responses=True``); prefer :meth:`from_url`."""
        self._client = client
        self._key = StoreKeys(namespace).pools
        self._timeout_s = timeout_s
        self._write = client.register_script(_load_lua("write_pools"))
        self._parsed: tuple[str, StoredPools] | None = None  # the last value read, parsed

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = DEFAULT_NAMESPACE, timeout_s: float = 1.0
    ) -> RedisPoolConfig:
        """Its own connections to ``url``; nothing connects until the first call."""
        return _config_errors(
            url,
            lambda: cls(
                client_from_url(url, max_connections=_CONNECTIONS, timeout_s=timeout_s),
                namespace=namespace,
                timeout_s=timeout_s,
            ),
        )

    @property
    def key(self) -> str:
        return self._key

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        return await bounded(op, self._timeout_s, client=self._client)

    def _parse(self, value: str) -> StoredPools:
        """The stored value as pools, checked by the pool parser; a value already parsed is
        taken from the cache (a poll a second mostly reads what it read before)."""
        if self._parsed is not None and self._parsed[0] == value:
            return self._parsed[1]
        try:
            pools = parse_pools_body(value.encode())
            revision = msgspec.json.decode(value, type=_Stored).revision
        except (PoolConfigInvalid, msgspec.DecodeError) as exc:
            raise StoreError(f"redis key {self._key} is not a pool configuration: {exc}") from None
        stored = StoredPools(revision, pools)
        self._parsed = (value, stored)
        return stored

    async def read(self) -> StoredPools | None:
        value = await self._call(lambda: self._client.get(self._key))
        return None if value is None else self._parse(_text(value))

    async def _store(self, pools: Sequence[Pool], mode: str) -> tuple[StoredPools, bool]:
        body = msgspec.json.encode(pool_specs(pools)).decode()
        reply = await self._call(lambda: self._write(keys=[self._key], args=[body, mode]))
        if not (isinstance(reply, list) and len(reply) == 2):
            raise StoreError(f"unexpected reply from write_pools: {reply!r}")
        written, value = reply
        return self._parse(_text(value)), bool(written)

    async def write(self, pools: Sequence[Pool]) -> StoredPools:
        stored, _ = await self._store(pools, "put")
        return stored

    async def seed(self, pools: Sequence[Pool]) -> tuple[StoredPools, bool]:
        return await self._store(pools, "seed")

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # a dead connection needs no clean goodbye
            await self._client.aclose()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise StoreError(f"unexpected value type from redis: {type(value).__name__}")
