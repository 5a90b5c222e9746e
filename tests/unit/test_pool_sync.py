"""Which pools a scheduler starts with and how changes spread (server/pool_sync.py): the store
wins over the file, the file seeds an empty store, a PUT is stored before it is applied, other
instances' changes are picked up, and a lost configuration is written back.

Two ``PoolSync`` on one ``SharedConfig`` are two instances on one Redis; the Redis store itself
is tested against a real redis-server in ``tests/store/test_pool_config.py``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from switchboard.errors import StoreError, StoreUnavailable
from switchboard.runtime.values import Pool
from switchboard.server.pool_sync import PoolSync
from switchboard.store.pool_config import MemoryPoolConfig, StoredPools

EURO = Pool(10, "euro", frozenset({"en", "de"}), frozenset({"asr"}))
CJK = Pool(11, "cjk", frozenset({"zh", "en"}), frozenset())
FILE = (EURO,)


class Registry:
    """Records what the registry is given."""

    def __init__(self) -> None:
        self.pools: tuple[Pool, ...] | None = None
        self.rebuilds = 0

    async def set_pools(self, pools: Sequence[Pool]) -> None:
        self.pools = tuple(pools)

    async def rebuild_now(self) -> None:
        self.rebuilds += 1

    def current(self) -> tuple[Pool, ...] | None:
        """``pools``, read through a call so that mypy does not narrow it across awaits."""
        return self.pools


class SharedConfig(MemoryPoolConfig):
    """The memory store, marked shared, that can be made unreachable or corrupt."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.corrupt = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("redis unavailable (test)")
        if self.corrupt:
            raise StoreError("not a pool configuration (test)")

    async def read(self) -> StoredPools | None:
        self._check()
        return await super().read()

    async def write(self, pools: Sequence[Pool]) -> StoredPools:
        if self.down:
            raise StoreUnavailable("redis unavailable (test)")
        return await super().write(pools)

    async def seed(self, pools: Sequence[Pool]) -> tuple[StoredPools, bool]:
        self._check()
        return await super().seed(pools)

    def lose(self) -> None:
        self._stored = None


async def started(
    config: MemoryPoolConfig, seed: tuple[Pool, ...] = ()
) -> tuple[PoolSync, Registry]:
    registry = Registry()
    sync = PoolSync(config, registry, seed=seed)
    await sync.load()
    return sync, registry


async def test_memory_store_uses_the_file_at_each_start() -> None:
    """Embedded store: the file's pools are applied and stored as revision 1; a PUT replaces
    them until the process ends; a new process (a new memory store) has the file's again."""
    config = MemoryPoolConfig()
    sync, registry = await started(config, FILE)
    assert registry.current() == FILE and sync.applied == FILE
    assert await config.read() == StoredPools(1, FILE)
    stored = await sync.put((CJK,))
    assert stored == StoredPools(2, (CJK,))
    assert registry.current() == (CJK,) and registry.rebuilds == 1
    _, restarted = await started(MemoryPoolConfig(), FILE)
    assert restarted.current() == FILE


async def test_no_file_and_nothing_stored_means_generated_pools() -> None:
    config = SharedConfig()
    sync, registry = await started(config)
    assert registry.current() is None and sync.applied == ()
    await sync.refresh()
    assert await config.read() is None, "an instance without a configuration wrote one"


async def test_the_file_seeds_an_empty_store_and_the_store_wins_after() -> None:
    """The first instance's file is stored; a second with another file adopts the stored
    pools, its file ignored (Redis wins once written)."""
    config = SharedConfig()
    _, first = await started(config, FILE)
    assert first.current() == FILE
    _, second = await started(config, (CJK,))
    assert second.current() == FILE
    assert await config.read() == StoredPools(1, FILE)


async def test_a_put_reaches_the_other_instance_at_its_next_poll() -> None:
    config = SharedConfig()
    a, reg_a = await started(config, FILE)
    b, reg_b = await started(config)
    assert reg_b.current() == FILE
    await a.put((CJK, EURO))
    assert reg_a.current() == (CJK, EURO)
    await b.refresh()
    assert reg_b.current() == (CJK, EURO) and reg_b.rebuilds == 1
    await b.refresh()
    assert reg_b.rebuilds == 1, "an unchanged configuration was applied again"


async def test_an_empty_put_is_stored_and_wins_over_the_file() -> None:
    """PUT [] (back to generated pools) is a configuration too: a restart with the file keeps
    the generated pools."""
    config = SharedConfig()
    a, _ = await started(config, FILE)
    await a.put(())
    _, restarted = await started(config, FILE)
    assert restarted.current() == ()


async def test_a_put_with_the_store_down_changes_nothing() -> None:
    config = SharedConfig()
    sync, registry = await started(config, FILE)
    config.down = True
    with pytest.raises(StoreUnavailable):
        await sync.put((CJK,))
    assert registry.current() == FILE and sync.applied == FILE and registry.rebuilds == 0


async def test_store_down_at_start_uses_the_file_then_the_store() -> None:
    """Unreachable at start: the file's pools meanwhile; once it answers, the stored
    configuration wins, as at a start."""
    config = SharedConfig()
    await config.write((CJK,))
    config.down = True
    sync, registry = await started(config, FILE)
    assert registry.current() == FILE
    await sync.refresh()
    assert registry.current() == FILE
    config.down = False
    await sync.refresh()
    assert registry.current() == (CJK,)


async def test_store_down_at_start_and_empty_after_is_seeded_from_the_file() -> None:
    config = SharedConfig()
    config.down = True
    sync, _ = await started(config, FILE)
    config.down = False
    await sync.refresh()
    assert await config.read() == StoredPools(1, FILE)


async def test_a_lost_configuration_is_written_back() -> None:
    """Redis restarted empty: an instance holding a configuration writes it back (the one it
    applies, a PUT's, not its file's), and the other instances keep theirs."""
    config = SharedConfig()
    a, _ = await started(config, FILE)
    b, reg_b = await started(config)
    await a.put((CJK,))
    await b.refresh()
    config.lose()
    await b.refresh()
    assert await config.read() == StoredPools(1, (CJK,))
    await a.refresh()
    assert reg_b.current() == (CJK,)


async def test_an_unreadable_configuration_keeps_the_current_pools() -> None:
    config = SharedConfig()
    sync, registry = await started(config, FILE)
    config.corrupt = True
    await sync.refresh()
    assert registry.current() == FILE and registry.rebuilds == 0
    config.corrupt = False
    await config.write((CJK,))
    await sync.refresh()
    assert registry.current() == (CJK,)
