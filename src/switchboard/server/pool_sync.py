"""Configured pools as configuration: where they come from at start, and how a change spreads.

The management registry holds the pools it is given (``set_pools``) and knows nothing of files
or Redis; this module, part of the server's wiring, decides what to give it (protocol.md §5):

**At start** (:meth:`PoolSync.load`, before the first snapshot):

1. the pool configuration store (``store/pool_config.py``) holds a configuration: it wins,
   whatever the config file says (the file's ``[[pools]]``, if any and different, are logged
   as ignored).  Once an operator has PUT pools, a restart with an old file must not undo it;
   ``switchboard pools put FILE`` replaces the stored configuration on purpose;
2. else the config file's ``[[pools]]``: written to the store as its first configuration (on
   Redis atomically, only if still absent, so of two instances seeding at once one wins and
   the other adopts it);
3. else none: generated pools.

On the embedded store (memory) nothing is stored at start, so the file is used at every start
and a PUT lasts until the process ends.  Which source was used is logged.

**``PUT /api/v1/pools``** (:meth:`PoolSync.put`) writes to the store first and applies locally
only once the write succeeded: with Redis down the PUT is refused (503) rather than applied to
one instance, which would then disagree with the others for as long as the outage lasts.

**Other instances** (Redis only) see a change by polling: every :data:`POLL_INTERVAL` seconds
one ``GET`` of the configuration key, and a rebuild only when the pools differ from those
applied (so the answer is within about a second).  Polling rather than pub/sub or keyspace
notifications: it costs one small read a second per instance, it needs no connection held
open and no server setting (managed Redis often disables keyspace events), and it cannot miss
a change: a pub/sub message published while an instance was reconnecting is lost for good,
while the next poll simply reads the current value.  Changes are detected by comparing the
pools, not the revision, so a configuration written again with revision 1 after Redis lost
its data is still noticed.

**A configuration that vanishes** (a Redis restart without persistence, a ``DEL`` by hand):
an instance that holds one (from the store or the file) writes it back, as a seed, so the
next one to restart finds it; of several instances writing back at once one wins and the
others adopt it.  An instance that never had a configuration writes nothing, so it cannot
block the seed of an instance started later with ``[[pools]]``.

While the store cannot be reached, or holds a value that is not a valid configuration, the
instance keeps the pools it has (at start: the file's) and logs the problem once; the next
poll that succeeds applies the store's configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final, Protocol

from switchboard.errors import StoreError
from switchboard.runtime.values import Pool
from switchboard.store.pool_config import PoolConfigStore, StoredPools

log = logging.getLogger("switchboard.pools")
# How long stop() waits for the poller to end.
_STOP_WAIT_S = 2.0

POLL_INTERVAL: Final = 1.0
"""Seconds between two reads of a shared configuration: a change reaches every instance
within about this long."""


class PoolTarget(Protocol):
    """What the pools are given to: the management registry (``ManagementRegistry``)."""

    async def set_pools(self, pools: Sequence[Pool]) -> None: ...

    async def rebuild_now(self) -> None: ...


def _describe(pools: Sequence[Pool]) -> str:
    if not pools:
        return "no configured pools (generated pools)"
    return f"{len(pools)} configured pool(s): " + ", ".join(
        f"{p.pool_id} {p.name!r}" for p in pools
    )


class PoolSync:
    """Keeps the registry's configured pools those of the pool configuration store."""

    def __init__(
        self,
        config: PoolConfigStore,
        registry: PoolTarget,
        *,
        seed: Sequence[Pool] = (),
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._config = config
        self._registry = registry
        self._seed = tuple(seed)
        self._interval = interval
        self._applied: tuple[Pool, ...] = ()
        # The configuration this instance stands for (adopted from the store, or the file's):
        # written back if the store loses it.  None: it has none, and writes nothing.
        self._held: tuple[Pool, ...] | None = None
        self._lock = asyncio.Lock()  # a poll and a PUT never interleave their read and apply
        self._problem: str | None = None  # the last store problem logged (logged once)
        self._poller: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def applied(self) -> tuple[Pool, ...]:
        """The configured pools given to the registry (empty: generated pools)."""
        return self._applied

    # --- start -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Choose the pools to start with (module docstring) and give them to the registry;
        the caller builds the first snapshot."""
        async with self._lock:
            try:
                stored, seeded = await self._stored_or_seeded()
            except StoreError as exc:
                self._report(exc)
                if self._seed:
                    log.warning(
                        "pools from the config file until %s answers: %s",
                        self._config.name,
                        _describe(self._seed),
                    )
                    await self._adopt(self._seed, apply=False)
                return
            self._log_start(stored, seeded=seeded)
            if stored is not None:
                await self._adopt(stored.pools, apply=False)

    async def _stored_or_seeded(self) -> tuple[StoredPools | None, bool]:
        """The stored configuration, or the file's once stored; whether the file's it is."""
        stored = await self._config.read()
        if stored is None and self._seed:
            return await self._config.seed(self._seed)
        return stored, False

    def _log_start(self, stored: StoredPools | None, *, seeded: bool) -> None:
        """Say which source won (module docstring: store, then file, then generated)."""
        name = self._config.name
        if stored is None:
            log.info("pools: %s", _describe(()))
        elif seeded:
            log.info(
                "pools from the config file, stored in %s as revision %d: %s",
                name,
                stored.revision,
                _describe(stored.pools),
            )
        else:
            if self._seed and self._seed != stored.pools:
                log.warning(
                    "the config file's [[pools]] are ignored: %s holds a pool configuration"
                    " (revision %d), which wins; `switchboard pools put FILE` replaces it",
                    name,
                    stored.revision,
                )
            log.info(
                "pools from %s (revision %d): %s", name, stored.revision, _describe(stored.pools)
            )

    def start(self) -> None:
        """Watch a shared configuration for other instances' changes."""
        if self._config.shared:
            self._poller = asyncio.create_task(self._poll(), name="pool-config-poller")

    async def stop(self) -> None:
        self._closing = True
        if self._poller is not None:
            # Cancelled, and stopped by the flag as well, and waited for a bounded time: on
            # Python 3.11 a cancellation that lands as a store call's timeout expires comes
            # out as that timeout's error, which the loop below would catch and outlive.
            self._poller.cancel()
            await asyncio.wait([self._poller], timeout=_STOP_WAIT_S)
        await self._config.close()

    # --- changes -----------------------------------------------------------------------------

    async def put(self, pools: Sequence[Pool]) -> StoredPools:
        """``PUT /api/v1/pools``: store, then apply.  Raises ``StoreError`` (incl.
        ``StoreUnavailable``) with nothing applied when the store refuses or cannot be
        reached."""
        async with self._lock:
            stored = await self._config.write(pools)
            log.info(
                "pools set by PUT /api/v1/pools, stored in %s as revision %d: %s",
                self._config.name,
                stored.revision,
                _describe(stored.pools),
            )
            await self._adopt(stored.pools, apply=True)
            return stored

    async def refresh(self) -> None:
        """One poll: apply the stored configuration if it differs from the applied one;
        write back the held one if the store has lost it."""
        async with self._lock:
            try:
                stored = await self._config.read()
                if stored is None:
                    if self._held is None:
                        self._recovered()
                        return
                    stored, ours = await self._config.seed(self._held)
                    if ours:
                        log.warning(
                            "%s held no pool configuration (lost or deleted): wrote back this"
                            " instance's as revision %d: %s",
                            self._config.name,
                            stored.revision,
                            _describe(stored.pools),
                        )
            except StoreError as exc:
                self._report(exc)
                return
            self._recovered()
            if stored.pools == self._applied:
                self._held = stored.pools  # the same pools, now also this instance's to keep
                return
            log.info(
                "pools changed in %s (revision %d): %s",
                self._config.name,
                stored.revision,
                _describe(stored.pools),
            )
            await self._adopt(stored.pools, apply=True)

    async def _poll(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # a bug must not end the watch: the next poll tries again
                log.exception("pool configuration poll failed")

    async def _adopt(self, pools: tuple[Pool, ...], *, apply: bool) -> None:
        """Hold ``pools`` as this instance's configuration and give them to the registry;
        ``apply`` also publishes a snapshot now (at start the caller builds the first)."""
        self._held = pools
        self._applied = pools
        await self._registry.set_pools(pools)
        if apply:
            await self._registry.rebuild_now()

    def _report(self, exc: StoreError) -> None:
        message = str(exc)
        if message != self._problem:
            self._problem = message
            log.warning(
                "pool configuration in %s not readable: %s; keeping %s",
                self._config.name,
                message,
                _describe(self._applied),
            )

    def _recovered(self) -> None:
        if self._problem is not None:
            self._problem = None
            log.info("pool configuration in %s readable again", self._config.name)
