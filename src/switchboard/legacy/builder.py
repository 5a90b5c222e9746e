"""The snapshot builder before issue 9, for the old design's model only.

The old design rebuilt its view of every node on every change, walking all of them; the seed's
registry derives each snapshot from the last instead (``management/builder.py``), which the old
design did not, so the model must not inherit it.  This is the pre-issue-9 algorithm, verbatim
but for names (``benchmarks/micro/snapshot_change.py`` measures the same one): every node
walked, pool membership and the language index recomputed, and a memo of eligible members that
lives and dies with its snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from switchboard.management.pools import GeneratedPoolIds, MemberView, members_of
from switchboard.runtime.eligibility import EligibleMemo
from switchboard.runtime.index import PoolLanguageIndex
from switchboard.runtime.snapshot import RuntimeSnapshot
from switchboard.runtime.values import NodeRuntime, Pool, node_languages


def build_from_scratch(
    version: int,
    nodes: Sequence[NodeRuntime],
    *,
    configured: tuple[Pool, ...] | None,
    generated_ids: GeneratedPoolIds,
) -> RuntimeSnapshot:
    views = [MemberView(n.node_id, node_languages(n.pairs), n.services) for n in nodes]
    generated = configured is None
    pools = generated_ids.pools_for(v.languages for v in views) if generated else configured
    assert pools is not None
    return RuntimeSnapshot(
        version=version,
        nodes=MappingProxyType({n.node_id: n for n in nodes}),  # a dict, as it was
        pools=pools,
        pool_members=MappingProxyType(members_of(pools, views, generated=generated)),
        lang_index=PoolLanguageIndex(pools, generated=generated),
        generated_pools=generated,
        # Empty memos, filled by this snapshot's dispatches and dropped with it.
        eligible=MappingProxyType({pool.pool_id: EligibleMemo() for pool in pools}),
    )
