"""``ManagementRegistry``: nodes and pool config behind ONE management lock (seed §3).

The lock is held only for in-memory changes, never across I/O, and never together with a
session lock: this module knows nothing of sessions or dispatch (seed §7).  After a structural
change (a node joins or leaves, its status, pairs, services or capacity change, pools are
reconfigured) it records the node's new runtime view and marks the snapshot dirty; one rebuilder
task hands the views changed since the last build to the incremental ``SnapshotBuilder``
outside the lock and publishes the result, at most once per ``min_rebuild_interval``, so a
burst of changes costs one rebuild, and a rebuild costs what changed.  A routine heartbeat
that changes nothing structural publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from switchboard.management.builder import SnapshotBuilder
from switchboard.management.nodes import NodeState, pairs_from, ready_services
from switchboard.metrics import Metrics
from switchboard.protocol.messages import NodeHeartbeat, NodeRegister
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.runtime.values import NodeRuntime, NodeStatus, Pool

log = logging.getLogger("switchboard.management")


class _Held:
    """``async with registry._locked()``: the management lock, its hold time observed.

    A plain class rather than ``contextlib.asynccontextmanager``, whose generator machinery
    cost ~5 µs per use; made per use so a test may swap ``registry._lock``.
    """

    __slots__ = ("_lock", "_metrics", "_start")

    def __init__(self, lock: asyncio.Lock, metrics: Metrics) -> None:
        self._lock, self._metrics, self._start = lock, metrics, 0.0

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        self._start = time.perf_counter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._metrics.lock_hold.observe(time.perf_counter() - self._start)
        self._lock.release()


class ManagementRegistry:
    def __init__(
        self,
        holder: SnapshotHolder,
        *,
        metrics: Metrics,
        default_max_concurrency: int,
        heartbeat_interval: float,
        min_rebuild_interval: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._holder = holder
        self._metrics = metrics
        self._default_max_concurrency = default_max_concurrency
        self._heartbeat_interval = heartbeat_interval
        self._min_rebuild_interval = min_rebuild_interval
        self._clock = clock
        self._lock = asyncio.Lock()
        self._nodes: dict[str, NodeState] = {}
        self._views: dict[str, NodeRuntime] = {}
        # Views changed since the last build (``None``: the node left), handed to the builder.
        self._changed: dict[str, NodeRuntime | None] = {}
        self._configured: tuple[Pool, ...] | None = None
        self._builder = SnapshotBuilder()  # touched only by rebuild_now
        self._version = 0
        self._dirty = asyncio.Event()
        self._rebuilder: asyncio.Task[None] | None = None
        # Nodes other instances hold (cluster/member.py); empty on a lone instance.
        self._remote: dict[str, NodeRuntime] = {}
        # Told of every new view of a node held here (None: it left), so that a cluster member
        # can publish it; None on a lone instance.  Called under the lock: it must not await.
        self.on_local_change: Callable[[str, NodeRuntime | None], None] | None = None

    # --- the lock ---------------------------------------------------------------------------

    def _locked(self) -> _Held:
        return _Held(self._lock, self._metrics)

    def _refresh_view(self, node: NodeState) -> None:
        """Recompute the node's runtime view if a structural field changed, and mark the
        snapshot dirty.  Compares the fields first: a routine heartbeat builds nothing."""
        view = self._views.get(node.node_id)
        if (
            view is not None
            and view.status is node.status
            and view.services == node.services
            and view.pairs == node.pairs
            and view.max_concurrency == node.max_concurrency
            and view.accept_public_jobs == node.accept_public_jobs
        ):
            return
        view = self._views[node.node_id] = self._changed[node.node_id] = NodeRuntime(
            node_id=node.node_id,
            status=node.status,
            pairs=node.pairs,
            services=node.services,
            accept_public_jobs=node.accept_public_jobs,
            max_concurrency=node.max_concurrency,
        )
        self._dirty.set()
        if self.on_local_change is not None:
            self.on_local_change(node.node_id, view)

    # --- node lifecycle (contract §1) -------------------------------------------------------

    async def register(self, node_id: str, msg: NodeRegister) -> bool:
        """Add a node in ``registering``; ``False`` if the id is taken (NODE_ID_CONFLICT)."""
        async with self._locked():
            if node_id in self._nodes or node_id in self._remote:
                return False
            node = NodeState.from_register(
                node_id,
                msg,
                default_max_concurrency=self._default_max_concurrency,
                now=self._clock(),
            )
            self._nodes[node_id] = node
            self._refresh_view(node)
        log.info(
            "node %s registered: pairs=%s services=%s max_concurrency=%d",
            node_id,
            sorted(node.pairs),
            sorted(node.services),
            node.max_concurrency,
        )
        return True

    async def heartbeat(self, node_id: str, msg: NodeHeartbeat) -> bool:
        """Record a heartbeat; ``False`` for an unknown node.

        The fast path takes no lock.  The management lock only keeps in-memory changes whole,
        and no holder of it ever awaits, so the lock is free whenever another task runs; an
        update that does not await is then just as atomic in this one loop, without the
        acquire, release and hold-time histogram (~3 µs, a heartbeat's whole budget).  If the
        lock is held after all (a holder that awaits, as a test may make one), the heartbeat
        waits its turn like any other change.
        """
        if not self._lock.locked():
            return self._apply_heartbeat(node_id, msg)
        async with self._locked():
            return self._apply_heartbeat(node_id, msg)

    def _apply_heartbeat(self, node_id: str, msg: NodeHeartbeat) -> bool:
        node = self._nodes.get(node_id)
        if node is None:
            return False
        node.last_heartbeat = self._clock()
        node.usage = msg.resource_usage  # information only: never touches reservations
        caps = msg.capability_by_type
        if caps is not None and caps != node.capabilities:
            node.capabilities = caps
            node.services = ready_services(caps)
        if msg.language_capabilities is not None:
            node.pairs = pairs_from(msg.language_capabilities, node.installed_models)
        node.set_status(node.health_status())
        self._refresh_view(node)  # builds and publishes only if something structural changed
        return True

    async def remove(self, node_id: str) -> bool:
        """The node went offline (socket closed or heartbeats missed)."""
        async with self._locked():
            node = self._nodes.pop(node_id, None)
            if node is None:
                return False
            node.set_status(NodeStatus.OFFLINE)
            del self._views[node_id]
            self._changed[node_id] = None
            self._dirty.set()
            if self.on_local_change is not None:
                self.on_local_change(node_id, None)
        return True

    async def drain(self, node_id: str) -> bool:
        """Operator drain: no new jobs; running ones finish. ``False`` for an unknown node."""
        async with self._locked():
            node = self._nodes.get(node_id)
            if node is None:
                return False
            node.drained = True
            node.set_status(NodeStatus.DRAINING)
            self._refresh_view(node)
        return True

    async def undrain(self, node_id: str) -> NodeStatus | None:
        """Undo :meth:`drain` (protocol.md §7): the node takes new jobs again, in the status
        its latest report implies (``registering`` if it has sent no heartbeat yet).  A node
        that was not draining is left as it is.  Its status after, or None for an unknown node.
        """
        async with self._locked():
            node = self._nodes.get(node_id)
            if node is None:
                return None
            if node.drained:
                node.drained = False
                node.set_status(node.status_after_undrain())
                self._refresh_view(node)
            return node.status

    async def expired(self) -> list[str]:
        """Nodes that missed three heartbeat intervals (the caller closes and removes them)."""
        limit = self._clock() - 3 * self._heartbeat_interval
        async with self._locked():
            return [n.node_id for n in self._nodes.values() if n.last_heartbeat < limit]

    # --- pools (contract §4 PUT /api/v1/pools, §5) ------------------------------------------

    async def set_pools(self, pools: Sequence[Pool]) -> None:
        """Replace the configured pools; an empty list returns to generated pools."""
        async with self._locked():
            self._configured = tuple(pools) or None
            self._dirty.set()

    # --- nodes other instances hold (cluster/member.py) ------------------------------------

    async def apply_remote(self, changes: dict[str, NodeRuntime | None]) -> None:
        """Views of nodes held by other instances (``None``: gone from the cluster), into the
        next snapshot through the same incremental builder as local ones.  A node held here
        wins over a remote record of the same id."""
        async with self._locked():
            for node_id, view in changes.items():
                if node_id in self._nodes:
                    continue
                if view is None:
                    if self._remote.pop(node_id, None) is None:
                        continue
                    del self._views[node_id]
                else:
                    self._remote[node_id] = self._views[node_id] = view
                self._changed[node_id] = view
            self._dirty.set()

    def holds(self, node_id: str) -> bool:
        """Whether the node's socket is on this instance."""
        return node_id in self._nodes

    def local_views(self) -> dict[str, NodeRuntime]:
        """The current view of every node held here (a cluster member republishes them)."""
        return {node_id: self._views[node_id] for node_id in self._nodes}

    def node_states(self) -> list[NodeState]:
        """For the operator API only (never dispatch)."""
        return list(self._nodes.values())

    def heartbeat_age(self, node: NodeState) -> float:
        """Seconds since ``node``'s last heartbeat (since it registered, before the first),
        on this registry's clock; for the operator API."""
        return max(self._clock() - node.last_heartbeat, 0.0)

    # --- the rebuilder ----------------------------------------------------------------------

    def start(self) -> None:
        self._rebuilder = asyncio.create_task(self._rebuild_loop(), name="snapshot-rebuilder")

    async def stop(self) -> None:
        if self._rebuilder is not None:
            self._rebuilder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuilder

    async def rebuild_now(self) -> None:
        """Build and publish at once (start-up, tests, and after PUT /api/v1/pools)."""
        self._dirty.clear()
        async with self._locked():
            changed, self._changed = self._changed, {}
            configured = self._configured
            self._version += 1
            version = self._version
            count = len(self._nodes)  # connected here; the snapshot also has remote ones
        # Outside the lock, and without an await until the publish: builds run one at a time,
        # in version order, each costing what changed since the last (builder.py).
        start = time.perf_counter()
        snapshot = self._builder.build(version, changed, configured=configured)
        self._metrics.snapshot_build.observe(time.perf_counter() - start)
        self._metrics.snapshot_rebuilds.inc()
        self._metrics.nodes.set(count)
        self._holder.publish(snapshot)

    async def _rebuild_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await self.rebuild_now()
            # Coalesce: changes arriving during this pause are folded into the next rebuild.
            await asyncio.sleep(self._min_rebuild_interval)
