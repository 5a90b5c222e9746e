"""Nodes held by other instances in the management registry (cluster/member.py feeds them):
they enter the snapshot through the same builder as local ones, a local socket wins over a
remote record, and only local changes are told to the cluster member."""

from __future__ import annotations

from switchboard.management.registry import ManagementRegistry
from switchboard.metrics import Metrics
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.runtime.values import NodeRuntime, NodeStatus
from tests.unit.fakes import heartbeat_msg, register_msg


def _registry(holder: SnapshotHolder) -> ManagementRegistry:
    return ManagementRegistry(
        holder, metrics=Metrics(), default_max_concurrency=4, heartbeat_interval=60
    )


def _remote(node_id: str, status: NodeStatus = NodeStatus.READY) -> NodeRuntime:
    return NodeRuntime(
        node_id=node_id,
        status=status,
        pairs=frozenset({("en", "de")}),
        services=frozenset({"asr", "nmt", "tts"}),
        accept_public_jobs=True,
        max_concurrency=2,
    )


async def test_remote_nodes_enter_and_leave_the_snapshot() -> None:
    holder = SnapshotHolder()
    reg = _registry(holder)
    await reg.apply_remote({"r1": _remote("r1"), "r2": _remote("r2")})
    await reg.rebuild_now()
    snapshot = holder.current
    assert set(snapshot.nodes) == {"r1", "r2"}
    (pool,) = snapshot.pools  # one generated pool for the language set, both members
    assert snapshot.pool_members[pool.pool_id] == ("r1", "r2")
    await reg.apply_remote({"r1": _remote("r1", NodeStatus.DRAINING), "r2": None})
    await reg.rebuild_now()
    assert set(holder.current.nodes) == {"r1"}
    assert holder.current.nodes["r1"].status is NodeStatus.DRAINING
    assert not reg.holds("r1") and reg.local_views() == {}


async def test_a_remote_node_id_cannot_register_here_and_a_local_one_wins() -> None:
    holder = SnapshotHolder()
    reg = _registry(holder)
    await reg.apply_remote({"r1": _remote("r1")})
    assert not await reg.register("r1", register_msg([("zh", "en")], 2))  # NODE_ID_CONFLICT
    assert await reg.register("n", register_msg([("zh", "en")], 2))
    await reg.apply_remote({"n": _remote("n"), "r1": None})  # a record of our own node
    await reg.apply_remote({"n": None})  # and its drop: neither touches the local node
    await reg.rebuild_now()
    assert set(holder.current.nodes) == {"n"}
    assert holder.current.nodes["n"].pairs == frozenset({("zh", "en")})
    assert reg.holds("n") and set(reg.local_views()) == {"n"}


async def test_only_structural_local_changes_are_told() -> None:
    """Register, status flip, drain and leave are told; a routine heartbeat is not; remote
    views never are (they came from the cluster)."""
    holder = SnapshotHolder()
    reg = _registry(holder)
    told: list[tuple[str, NodeStatus | None]] = []
    reg.on_local_change = lambda node_id, view: told.append(
        (node_id, None if view is None else view.status)
    )
    await reg.register("n", register_msg([("zh", "en")], 2))
    await reg.heartbeat("n", heartbeat_msg("n"))
    await reg.heartbeat("n", heartbeat_msg("n"))
    await reg.heartbeat("n", heartbeat_msg("n"))
    await reg.drain("n")
    await reg.apply_remote({"r1": _remote("r1")})
    await reg.remove("n")
    assert told == [
        ("n", NodeStatus.REGISTERING),
        ("n", NodeStatus.READY),
        ("n", NodeStatus.DRAINING),
        ("n", None),
    ]
