"""Choose-and-reserve across node groups (Redis Cluster), the pure part.

On Redis Cluster a node's leases live under its group's hash tag (``keys.py``) and a script
may touch one slot only, so a reservation whose candidates live in several groups cannot be
one script.  It is a *round* instead (``redis_store.py`` runs it):

1. **Probe**: for the requests whose candidates span several groups, read the live lease count
   of each candidate (one script per group, sent at once: one round trip in wall time).
2. **Plan** (here): in request order, pick each such request's best candidate by the store's
   rule, smallest ``(tier, live leases, position)`` among those with room (a lease the holder
   already has wins), counting the plan's own picks as it goes; the request goes to that
   candidate's group.  A request whose candidates share one group goes to it unprobed.
3. **Reserve**: one ``try_reserve_many`` per group with the requests sent to it, each with
   its candidates in that group only (one round trip in wall time).  The script chooses again
   among them, atomically, so no node is ever over-filled whatever happened since the probe.

Batches run one at a time (a probe must see the reservations of the batch before it), and a
holder asking twice in one batch is planned where it went first.  A request the script answers
with no room (its group filled between probe and reserve: another
instance, or a batch in flight) is tried again in a new round without that group, so a request
is tried at most once per group of its candidates.  Alone on the store, a round chooses what
one script over every candidate would; under concurrency, what a probe a round trip old says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from switchboard.store.base import Candidate

HELD = -1  # a probe's answer for a node where the holder already has a live lease


def unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Each node once, at its first entry (as the script keeps it)."""
    seen: set[str] = set()
    out: list[Candidate] = []
    for cand in candidates:
        if cand.node_id not in seen:
            seen.add(cand.node_id)
            out.append(cand)
    return out


def by_group(
    candidates: Sequence[Candidate], group_of: Mapping[str, int]
) -> dict[int, list[Candidate]]:
    """Candidates by group, groups in order of first appearance, candidates in their order."""
    grouped: dict[int, list[Candidate]] = {}
    for cand in candidates:
        grouped.setdefault(group_of[cand.node_id], []).append(cand)
    return grouped


@dataclass(frozen=True, slots=True)
class Probe:
    """What the probe read: live leases per node, and the (request, node) pairs where the
    request's holder already holds a lease."""

    live: Mapping[str, int]
    held: frozenset[tuple[int, str]]


def plan(
    requests: Sequence[tuple[int, Sequence[Candidate]]],
    group_of: Mapping[str, int],
    probe: Probe,
    holders: Sequence[str],
) -> dict[int, int | None]:
    """Request index → the group to reserve in (``None``: no candidate has room by the probe),
    in request order, each pick counted against the next requests.  ``requests`` hold each
    request's candidates still to try (``unique``), in their order; ``holders`` every
    request's holder by index: a holder asking twice in one batch is sent where its first
    request went, where the script renews the lease rather than take a second."""
    live = dict(probe.live)
    out: dict[int, int | None] = {}
    planned: dict[str, Candidate] = {}
    for index, candidates in requests:
        earlier = planned.get(holders[index])
        if earlier is not None and earlier in candidates:
            out[index] = group_of[earlier.node_id]
            continue
        groups = {group_of[cand.node_id] for cand in candidates}
        if not groups:
            out[index] = None
            continue
        if len(groups) == 1:
            out[index] = groups.pop()
            continue
        best: tuple[int, int, int] | None = None
        best_node: Candidate | None = None
        for position, cand in enumerate(candidates):
            if (index, cand.node_id) in probe.held:
                rank = (-1, 0, position)  # a lease it already has wins, as in the script
            else:
                count = live.get(cand.node_id, 0)
                if count >= cand.capacity:
                    continue
                rank = (cand.tier, count, position)
            if best is None or rank < best:
                best, best_node = rank, cand
        if best is None or best_node is None:
            out[index] = None
            continue
        out[index] = group_of[best_node.node_id]
        planned[holders[index]] = best_node
        if best[0] >= 0:
            live[best_node.node_id] = live.get(best_node.node_id, 0) + 1
    return out
