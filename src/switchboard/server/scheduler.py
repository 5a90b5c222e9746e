"""``Scheduler``: one scheduler process's parts, wired together, with their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard.config import Settings
from switchboard.dispatch.core import DispatchCore, DispatchSettings
from switchboard.dispatch.driver import DispatchDriver
from switchboard.dispatch.overload import OverloadBounds
from switchboard.dispatch.spans import JobSpans
from switchboard.management.registry import ManagementRegistry
from switchboard.metrics import Metrics
from switchboard.protocol import codec
from switchboard.protocol.codes import CLOSE_GOING_AWAY, ErrorCode
from switchboard.protocol.messages import SessionInit
from switchboard.protocol.profile import SessionProfile
from switchboard.rooms.registry import RoomRegistry
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.server.connections import NodeConnection, SessionConnection
from switchboard.server.limits import AddressCounter
from switchboard.server.liveness import PingSweeper
from switchboard.server.observe import SessionObserver
from switchboard.server.pool_sync import PoolSync
from switchboard.server.room_channel import RoomDesk
from switchboard.server.scrape import ClusterCollector, OverloadCollector, gpu_family
from switchboard.sessions.manager import SessionManager
from switchboard.store.base import ReservationStore
from switchboard.store.pool_config import MemoryPoolConfig, PoolConfigStore

if TYPE_CHECKING:
    from switchboard.cluster.member import ClusterMember
    from switchboard.store.cluster import ClusterStore

log = logging.getLogger("switchboard.server")


@dataclass(frozen=True, slots=True, kw_only=True)
class Parts:
    """What a design is built from (``Design``)."""

    snapshots: SnapshotHolder
    sessions: SessionManager
    store: ReservationStore
    metrics: Metrics
    settings: Settings
    dispatch: DispatchSettings
    observer: SessionObserver | None
    spans: JobSpans | None = None  # --otel


# Builds the management registry and the dispatch driver.  The default is the seed's design;
# the benchmark plugs in its model of the old global-lock design (``switchboard.legacy``)
# through ``ServeHooks.design``, so the server never imports it.
Design = Callable[[Parts], tuple[ManagementRegistry, DispatchDriver]]
# Makes the session observer, given the snapshots it may read (the session recorder).
Observe = Callable[[SnapshotHolder], SessionObserver]


def snapshot_design(parts: Parts) -> tuple[ManagementRegistry, DispatchDriver]:
    return registry_for(parts), driver_for(parts)


def registry_for(parts: Parts) -> ManagementRegistry:
    """The management domain (``management/``)."""
    return ManagementRegistry(
        parts.snapshots,
        metrics=parts.metrics,
        default_max_concurrency=parts.settings.default_max_concurrency,
        heartbeat_interval=parts.settings.heartbeat_interval,
        min_rebuild_interval=parts.settings.snapshot_min_interval,
    )


def driver_for(parts: Parts, driver: type[DispatchDriver] = DispatchDriver) -> DispatchDriver:
    """The dispatch core and its asyncio driver (``dispatch/``)."""
    observer = parts.observer
    core = DispatchCore(
        parts.snapshots,
        parts.sessions,
        settings=parts.dispatch,
        metrics=parts.metrics,
        on_accept=None if observer is None else observer.accepted,
        spans=parts.spans,
    )
    return driver(
        core,
        parts.store,
        snapshots=parts.snapshots,
        metrics=parts.metrics,
        reservation_lease=parts.dispatch.reservation_lease,
    )


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: ReservationStore,
        *,
        design: Design = snapshot_design,
        observe: Observe | None = None,
        pool_config: PoolConfigStore | None = None,
        spans: JobSpans | None = None,
        cluster: ClusterStore | None = None,
    ) -> None:
        self.settings = settings
        self.instance_id = settings.instance_id or new_instance_id()
        self.started_at = time.time()
        self.store = store
        self.metrics = Metrics()
        self.snapshots = SnapshotHolder()
        self.sessions = SessionManager()
        dispatch = DispatchSettings(
            job_timeout=settings.job_timeout,
            pending_timeout=settings.pending_timeout,
            max_attempts=settings.max_attempts,
            reservation_lease=settings.reservation_lease,
            max_pending_per_session=settings.max_pending_per_session,
            streaming_asr=settings.streaming_asr,
            tenants=settings.tenants,
            max_tenants=settings.max_tenants,
            priority_aging=settings.priority_aging,
            overload=OverloadBounds(
                loop_lag=settings.overload_loop_lag,
                store_backlog=settings.overload_store_backlog,
                queue_age=settings.overload_queue_age,
                retry_after=settings.overload_retry_after,
            ),
        )
        # ``--record``: session events to a file (switchboard replay); None costs nothing.
        self.observer = None if observe is None else observe(self.snapshots)
        observer = self.observer
        self.registry, self.dispatcher = design(
            Parts(
                snapshots=self.snapshots,
                sessions=self.sessions,
                store=store,
                metrics=self.metrics,
                settings=settings,
                dispatch=dispatch,
                observer=observer,
                spans=spans,
            )
        )
        self.metrics.register(OverloadCollector(self.dispatcher.core.overload))
        self.metrics.register(
            ClusterCollector(
                nodes=self.registry.node_states,
                in_flight=lambda: self.dispatcher.in_flight,
                store_up=lambda: self.dispatcher.store_up,
            )
        )
        self.metrics.register_nodes(gpu_family(self.registry.node_states))
        # Configured pools: the file's [[pools]] and the store's shared copy (pool_sync.py).
        self.pool_sync = PoolSync(
            pool_config if pool_config is not None else MemoryPoolConfig(),
            self.registry,
            seed=settings.pools,
        )
        self.nodes: dict[str, NodeConnection] = {}
        self.session_conns: dict[str, SessionConnection] = {}
        self.addresses = AddressCounter(settings.max_connections_per_address)
        self.rooms = RoomDesk(
            RoomRegistry(idle=settings.room_idle),
            self.session_conns,
            self.dispatcher,
            max_pending=settings.max_pending_per_session,
        )
        self.closing = False
        self._sweeper: asyncio.Task[None] | None = None
        self.pings = PingSweeper(settings.ping_interval)  # --ping-interval (liveness.py)
        self._closers: set[asyncio.Task[None]] = set()
        # Instances on one Redis namespace form a cluster (cluster/); alone: None, no cost.
        self.cluster: ClusterMember | None = None
        if cluster is not None:
            self.cluster = self._join(cluster)

    def _join(self, store: ClusterStore) -> ClusterMember:
        from switchboard.cluster.member import ClusterMember
        from switchboard.cluster.relay import Relay

        relay = self._relay = Relay(
            store,
            self.instance_id,
            dispatcher=self.dispatcher,
            local_node=self.nodes.get,
            registry=self.metrics.registry,
        )
        return ClusterMember(
            store,
            self.instance_id,
            ttl=self.settings.instance_ttl,
            registry=self.registry,
            dispatcher=self.dispatcher,
            relay=relay,
            counts=lambda: (len(self.nodes), len(self.session_conns)),
            metrics=self.metrics.registry,
        )

    def forward(self, conn: NodeConnection, job_id: str, frame: bytes, *, final: bool) -> bool:
        """A node's frame about a job another instance placed goes back to it (only called
        for a connection with ``routes``, which only a cluster member sets)."""
        return self._relay.forward(conn, job_id, frame, final=final)

    async def start(self) -> None:
        await self.pool_sync.load()  # before the first snapshot, so it has the pools
        if self.cluster is not None:
            await self.cluster.start()  # the other instances' nodes, before the first snapshot
        await self.registry.rebuild_now()
        self.pool_sync.start()
        self.registry.start()
        self.dispatcher.start()
        self.rooms.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="heartbeat-sweeper")
        self.pings.start()

    # --- nodes ------------------------------------------------------------------------------

    def node_joined(self, conn: NodeConnection) -> None:
        self.nodes[conn.node_id] = conn
        self.dispatcher.attach_node(conn)

    async def node_gone(self, conn: NodeConnection) -> None:
        """Offline (contract §1): forget it, retry its jobs at once, free its node_id."""
        if self.nodes.get(conn.node_id) is conn:
            del self.nodes[conn.node_id]
            self.dispatcher.detach_node(conn.node_id)
            await self.registry.remove(conn.node_id)

    async def _sweep(self) -> None:
        """Nodes silent for three heartbeat intervals go offline; their socket is closed."""
        period = max(self.settings.heartbeat_interval / 2, 0.05)
        while True:
            await asyncio.sleep(period)
            for node_id in await self.registry.expired():
                conn = self.nodes.get(node_id)
                log.info("node %s missed 3 heartbeats: offline", node_id)
                if conn is None:
                    await self.registry.remove(node_id)
                    continue
                await self.node_gone(conn)
                # Not awaited: a frozen node answers no close, and the sweep must go on.
                closer = asyncio.create_task(conn.close(CLOSE_GOING_AWAY, b"heartbeat timeout"))
                self._closers.add(closer)
                closer.add_done_callback(self._closers.discard)

    # --- sessions ---------------------------------------------------------------------------

    def session_opened(
        self,
        session_id: str,
        ws: web.WebSocketResponse,
        init: SessionInit,
        profile: SessionProfile | None = None,
    ) -> SessionConnection:
        conn = SessionConnection(
            session_id,
            ws,
            outbox_limit=self.settings.session_outbox_limit,
            on_overflow=self._overflowed,
            observer=self.observer,
        )
        conn.session = self.dispatcher.open_session(session_id, conn, profile)
        self.session_conns[session_id] = conn
        self.metrics.sessions.set(len(self.session_conns))
        if self.observer is not None:
            self.observer.opened(session_id, init)
        return conn

    def session_gone(self, conn: SessionConnection) -> None:
        """Closed or disconnected: pending jobs cancelled on their nodes, slots released.
        Idempotent: a session the server ended is gone again when its socket closes."""
        if self.session_conns.get(conn.session_id) is not conn:
            return
        self.dispatcher.close_session(conn.session)
        self.session_conns.pop(conn.session_id, None)
        self.metrics.sessions.set(len(self.session_conns))
        if self.observer is not None:
            self.observer.closed(conn.session_id)

    def _overflowed(self, conn: SessionConnection) -> None:
        log.warning("session %s: outgoing queue full (slow consumer): closing", conn.session_id)
        # Kept referenced: the loop holds tasks only weakly.
        ender = asyncio.get_running_loop().create_task(
            self._end_session(conn, "outgoing queue full")
        )
        self._closers.add(ender)
        ender.add_done_callback(self._closers.discard)

    async def _end_session(self, conn: SessionConnection, why: str) -> None:
        """The server ends a session itself: ``SESSION_CLOSED`` first (contract §2)."""
        self.session_gone(conn)
        await conn.end(codec.error(ErrorCode.SESSION_CLOSED, why), CLOSE_GOING_AWAY)

    # --- shutdown ---------------------------------------------------------------------------

    async def shutdown(self, grace: float) -> None:
        """Stop taking work, let running jobs finish for ``grace`` s, fail the rest, release
        every slot, close every socket."""
        self.closing = True
        self.dispatcher.close_intake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.dispatcher.idle.wait(), grace)
        self.rooms.lanes.fail_all("the scheduler is shutting down")
        for conn in list(self.session_conns.values()):
            self.dispatcher.fail_session(
                conn.session, ErrorCode.SESSION_CLOSED, "the scheduler is shutting down"
            )
            conn.push(codec.error(ErrorCode.SESSION_CLOSED, "the scheduler is shutting down"))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(conn.drain(), 1.0)
            await conn.close(CLOSE_GOING_AWAY)
        for node in list(self.nodes.values()):
            await node.close(CLOSE_GOING_AWAY)
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.rooms.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.pings.stop()
        await self.pool_sync.stop()
        await self.dispatcher.stop()
        await self.registry.stop()
        await self.store.close()
        if self.observer is not None:
            self.observer.close()


def new_instance_id() -> str:
    """``<host>-<random>``: readable in the operator API, unique per start."""
    host = "".join(c for c in socket.gethostname().split(".")[0] if c.isalnum() or c in "-_")
    return f"{host or 'sb'}-{secrets.token_hex(4)}"


SCHEDULER = web.AppKey("scheduler", Scheduler)
