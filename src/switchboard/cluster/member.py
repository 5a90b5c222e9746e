"""One instance as a member of the cluster: its presence, and every node in its snapshot.

**Presence.** Every ``ttl / 3`` the instance announces itself (address, start time, its node
and session counts) with a TTL of ``--instance-ttl``, lists the instances, and *forgets* any
whose presence has expired (``ClusterStore.forget``: their nodes leave the view, what their
inbox held is dead-lettered) — but only once this member has reached Redis steadily for a
whole TTL (no gap of two periods between its announces).  A presence that lapsed while Redis
(or the shard holding it) was unreachable says nothing about its instance, which announces
again within a third of a TTL of Redis coming back; forgetting a live instance would fail over
the jobs placed on its nodes while those nodes still run them, and the slots refilled would
over-fill the nodes.  An instance that finds its own presence gone (Redis lost it, or the
others forgot it during a long pause) publishes its nodes again.

**The view.** The management registry tells the member of every structural change of a node
held here (``on_local_change``: register, leave, status flip, drain, capability change; never a
routine heartbeat), and the member puts the node's record in Redis, which appends the change
to the change stream.  Every member reads that stream with a blocking ``XREAD`` from where it
is (a change reaches the others in one round trip, well within a second), and hands the remote
nodes' views to the registry (``apply_remote``), which builds them into the snapshot through
the same incremental builder as local ones: a change costs what changed.

Why a hash of records *and* a change stream, rather than either alone: the stream gives order
and low latency without polling, the hash gives a newcomer (or a reader that lost its place:
a Redis restart, a stream trimmed past it) the whole view in one read.  The view and the last
change id are read in one step, so reading the stream from that id is exact.  A full re-read
also runs every ``RESYNC_S`` as a safety net; it costs what differs.

Remote nodes are dispatch peers too (``relay.RemoteNode``): attached to the dispatch core when
they appear, detached when they leave the view (their jobs placed from here fail over at once,
as a local node's do when its socket closes).

**Waiting for a slot.** Nodes' slots are shared: a slot another instance frees wakes nothing
here (a release wakes only the instance that made it).  So while other instances are present
and jobs wait here for a slot, the waiting line tries again every ``WAKE_S`` (one batched
reservation round; nothing while nothing waits).  FIFO holds within an instance; between
instances it is first come, first served at each try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Gauge

from switchboard.cluster.records import (
    Presence,
    decode_node,
    decode_presence,
    encode_node,
    encode_presence,
)
from switchboard.cluster.relay import DRAIN, UNDRAIN, Relay, stop_tasks
from switchboard.dispatch.driver import DispatchDriver
from switchboard.errors import StoreError, StoreUnavailable
from switchboard.management.registry import ManagementRegistry
from switchboard.runtime.values import NodeRuntime

if TYPE_CHECKING:
    from switchboard.store.cluster import ClusterStore

log = logging.getLogger("switchboard.cluster")

READ_BLOCK_S: Final = 1.0
# How often jobs waiting for a slot try again while other instances are present: a slot they
# free wakes nothing here (only this instance's own releases and snapshots do).
WAKE_S: Final = 0.05
RESYNC_S: Final = 30.0
RETRY_S: Final = 0.5


class ClusterMember:
    def __init__(
        self,
        store: ClusterStore,
        instance_id: str,
        *,
        ttl: float,
        registry: ManagementRegistry,
        dispatcher: DispatchDriver,
        relay: Relay,
        counts: Callable[[], tuple[int, int]],
        metrics: CollectorRegistry,
    ) -> None:
        self._store = store
        self.instance_id = instance_id
        self._ttl = ttl
        self._registry = registry
        self._dispatcher = dispatcher
        self._relay = relay
        self._counts = counts  # (nodes, sessions) held here
        self.address = ""
        self.started_at = time.time()
        # Remote nodes in the view: their owner and their record as read (to diff a re-read).
        self._owners: dict[str, str] = {}
        self._records: dict[str, str] = {}
        self._after = "0-0"  # the last change applied
        self._synced = False  # the whole view read since the last error
        self._unpublished: dict[str, NodeRuntime | None] = {}
        self._publish = asyncio.Event()
        self._announce_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False  # the loops stop on it (relay.stop_tasks says why)
        self.members: dict[str, Presence] = {}  # as of the last listing
        # Since when (monotonic) this member's announces have reached Redis without a gap, and
        # when the last one did.
        self._steady_since = -math.inf
        self._announced_at: float | None = None
        self._instances = Gauge(
            "switchboard_cluster_instances", "Instances present in the cluster", registry=metrics
        )
        registry.on_local_change = self._local_changed
        relay.drain = self._drain_here

    async def _drain_here(self, node_id: str, on: bool) -> None:
        registry = self._registry
        changed = await registry.drain(node_id) if on else await registry.undrain(node_id)
        if changed:
            await registry.rebuild_now()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Announce, open the inbox and read the view (best effort: with Redis down the loops
        keep trying), then run the loops."""
        try:
            if await self._store.announce(self.instance_id, self._presence(), ttl_s=self._ttl):
                log.warning(
                    "cluster: instance %s was present already: restarted within --instance-ttl,"
                    " or another instance runs with the same --instance-id",
                    self.instance_id,
                )
            await self._store.open_inbox(self.instance_id)
            await self._drop_stale()
            await self._resync()
        except StoreError as exc:
            log.warning("cluster: cannot join yet (%s); retrying in the background", exc)
        self._relay.start()
        for name, loop in (
            ("cluster-presence", self._presence_loop),
            ("cluster-changes", self._change_loop),
            ("cluster-publisher", self._publish_loop),
            ("cluster-waker", self._wake_loop),
        ):
            self._tasks.append(asyncio.create_task(loop(), name=name))

    async def stop(self) -> None:
        """Leave: drop our nodes' records and our presence, so the others need not wait for
        the TTL (best effort)."""
        self._closing = True
        await stop_tasks(self._tasks)
        await self._relay.stop()
        with contextlib.suppress(StoreError):
            for node_id in self._registry.local_views():
                await self._store.drop_node(self.instance_id, node_id)
            await self._store.withdraw(self.instance_id)
            await self._store.forget(self.instance_id)
        await self._store.close()

    def listening(self, address: str) -> None:
        self.address = address
        self._announce_now.set()

    def owner_of(self, node_id: str) -> str:
        return self._owners.get(node_id, self.instance_id)

    def drain_remote(self, node_id: str, *, on: bool = True) -> bool:
        """Ask the instance holding a remote node to drain (``on``) or undrain it
        (``False``: no such node in the view); the status flip comes back as any change
        does."""
        owner = self._owners.get(node_id)
        if owner is None:
            return False
        self._relay.send(owner, DRAIN if on else UNDRAIN, node_id, b"")
        return True

    # --- presence ---------------------------------------------------------------------------

    def _presence(self) -> str:
        nodes, sessions = self._counts()
        return encode_presence(
            Presence(
                instance_id=self.instance_id,
                address=self.address,
                started_at=self.started_at,
                last_seen=time.time(),
                nodes=nodes,
                sessions=sessions,
            )
        )

    async def _presence_loop(self) -> None:
        period = self._ttl / 3
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._announce_now.wait(), period)
            self._announce_now.clear()
            try:
                await self._tick()
            except StoreError as exc:
                log.debug("cluster presence: %s", exc)

    async def _tick(self) -> None:
        existed = await self._store.announce(self.instance_id, self._presence(), ttl_s=self._ttl)
        now = time.monotonic()
        # A gap (failed or stalled ticks: Redis or the shard of our presence unreachable, a
        # partition shorter than the call timeout): presences may have lapsed meanwhile.
        if self._announced_at is not None and now - self._announced_at > 2 * self._ttl / 3:
            self._steady_since = now
        self._announced_at = now
        steady_since = self._steady_since
        if not existed:
            # Redis lost us, or the others forgot us: our inbox and records are gone.
            log.warning(
                "cluster: presence of %s was gone; publishing its nodes again", self.instance_id
            )
            await self._store.open_inbox(self.instance_id)
            for node_id, view in self._registry.local_views().items():
                self._unpublished.setdefault(node_id, view)
            self._publish.set()
            # Its leases may be gone too (a restart without persistence, a FLUSHALL): the
            # running jobs' leases are held again now, not at the next renewal, so no other
            # instance over-fills their nodes.  (A failure here is retried by the renewal.)
            try:
                await self._dispatcher.reassert_leases()
            except StoreError as exc:
                log.debug("cluster: re-asserting leases: %s", exc)
        listed = await self._store.instances()
        members: dict[str, Presence] = {}
        expired: set[str] = set()
        for instance_id, value in listed.items():
            presence = None if value is None else decode_presence(value)
            if presence is not None:
                members[instance_id] = presence
            elif instance_id != self.instance_id:
                if time.monotonic() - steady_since < self._ttl:
                    continue  # it may have lapsed while we could not reach Redis (above)
                expired.add(instance_id)
                forgotten = await self._store.forget(instance_id)
                if forgotten is not None:
                    if forgotten[1]:
                        self._relay.dead_letters.labels("instance_gone").inc(forgotten[1])
                    log.info(
                        "cluster: instance %s is gone: %d nodes dropped, %d frames dead-lettered",
                        instance_id,
                        *forgotten,
                    )
        self.members = members
        self._instances.set(len(members))
        # Nodes of an instance seen gone leave the view now, whatever the stream says.  (Not
        # those of an instance missing from the listing: it may have joined since.)
        gone: dict[str, NodeRuntime | None] = {
            n: None for n, owner in self._owners.items() if owner in expired
        }
        if gone:
            await self._apply_remote(gone)

    async def _wake_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(WAKE_S)
            if len(self.members) > 1:
                self._dispatcher.wake_waiting()

    # --- publishing our nodes -------------------------------------------------------------

    def _local_changed(self, node_id: str, view: NodeRuntime | None) -> None:
        self._unpublished[node_id] = view
        self._publish.set()

    async def _publish_loop(self) -> None:
        while not self._closing:
            await self._publish.wait()
            self._publish.clear()
            batch, self._unpublished = self._unpublished, {}
            todo = list(batch.items())
            while todo:
                node_id, view = todo[0]
                try:
                    if view is None:
                        await self._store.drop_node(self.instance_id, node_id)
                    else:
                        await self._store.put_node(self.instance_id, node_id, encode_node(view))
                except StoreError as exc:
                    log.warning("cluster: %d node changes not published yet: %s", len(todo), exc)
                    for left, left_view in todo:  # back, unless a newer change came meanwhile
                        self._unpublished.setdefault(left, left_view)
                    self._publish.set()
                    await asyncio.sleep(RETRY_S)
                    break
                del todo[0]

    # --- reading the others' nodes ---------------------------------------------------------

    async def _change_loop(self) -> None:
        last_resync = time.monotonic() if self._synced else -RESYNC_S
        while not self._closing:
            try:
                if time.monotonic() - last_resync >= RESYNC_S or not self._synced:
                    last_resync = time.monotonic()
                    await self._resync()
                changes = await self._store.changes(self._after, block_s=READ_BLOCK_S)
                if not changes:
                    continue
                self._after = changes[-1].change_id
                updates: dict[str, str | None] = {}
                owners: dict[str, str] = {}
                for change in changes:
                    if change.owner == self.instance_id:
                        continue
                    if change.op == "put" and change.record is not None:
                        updates[change.node_id] = change.record
                        owners[change.node_id] = change.owner
                    elif change.op == "drop" and (
                        owners.get(change.node_id, self._owners.get(change.node_id)) == change.owner
                    ):
                        updates[change.node_id] = None
                await self._apply_records(updates, owners)
            except StoreError as exc:
                if not isinstance(exc, StoreUnavailable):
                    log.error("cluster changes: %s", exc)
                await asyncio.sleep(RETRY_S)
                self._synced = False  # whatever was missed meanwhile: read the whole view

    async def _drop_stale(self) -> None:
        """Records this instance id owns from an earlier run (a restart with the same
        ``--instance-id``): their nodes are not connected here any more."""
        _, _, owners = await self._store.view()
        for node_id, owner in owners.items():
            if owner == self.instance_id and not self._registry.holds(node_id):
                await self._store.drop_node(self.instance_id, node_id)

    async def _resync(self) -> None:
        """Read the whole view, and apply what differs from ours."""
        after, records, owners = await self._store.view()
        updates: dict[str, str | None] = {}
        theirs = {n: o for n, o in owners.items() if o != self.instance_id and n in records}
        for node_id in self._owners.keys() - theirs.keys():
            updates[node_id] = None
        for node_id, owner in theirs.items():
            if self._records.get(node_id) != records[node_id] or self._owners.get(node_id) != owner:
                updates[node_id] = records[node_id]
        self._after = after
        self._synced = True
        await self._apply_records(updates, theirs)

    async def _apply_records(self, updates: dict[str, str | None], owners: dict[str, str]) -> None:
        views: dict[str, NodeRuntime | None] = {}
        for node_id, record in updates.items():
            if record is None:
                views[node_id] = None
                continue
            view = decode_node(record)
            if view is None or self._registry.holds(node_id):
                continue  # unreadable, or held here (a local socket wins)
            owner = owners[node_id]
            if self._owners.get(node_id) != owner:
                if node_id in self._owners:  # moved between instances: its jobs fail over
                    self._dispatcher.detach_node(node_id)
                self._dispatcher.attach_node(self._relay.peer(node_id, owner))
                self._owners[node_id] = owner
            self._records[node_id] = record
            views[node_id] = view
        await self._apply_remote(views)

    async def _apply_remote(self, views: dict[str, NodeRuntime | None]) -> None:
        for node_id, view in views.items():
            if view is None and self._owners.pop(node_id, None) is not None:
                self._records.pop(node_id, None)
                self._dispatcher.detach_node(node_id)
        if views:
            await self._registry.apply_remote(views)
