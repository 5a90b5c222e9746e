"""A faithful model of the scheduler *before* the seed's design, for the benchmark only.

``switchboard serve --design global_lock`` runs it.  One global read/write lock (tokio's fair
``RwLock`` semantics, :class:`FairRWLock`) guards everything:

- registration, heartbeats and departures take its write side and rebuild the runtime view of
  every node while holding it, on every heartbeat (:class:`GlobalLockRegistry`);
- dispatch takes its read side around a whole placement attempt — snapshot read, session
  decision, choice of candidates and the reservation store's round trip
  (:class:`LegacyDriver`).

Everything else (protocol, sessions, selection, store, answers) is Switchboard's own, so a
benchmark that runs both designs on the same load measures the locking and the rebuilds and
nothing else.  docs/benchmarks.md
says how the model follows the old code (``TinoTau/lingua_1``) and where it simplifies.
"""

from __future__ import annotations

from switchboard.legacy.dispatcher import LegacyDriver
from switchboard.legacy.registry import GlobalLockRegistry
from switchboard.legacy.rwlock import FairRWLock
from switchboard.server.scheduler import Parts, driver_for

__all__ = ["FairRWLock", "GlobalLockRegistry", "LegacyDriver", "global_lock_design"]


def global_lock_design(parts: Parts) -> tuple[GlobalLockRegistry, LegacyDriver]:
    """The registry and dispatch driver of the old design, sharing one global lock
    (``ServeHooks.design`` for ``switchboard serve --design global_lock``)."""
    lock = FairRWLock()
    registry = GlobalLockRegistry(
        parts.snapshots,
        global_lock=lock,
        metrics=parts.metrics,
        default_max_concurrency=parts.settings.default_max_concurrency,
        heartbeat_interval=parts.settings.heartbeat_interval,
        min_rebuild_interval=parts.settings.snapshot_min_interval,
    )
    driver = driver_for(parts, LegacyDriver)
    assert isinstance(driver, LegacyDriver)
    driver.global_lock = lock
    return registry, driver
