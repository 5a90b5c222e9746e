"""``SessionRuntimeState`` and its decision (seed §5, task C2): pure, no I/O.

Given the current snapshot and an utterance's pair, decide the pair (normalised), rebind when
it changes, and keep the preferred pool while it still serves the pair and has members;
otherwise bind the first pool of the language index that has members.  The preferred pool's
members are cached per snapshot version (seed §5 ``cached_pool_members``).
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.protocol import langs
from switchboard.runtime.snapshot import RuntimeSnapshot

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Decision:
    pair: Pair
    preferred_pool: int | None
    members: tuple[str, ...]  # the preferred pool's members in this snapshot
    pools: tuple[int, ...]  # every pool serving the pair, best first
    rebound: bool  # the pair or the preferred pool changed with this decision


@dataclass(slots=True)
class SessionRuntimeState:
    bound_pair: Pair | None = None
    preferred_pool: int | None = None
    cached_members: tuple[tuple[str, ...], int] | None = None  # (members, snapshot version)

    def decide(self, snapshot: RuntimeSnapshot, src: str, tgt: str) -> Decision:
        pair = (langs.normalize(src), langs.normalize(tgt))
        rebound = False
        if pair != self.bound_pair:
            self.bound_pair = pair
            self.preferred_pool = None
            self.cached_members = None
            rebound = True
        pools = snapshot.lang_index.lookup(*pair)
        members = self._members(snapshot, pools)
        if members is None:
            self.preferred_pool = self._bind(snapshot, pools)
            self.cached_members = None
            rebound = True
            members = self._members(snapshot, pools) or ()
        return Decision(pair, self.preferred_pool, members, pools, rebound)

    def _members(self, snapshot: RuntimeSnapshot, pools: tuple[int, ...]) -> tuple[str, ...] | None:
        """The preferred pool's members, or ``None`` if it no longer serves the pair."""
        pool = self.preferred_pool
        if pool is None or pool not in pools:
            return None
        cached = self.cached_members
        if cached is not None and cached[1] == snapshot.version:
            return cached[0]
        members = snapshot.pool_members.get(pool, ())
        if not members:
            return None
        self.cached_members = (members, snapshot.version)
        return members

    @staticmethod
    def _bind(snapshot: RuntimeSnapshot, pools: tuple[int, ...]) -> int | None:
        for pool in pools:
            if snapshot.pool_members.get(pool):
                return pool
        return None
