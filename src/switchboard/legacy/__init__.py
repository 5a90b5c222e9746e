"""A faithful model of the scheduler *before* the seed's design, for the benchmark only.

``switchboard serve --design global_lock`` runs it.  One global read/write lock (tokio's fair
``RwLock`` semantics, :class:`FairRWLock`) guards everything:

- registration, heartbeats and departures take its write side and rebuild the runtime view of
  every node while holding it, on every heartbeat (:class:`GlobalLockRegistry`);
- dispatch takes its read side around a whole placement attempt — snapshot read, session
  decision, choice of candidates and the reservation store's round trip
  (:class:`LegacyDispatcher`).

Everything else (protocol, sessions, selection, store, answers) is Switchboard's own, so a
benchmark that runs both designs on the same load measures the locking and the rebuilds and
nothing else.  docs/benchmarks.md
says how the model follows the old code (``TinoTau/lingua_1``) and where it simplifies.
"""

from __future__ import annotations

from switchboard.config import Settings
from switchboard.dispatch.dispatcher import DispatchSettings
from switchboard.legacy.dispatcher import LegacyDispatcher
from switchboard.legacy.registry import GlobalLockRegistry
from switchboard.legacy.rwlock import FairRWLock
from switchboard.metrics import Metrics
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.sessions.manager import SessionManager
from switchboard.store.base import ReservationStore

__all__ = ["FairRWLock", "GlobalLockRegistry", "LegacyDispatcher", "build_legacy"]


def build_legacy(
    holder: SnapshotHolder,
    sessions: SessionManager,
    store: ReservationStore,
    *,
    metrics: Metrics,
    settings: Settings,
    dispatch: DispatchSettings,
) -> tuple[GlobalLockRegistry, LegacyDispatcher]:
    """The registry and dispatcher of the old design, sharing one global lock."""
    lock = FairRWLock()
    registry = GlobalLockRegistry(
        holder,
        global_lock=lock,
        metrics=metrics,
        default_max_concurrency=settings.default_max_concurrency,
        heartbeat_interval=settings.heartbeat_interval,
        min_rebuild_interval=settings.snapshot_min_interval,
    )
    dispatcher = LegacyDispatcher(
        holder, sessions, store, global_lock=lock, settings=dispatch, metrics=metrics
    )
    return registry, dispatcher
