"""Builders shared by the pure tests."""

from __future__ import annotations

from switchboard.management.builder import build_snapshot
from switchboard.management.pools import GeneratedPoolIds
from switchboard.runtime.snapshot import RuntimeSnapshot
from switchboard.runtime.values import NodeRuntime, NodeStatus, Pool

ALL = frozenset({"asr", "nmt", "tts"})


def node(
    node_id: str,
    *pairs: tuple[str, str],
    status: NodeStatus = NodeStatus.READY,
    services: frozenset[str] = ALL,
    public: bool = True,
    capacity: int = 4,
) -> NodeRuntime:
    return NodeRuntime(node_id, status, frozenset(pairs), services, public, capacity)


def snapshot(
    *nodes: NodeRuntime,
    pools: tuple[Pool, ...] | None = None,
    version: int = 1,
    ids: GeneratedPoolIds | None = None,
) -> RuntimeSnapshot:
    return build_snapshot(
        version, list(nodes), configured=pools, generated_ids=ids or GeneratedPoolIds()
    )
