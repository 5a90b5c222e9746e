"""The choice of a node (seed §6 steps 6–8): pure functions of the snapshot.

Candidates come in tiers: the session's preferred pool (0), the other pools serving the pair in
index order (1), and nodes this job already tried (2; contract §2: "the same node only if no
other is eligible").  The store then takes the candidate with the smallest
``(tier, reserved, position)``; positions are rotated per job, so equally loaded nodes take
turns instead of the first one always winning.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from switchboard.management.nodes import NodeStatus
from switchboard.protocol import langs
from switchboard.protocol.messages import Pipeline
from switchboard.runtime.snapshot import NodeRuntime, RuntimeSnapshot
from switchboard.sessions.state import Decision
from switchboard.store.base import Candidate

ALL_SERVICES = frozenset({"asr", "nmt", "tts"})
TIER_PREFERRED, TIER_OTHER, TIER_TRIED = 0, 1, 2


def services_for(pipeline: Pipeline | None) -> frozenset[str]:
    """The services a job needs (contract §1 "Eligibility"): all three without a pipeline."""
    if pipeline is None:
        return ALL_SERVICES
    wanted = (("asr", pipeline.use_asr), ("nmt", pipeline.use_nmt), ("tts", pipeline.use_tts))
    return frozenset(name for name, used in wanted if used)


def exclusion(node: NodeRuntime, src: str, tgt: str, services: frozenset[str]) -> str | None:
    """Why ``node`` may not take the job, or ``None`` if it may (slots are the store's job)."""
    if node.status is not NodeStatus.READY:
        return f"status {node.status.value}"
    if not node.accept_public_jobs:
        return "does not accept public jobs"
    if not node.serves(src, tgt):
        return f"does not serve {src}->{tgt}"
    missing = services - node.services
    if missing:
        return "services not ready: " + ",".join(sorted(missing))
    return None


def _rotated(ids: tuple[str, ...], start: int) -> Iterable[str]:
    if not ids:
        return ()
    cut = start % len(ids)
    return ids[cut:] + ids[:cut]


def candidates(
    snapshot: RuntimeSnapshot,
    decision: Decision,
    services: frozenset[str],
    *,
    tried: Collection[str] = (),
    start: int = 0,
) -> list[Candidate]:
    src, tgt = decision.pair
    nodes = snapshot.nodes
    seen: set[str] = set()
    first: list[Candidate] = []
    retry: list[Candidate] = []
    groups: list[tuple[int, tuple[str, ...]]] = []
    if decision.preferred_pool is not None:
        groups.append((TIER_PREFERRED, decision.members))
    groups.extend(
        (TIER_OTHER, snapshot.pool_members.get(pool, ()))
        for pool in decision.pools
        if pool != decision.preferred_pool
    )
    for tier, ids in groups:
        for node_id in _rotated(ids, start):
            if node_id in seen:
                continue
            seen.add(node_id)
            node = nodes.get(node_id)
            if node is None or exclusion(node, src, tgt, services) is not None:
                continue
            if node_id in tried:
                retry.append(Candidate(node_id, node.max_concurrency, TIER_TRIED))
            else:
                first.append(Candidate(node_id, node.max_concurrency, tier))
    return first + retry


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
