"""The in-process reservation store: one scheduler, no dependency, same semantics as Redis.

Every method is ``async`` to share the interface but never suspends, so each call is atomic
with respect to the event loop, exactly as one Lua script is atomic inside Redis.  The clock is
injectable so tests can expire leases without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from switchboard.store.base import Candidate, ReservationStore

Clock = Callable[[], float]


def check_lease(lease_s: float) -> float:
    """Reject a lease that would be born expired (a caller bug, not a store failure)."""
    if not (lease_s > 0 and math.isfinite(lease_s)):
        raise ValueError(f"lease_s must be a positive finite number, got {lease_s!r}")
    return lease_s


class MemoryStore(ReservationStore):
    """Leases in a dict per node (holder -> expiry on ``clock``); a lease is live while
    ``expiry > now``.  Expired leases are pruned from the nodes a call touches, so a call
    costs O(candidates x capacity), independent of how many nodes exist."""

    name = "memory"

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, dict[str, float]] = {}

    def _live(self, node_id: str, now: float) -> dict[str, float]:
        """``node_id``'s live leases after dropping expired ones (a fresh dict if none)."""
        leases = self._leases.get(node_id)
        if leases is None:
            return {}
        for holder in [h for h, expiry in leases.items() if expiry <= now]:
            del leases[holder]
        if not leases:
            # Forget empty nodes so held_total and memory stay proportional to live leases.
            del self._leases[node_id]
        return leases

    async def try_reserve(
        self, candidates: Sequence[Candidate], holder: str, *, lease_s: float
    ) -> str | None:
        return self.try_reserve_now(candidates, holder, lease_s=lease_s)

    async def try_reserve_many(
        self, requests: Sequence[tuple[Sequence[Candidate], str]], *, lease_s: float
    ) -> list[str | None]:
        return self.try_reserve_many_now(requests, lease_s=lease_s)

    async def release(self, node_id: str, holder: str) -> bool:
        return self.release_now(node_id, holder)

    # The same calls without a coroutine: the dispatch driver performs them inline, since
    # nothing here ever waits (one placement costs no task and no loop iteration).

    def try_reserve_many_now(
        self, requests: Sequence[tuple[Sequence[Candidate], str]], *, lease_s: float
    ) -> list[str | None]:
        return [self.try_reserve_now(cands, holder, lease_s=lease_s) for cands, holder in requests]

    def try_reserve_now(
        self, candidates: Sequence[Candidate], holder: str, *, lease_s: float
    ) -> str | None:
        now = self._clock()
        expiry = now + check_lease(lease_s)
        best: tuple[int, int, int] | None = None
        best_node: str | None = None
        seen: set[str] = set()
        for position, cand in enumerate(candidates):
            if cand.node_id in seen:
                continue  # a repeated node keeps its first position, tier and capacity
            seen.add(cand.node_id)
            live = self._live(cand.node_id, now)
            if holder in live:
                # Idempotent per holder: renew the lease it has, even if capacity was lowered.
                live[holder] = max(live[holder], expiry)
                return cand.node_id
            rank = (cand.tier, len(live), position)
            if len(live) < cand.capacity and (best is None or rank < best):
                best, best_node = rank, cand.node_id
        if best_node is not None:
            self._leases.setdefault(best_node, {})[holder] = expiry
        return best_node

    def release_now(self, node_id: str, holder: str) -> bool:
        live = self._live(node_id, self._clock())
        if holder not in live:
            return False
        del live[holder]
        if not live:
            del self._leases[node_id]
        return True

    async def renew(self, leases: Iterable[tuple[str, str]], *, lease_s: float) -> int:
        now = self._clock()
        expiry = now + check_lease(lease_s)
        renewed = 0
        for node_id, holder in set(leases):
            live = self._live(node_id, now)
            if holder in live:
                # Never shorten: a short renew must not cut a longer lease taken elsewhere.
                live[holder] = max(live[holder], expiry)
                renewed += 1
        return renewed

    async def reserved(self, node_ids: Iterable[str]) -> Mapping[str, int]:
        now = self._clock()
        return {node_id: len(self._live(node_id, now)) for node_id in node_ids}

    async def held_total(self) -> int:
        now = self._clock()
        return sum(len(self._live(node_id, now)) for node_id in list(self._leases))

    async def ping(self) -> bool:
        return True
