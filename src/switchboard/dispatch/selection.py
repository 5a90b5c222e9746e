"""The choice of a node (seed §6 steps 6–8): pure functions of the snapshot.

Candidates come in tiers: the session's preferred pool (0), the other pools serving the pair in
index order (1), and nodes this job already tried (2; contract §2: "the same node only if no
other is eligible").  Within a tier, candidates are ranked by this scheduler's own count of
jobs on the node (least loaded first), then by a position rotated per job so equally loaded
nodes take turns.  Only the best few go to the store, which takes the one with the smallest
``(tier, reserved, position)`` by its own, authoritative count: the local count can only be
lower than the store's (the store also holds other instances' leases), so a node the local
count calls full is full.

A pool's eligible members for a pair and services are a pure function of the snapshot and are
memoised in it per pool (``runtime/eligibility.py``; a new snapshot keeps the memos of the pools
its change did not touch and patches the others), so the per-job work is one pass over
precomputed ``(node_id, capacity)`` pairs.  ``exclusion`` lives in the runtime domain because
the management domain patches those memos when it builds a snapshot.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Mapping
from itertools import repeat

from switchboard.protocol import langs
from switchboard.protocol.messages import Pipeline
from switchboard.runtime.eligibility import Eligible, exclusion
from switchboard.runtime.snapshot import RuntimeSnapshot
from switchboard.sessions.state import Decision
from switchboard.store.base import Candidate

ALL_SERVICES = frozenset({"asr", "nmt", "tts"})
TIER_PREFERRED, TIER_OTHER, TIER_TRIED = 0, 1, 2
# How many candidates one reservation considers.  More only helps when the local count is
# stale (another instance's leases); fewer keeps the store's work per job constant.
DEFAULT_LIMIT = 4
_NO_LOAD: Mapping[str, int] = {}
# A Python step per loaded node costs about what eight C-level lookups per member do.
_SPARSE = 8


def services_for(pipeline: Pipeline | None) -> frozenset[str]:
    """The services a job needs (contract §1 "Eligibility"): all three without a pipeline."""
    if pipeline is None:
        return ALL_SERVICES
    wanted = (("asr", pipeline.use_asr), ("nmt", pipeline.use_nmt), ("tts", pipeline.use_tts))
    return frozenset(name for name, used in wanted if used)


def eligible_members(
    snapshot: RuntimeSnapshot, pool_id: int, src: str, tgt: str, services: frozenset[str]
) -> Eligible:
    """The pool's members that may take a ``src → tgt`` job needing ``services`` (memoised
    per pool in the snapshot, and carried across snapshots that leave the pool alone)."""
    return snapshot.eligible_members(pool_id, src, tgt, services)


def _loads(ids: tuple[str, ...], load: Mapping[str, int]) -> list[int]:
    """The local job count of each of ``ids`` (sorted: member order), in their order.

    ``load`` holds only nodes with jobs on them.  When it is small next to the pool (a
    large pool, light traffic), placing its entries by bisection beats one lookup per member
    (~30 µs for a 700-member pool); otherwise one C-level ``map`` over the members does.
    """
    count = len(ids)
    if len(load) * _SPARSE > count:
        return list(map(load.get, ids, repeat(0, count)))
    loads = [0] * count
    for node_id, jobs in load.items():
        i = bisect_left(ids, node_id)
        if i < count and ids[i] == node_id:
            loads[i] = jobs
    return loads


def _best(
    eligible: Eligible, *, start: int, load: Mapping[str, int], skip: Collection[str], limit: int
) -> list[tuple[str, int]]:
    """Up to ``limit`` ``(node_id, capacity)`` with room, least loaded first; among equals,
    in member order (``eligible``'s ids are sorted) rotated to ``start``.

    Written with C-level list operations (``map``, ``set``, ``list.index``) rather than a
    Python loop per node: a 200-node pool costs a few microseconds, not a few hundred.
    """
    ids, caps = eligible
    count = len(ids)
    found: list[tuple[str, int]] = []
    if not count or limit <= 0:
        return found
    start %= count
    loads = _loads(ids, load)
    for level in sorted(set(loads)):
        for low, high in ((start, count), (0, start)):
            pos = low
            while len(found) < limit:
                try:
                    i = loads.index(level, pos, high)
                except ValueError:
                    break
                pos = i + 1
                if level < caps[i] and ids[i] not in skip:
                    found.append((ids[i], caps[i]))
        if len(found) >= limit:
            break
    return found


def candidates(
    snapshot: RuntimeSnapshot,
    decision: Decision,
    services: frozenset[str],
    *,
    tried: Collection[str] = (),
    load: Mapping[str, int] = _NO_LOAD,
    start: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> list[Candidate]:
    """The candidates to offer the store for one attempt, in tier order."""
    src, tgt = decision.pair
    pools = list(decision.pools)
    if decision.preferred_pool is not None and decision.preferred_pool in pools:
        pools.remove(decision.preferred_pool)
        pools.insert(0, decision.preferred_pool)
    chosen: list[Candidate] = []
    seen: set[str] = set(tried)
    for pool_id in pools:
        tier = TIER_PREFERRED if pool_id == decision.preferred_pool else TIER_OTHER
        eligible = eligible_members(snapshot, pool_id, src, tgt, services)
        for node_id, capacity in _best(
            eligible, start=start, load=load, skip=seen, limit=limit - len(chosen)
        ):
            seen.add(node_id)
            chosen.append(Candidate(node_id, capacity, tier))
        if len(chosen) >= limit:
            return chosen
    return chosen + _tried(snapshot, tried, src, tgt, services, load)


def _tried(
    snapshot: RuntimeSnapshot,
    tried: Collection[str],
    src: str,
    tgt: str,
    services: frozenset[str],
    load: Mapping[str, int],
) -> list[Candidate]:
    """Nodes this job already tried, still eligible and not full: the last resort."""
    found = []
    for node_id in sorted(tried):
        node = snapshot.nodes.get(node_id)
        if (
            node is not None
            and exclusion(node, src, tgt, services) is None
            and load.get(node_id, 0) < node.max_concurrency
        ):
            found.append(Candidate(node_id, node.max_concurrency, TIER_TRIED))
    return found


def explain(
    snapshot: RuntimeSnapshot, src: str, tgt: str, services: frozenset[str]
) -> Mapping[str, str]:
    """Every node that may not take a ``src → tgt`` job, with the reason (for ``simulate``)."""
    src, tgt = langs.normalize(src), langs.normalize(tgt)
    return {
        node_id: reason
        for node_id, node in snapshot.nodes.items()
        if (reason := exclusion(node, src, tgt, services)) is not None
    }
