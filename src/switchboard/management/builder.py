"""Build a ``RuntimeSnapshot`` from management state (seed §4, tasks B1–B2, A3).

Pure: runs outside the management lock, over values copied while the lock was held.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from switchboard.management.pools import GeneratedPoolIds, MemberView, members_of
from switchboard.runtime.index import PoolLanguageIndex
from switchboard.runtime.snapshot import RuntimeSnapshot
from switchboard.runtime.values import NodeRuntime, Pool, node_languages


def build_snapshot(
    version: int,
    nodes: Sequence[NodeRuntime],
    *,
    configured: tuple[Pool, ...] | None,
    generated_ids: GeneratedPoolIds,
) -> RuntimeSnapshot:
    views = [MemberView(n.node_id, node_languages(n.pairs), n.services) for n in nodes]
    generated = configured is None
    if configured is None:
        pools = generated_ids.pools_for(v.languages for v in views)
    else:
        pools = configured
    return RuntimeSnapshot(
        version=version,
        nodes=MappingProxyType({n.node_id: n for n in nodes}),
        pools=pools,
        pool_members=MappingProxyType(members_of(pools, views, generated=generated)),
        lang_index=PoolLanguageIndex(pools, generated=generated),
        generated_pools=generated,
    )
