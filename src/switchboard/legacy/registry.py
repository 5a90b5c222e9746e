"""``GlobalLockRegistry``: node management as the old scheduler did it, under the global lock.

The old ``NodeRegistry`` (``node_registry/core.rs``) took ``nodes.write()`` for every
registration and heartbeat, then updated its pool index (``phase3_upsert_node_to_pool_index``,
which write-locks ``phase3_node_pool`` and ``phase3_pool_index``) before the heartbeat was
done.  Here every change takes the *write* side of the one global lock and rebuilds the runtime
view of all nodes synchronously while holding it, on every heartbeat, structural or not: built
under the lock rather than outside it, no coalescing, no "a routine heartbeat publishes
nothing".  Dispatch
(``LegacyDriver``) takes the read side of the same lock, so it waits behind that work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from switchboard.legacy.builder import build_from_scratch
from switchboard.legacy.rwlock import FairRWLock
from switchboard.management.pools import GeneratedPoolIds
from switchboard.management.registry import ManagementRegistry
from switchboard.protocol.messages import NodeHeartbeat, NodeRegister
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.runtime.values import Pool


class GlobalLockRegistry(ManagementRegistry):
    def __init__(self, holder: SnapshotHolder, *, global_lock: FairRWLock, **kwargs: Any) -> None:
        super().__init__(holder, **kwargs)
        self.global_lock = global_lock
        self._legacy_ids = GeneratedPoolIds()

    def start(self) -> None:
        """No rebuilder task: the old design rebuilt inline, under the lock."""

    async def rebuild_now(self) -> None:
        """From scratch over every node, as the old index upsert walked them, with the
        builder of before issue 9 (``legacy/builder.py``)."""
        self._dirty.clear()
        self._changed = {}
        self._version += 1
        start = time.perf_counter()
        snapshot = build_from_scratch(
            self._version,
            list(self._views.values()),
            configured=self._configured,
            generated_ids=self._legacy_ids,
        )
        self._metrics.snapshot_build.observe(time.perf_counter() - start)
        self._metrics.snapshot_rebuilds.inc()
        self._metrics.nodes.set(len(self._views))
        self._holder.publish(snapshot)

    async def register(self, node_id: str, msg: NodeRegister) -> bool:
        async with self.global_lock.write():
            added = await super().register(node_id, msg)
            if added:
                await self.rebuild_now()
        return added

    async def heartbeat(self, node_id: str, msg: NodeHeartbeat) -> bool:
        async with self.global_lock.write():
            known = await super().heartbeat(node_id, msg)
            if known:
                await self.rebuild_now()  # every heartbeat, as the old index upsert did
        return known

    async def remove(self, node_id: str) -> bool:
        async with self.global_lock.write():
            removed = await super().remove(node_id)
            if removed:
                await self.rebuild_now()
        return removed

    async def drain(self, node_id: str) -> bool:
        async with self.global_lock.write():
            known = await super().drain(node_id)
            if known:
                await self.rebuild_now()
        return known

    async def set_pools(self, pools: Sequence[Pool]) -> None:
        async with self.global_lock.write():
            await super().set_pools(pools)
            await self.rebuild_now()
