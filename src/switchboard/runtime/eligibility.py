"""Which nodes may take a job, and the per-pool memo of the answer (seed §6 step 7).

``exclusion`` is a pure function of one ``NodeRuntime``.  ``EligibleMemo`` caches, for one
pool, its eligible members per ``(src, tgt, services)``: a pure function of the pool's member
list and those members' ``NodeRuntime``s.  So a new snapshot whose change does not touch a pool
shares that pool's memo with its predecessor (the first dispatch after the change finds it
filled), and a change that touches a pool patches each cached entry for the nodes it changed
(``patched``) instead of dropping it: a dispatch never re-walks a pool because a node
elsewhere, or one node of this pool, changed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Mapping, Sequence

from switchboard.runtime.values import NodeRuntime, NodeStatus

# A pool's eligible members for one pair and services: node ids and capacities, member order.
Eligible = tuple[tuple[str, ...], tuple[int, ...]]
EligibleKey = tuple[str, str, frozenset[str]]

# Clients choose pairs (regional subtags included), so what they can make us keep is bounded.
MEMO_LIMIT = 256
# Beyond this many changed members at once, dropping the entries (recomputed on first use,
# one pass over the pool) is cheaper than patching them one node at a time.
PATCH_LIMIT = 64


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


def eligible(
    nodes: Mapping[str, NodeRuntime],
    members: Sequence[str],
    src: str,
    tgt: str,
    services: frozenset[str],
) -> Eligible:
    """The members (sorted ids) that may take a ``src → tgt`` job needing ``services``."""
    found = [
        node
        for node_id in members
        if (node := nodes.get(node_id)) is not None and exclusion(node, src, tgt, services) is None
    ]
    return tuple(n.node_id for n in found), tuple(n.max_concurrency for n in found)


class EligibleMemo:
    """One pool's eligible members per ``(src, tgt, services)``, filled by dispatch on use.

    Mutable only by adding entries, each a pure function of the snapshot(s) sharing the memo,
    so sharing it between snapshots that agree on the pool's members is safe.
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: dict[EligibleKey, Eligible] | None = None) -> None:
        self._entries: dict[EligibleKey, Eligible] = entries if entries is not None else {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: EligibleKey) -> Eligible | None:
        return self._entries.get(key)

    def put(self, key: EligibleKey, value: Eligible) -> None:
        if len(self._entries) >= MEMO_LIMIT:
            self._entries.clear()
        self._entries[key] = value

    def patched(
        self, nodes: Mapping[str, NodeRuntime], changed: Collection[str], members: Collection[str]
    ) -> EligibleMemo:
        """A new memo for the pool after ``changed`` nodes changed (joined, left, or changed
        their ``NodeRuntime``): ``nodes`` is the new snapshot's map, ``members`` answers
        whether a changed node is a member now.  Entries a change leaves alone are shared."""
        if len(changed) > PATCH_LIMIT:
            return EligibleMemo()
        entries = {}
        for key, value in self._entries.items():
            entries[key] = _patch(value, key, nodes, changed, members)
        return EligibleMemo(entries)


def _patch(
    value: Eligible,
    key: EligibleKey,
    nodes: Mapping[str, NodeRuntime],
    changed: Collection[str],
    members: Collection[str],
) -> Eligible:
    ids, caps = value
    src, tgt, services = key
    for node_id in changed:
        i = bisect_left(ids, node_id)
        present = i < len(ids) and ids[i] == node_id
        node = nodes.get(node_id) if node_id in members else None
        wanted = node is not None and exclusion(node, src, tgt, services) is None
        if present and not wanted:
            ids, caps = ids[:i] + ids[i + 1 :], caps[:i] + caps[i + 1 :]
        elif wanted and node is not None:
            cap = (node.max_concurrency,)
            if present:
                if caps[i] != node.max_concurrency:
                    caps = caps[:i] + cap + caps[i + 1 :]
            else:
                ids = ids[:i] + (node_id,) + ids[i:]  # noqa: RUF005 (faster than unpacking)
                caps = caps[:i] + cap + caps[i:]
    return ids, caps
