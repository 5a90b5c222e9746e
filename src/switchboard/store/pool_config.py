"""Where the configured pools live (protocol.md §5), behind one interface with two stores.

- :class:`MemoryPoolConfig`: this process's memory, as the embedded reservation store keeps
  its leases; seeded from the config file's ``[[pools]]``, changed by ``PUT /api/v1/pools``,
  gone with the process (the file seeds it again at the next start).
- ``RedisPoolConfig`` (``redis_pool_config.py``): one key, ``sb:{<ns>}:pools`` (``keys.py``),
  holding ``{"revision": n, "pools": [...]}``: the ``PUT`` body with a revision that every
  write raises by one.  Every instance on the namespace reads the same pools, and they outlive
  restarts of the schedulers (and of Redis, as far as Redis persists its data).

The interface only stores and reads; *when* to read, which source wins at start and how a
change reaches the registry is the server's wiring (``server/pool_sync.py``).  Both stores
check what they read with the one pool parser (``runtime/pool_config.py``), so nothing reaches
a registry that ``PUT`` would have refused.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from switchboard.runtime.values import Pool


@dataclass(frozen=True, slots=True)
class StoredPools:
    """A stored configuration: its revision (1 for the first write, +1 for each after it)
    and its pools in the operator's order (the order is the preference, §5)."""

    revision: int
    pools: tuple[Pool, ...]


class PoolConfigStore(abc.ABC):
    """The configured pools of one deployment."""

    name: str
    # True when other scheduler instances may change it too, so each must look for changes.
    shared: bool

    @abc.abstractmethod
    async def read(self) -> StoredPools | None:
        """What is stored, or None when nothing is.  ``StoreUnavailable`` when the store
        cannot be reached; ``StoreError`` when what it holds is not a valid configuration."""

    @abc.abstractmethod
    async def write(self, pools: Sequence[Pool]) -> StoredPools:
        """Replace what is stored (``PUT``); an empty list is stored too (generated pools)."""

    @abc.abstractmethod
    async def seed(self, pools: Sequence[Pool]) -> tuple[StoredPools, bool]:
        """Write ``pools`` only if nothing is stored, in one atomic step: two instances
        seeding at once store one configuration.  Returns what is stored afterwards and
        whether it is ours."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the in-process store has none."""


class MemoryPoolConfig(PoolConfigStore):
    """The in-process twin: one value in memory, never shared."""

    name = "memory"
    shared = False

    def __init__(self) -> None:
        self._stored: StoredPools | None = None

    async def read(self) -> StoredPools | None:
        return self._stored

    async def write(self, pools: Sequence[Pool]) -> StoredPools:
        revision = 1 if self._stored is None else self._stored.revision + 1
        self._stored = StoredPools(revision, tuple(pools))
        return self._stored

    async def seed(self, pools: Sequence[Pool]) -> tuple[StoredPools, bool]:
        if self._stored is not None:
            return self._stored, False
        return await self.write(pools), True
