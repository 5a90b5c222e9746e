"""ManagementRegistry: lifecycle, structural changes and snapshot publication (seed §3–§4)."""

from __future__ import annotations

import asyncio

from switchboard.management.registry import ManagementRegistry
from switchboard.metrics import Metrics
from switchboard.runtime.snapshot import RuntimeSnapshot, SnapshotHolder
from switchboard.runtime.values import NodeStatus
from tests.unit.fakes import heartbeat_msg, register_msg


def _registry(holder: SnapshotHolder, interval: float = 0.0) -> ManagementRegistry:
    return ManagementRegistry(
        holder,
        metrics=Metrics(),
        default_max_concurrency=4,
        heartbeat_interval=60,
        min_rebuild_interval=interval,
    )


async def _publishes(holder: SnapshotHolder) -> list[RuntimeSnapshot]:
    seen: list[RuntimeSnapshot] = []
    holder.subscribe(seen.append)
    return seen


async def test_lifecycle_registering_ready_degraded_draining_offline() -> None:
    """Status follows contract §1 and every change reaches the snapshot."""
    holder = SnapshotHolder()
    reg = _registry(holder)
    assert await reg.register("n", register_msg([("zh", "en")], 2))
    assert not await reg.register("n", register_msg([("zh", "en")], 2))  # id taken
    await reg.rebuild_now()
    assert holder.current.nodes["n"].status is NodeStatus.REGISTERING
    await reg.heartbeat("n", heartbeat_msg("n"))
    await reg.rebuild_now()
    assert holder.current.nodes["n"].status is NodeStatus.READY
    await reg.heartbeat("n", heartbeat_msg("n", ready=False))
    await reg.rebuild_now()
    assert holder.current.nodes["n"].status is NodeStatus.DEGRADED
    assert await reg.drain("n")
    await reg.heartbeat("n", heartbeat_msg("n"))  # a heartbeat does not undo a drain
    await reg.rebuild_now()
    assert holder.current.nodes["n"].status is NodeStatus.DRAINING
    assert await reg.remove("n")
    await reg.rebuild_now()
    assert "n" not in holder.current.nodes
    assert not await reg.drain("n")


async def test_undrain_returns_to_what_the_latest_report_says() -> None:
    """Undrain (protocol.md §7): ready or degraded as the latest heartbeat says, registering
    if none came yet; a node that is not draining is left alone; None for an unknown node."""
    holder = SnapshotHolder()
    reg = _registry(holder)
    await reg.register("quiet", register_msg([("zh", "en")], 2))
    await reg.register("busy", register_msg([("zh", "en")], 2))
    await reg.heartbeat("busy", heartbeat_msg("busy", ready=False))
    for node_id in ("quiet", "busy"):
        assert await reg.drain(node_id)
    assert await reg.undrain("quiet") is NodeStatus.REGISTERING
    assert await reg.undrain("busy") is NodeStatus.DEGRADED
    await reg.heartbeat("busy", heartbeat_msg("busy"))
    assert await reg.undrain("busy") is NodeStatus.READY  # not draining: unchanged
    await reg.rebuild_now()
    assert holder.current.nodes["busy"].status is NodeStatus.READY
    assert holder.current.nodes["quiet"].status is NodeStatus.REGISTERING
    assert await reg.undrain("nobody") is None


async def test_routine_heartbeat_publishes_nothing() -> None:
    """A heartbeat that changes nothing structural builds no snapshot (design.md)."""
    holder = SnapshotHolder()
    reg = _registry(holder)
    reg.start()
    await reg.register("n", register_msg([("zh", "en")], 2))
    await reg.heartbeat("n", heartbeat_msg("n"))
    await asyncio.sleep(0.02)
    version = holder.current.version
    for _ in range(50):
        await reg.heartbeat("n", heartbeat_msg("n"))
    await asyncio.sleep(0.02)
    assert holder.current.version == version
    await reg.heartbeat("n", heartbeat_msg("n", ready=False))  # a health flip is structural
    await asyncio.sleep(0.02)
    assert holder.current.version == version + 1
    await reg.stop()


async def test_burst_of_changes_coalesces_into_few_rebuilds() -> None:
    """A burst of joins inside one coalescing window costs one or two rebuilds, not 30."""
    holder = SnapshotHolder()
    seen = await _publishes(holder)
    reg = _registry(holder, interval=0.2)
    reg.start()
    for i in range(30):
        await reg.register(f"n{i}", register_msg([("zh", "en")], 2))
    await asyncio.sleep(0.05)
    assert 1 <= len(seen) <= 2
    await asyncio.sleep(0.3)
    assert len(holder.current.nodes) == 30
    assert len(seen) <= 3
    await reg.stop()


async def test_heartbeat_usage_never_touches_capacity() -> None:
    """running_jobs in a heartbeat is information only (contract §1 "Capacity")."""
    holder = SnapshotHolder()
    reg = _registry(holder)
    await reg.register("n", register_msg([("zh", "en")], 3))
    await reg.heartbeat("n", heartbeat_msg("n"))
    await reg.rebuild_now()
    assert holder.current.nodes["n"].max_concurrency == 3
    (state,) = reg.node_states()
    assert state.usage is not None and state.usage.running_jobs == 0


async def test_expired_lists_silent_nodes() -> None:
    """A node silent for three intervals is reported for removal."""
    now = [100.0]
    reg = ManagementRegistry(
        SnapshotHolder(),
        metrics=Metrics(),
        default_max_concurrency=4,
        heartbeat_interval=1.0,
        clock=lambda: now[0],
    )
    await reg.register("n", register_msg([("zh", "en")], 2))
    now[0] += 2.9
    assert await reg.expired() == []
    now[0] += 0.2
    assert await reg.expired() == ["n"]


async def test_heartbeat_queues_behind_a_held_management_lock() -> None:
    """The lock-free fast path runs only while the lock is free; otherwise a heartbeat waits."""
    reg = _registry(SnapshotHolder())
    await reg.register("n", register_msg([("zh", "en")], 2))
    (state,) = reg.node_states()
    await reg._lock.acquire()  # as a change that awaits inside the lock would
    beat = asyncio.create_task(reg.heartbeat("n", heartbeat_msg("n")))
    await asyncio.sleep(0.01)
    assert not beat.done() and state.status is NodeStatus.REGISTERING
    reg._lock.release()
    assert await beat
    assert state.status is NodeStatus.READY


async def test_routine_heartbeats_keep_a_node_alive_and_track_readiness() -> None:
    """A repeated heartbeat refreshes liveness; a changed capability list still counts."""
    now = [100.0]
    holder = SnapshotHolder()
    reg = ManagementRegistry(
        holder,
        metrics=Metrics(),
        default_max_concurrency=4,
        heartbeat_interval=1.0,
        clock=lambda: now[0],
    )
    await reg.register("n", register_msg([("zh", "en")], 2))
    for _ in range(3):
        now[0] += 2.9
        assert await reg.heartbeat("n", heartbeat_msg("n"))
    assert await reg.expired() == []
    assert not await reg.heartbeat("ghost", heartbeat_msg("ghost"))
    await reg.heartbeat("n", heartbeat_msg("n", ready=False))
    await reg.heartbeat("n", heartbeat_msg("n", ready=False))
    await reg.rebuild_now()
    assert holder.current.nodes["n"].status is NodeStatus.DEGRADED
    await reg.heartbeat("n", heartbeat_msg("n"))
    await reg.rebuild_now()
    assert holder.current.nodes["n"].status is NodeStatus.READY
