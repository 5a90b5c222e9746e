"""Pools and the ``PoolLanguageIndex`` (contract §5, seed §3 task A3).

Pure functions over frozen values: which pools exist, who is a member, and which pools serve a
language pair, in preference order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import count

from switchboard.protocol import langs

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Pool:
    pool_id: int
    name: str
    languages: frozenset[str]
    required_services: frozenset[str]

    def to_json(self) -> dict[str, object]:
        return {
            "pool_id": self.pool_id,
            "name": self.name,
            "languages": sorted(self.languages),
            "required_services": sorted(self.required_services),
        }


@dataclass(frozen=True, slots=True)
class MemberView:
    """What pool membership needs to know of a node."""

    node_id: str
    languages: frozenset[str]
    services: frozenset[str]


def node_languages(pairs: Iterable[Pair]) -> frozenset[str]:
    return frozenset(code for pair in pairs for code in pair)


def _covers(node_langs: frozenset[str], wanted: str) -> bool:
    return any(langs.serves(code, wanted) for code in node_langs)


def is_member(pool: Pool, node: MemberView) -> bool:
    """Configured pools: every pool language served and every required service ready."""
    return pool.required_services <= node.services and all(
        _covers(node.languages, code) for code in pool.languages
    )


class GeneratedPoolIds:
    """Stable ids for generated pools: one id per language set while that set exists.

    Ids are never reused, so a pool id seen by a session always means the same set.
    """

    def __init__(self) -> None:
        self._ids: dict[frozenset[str], int] = {}
        self._next = count(1)

    def pools_for(self, language_sets: Iterable[frozenset[str]]) -> tuple[Pool, ...]:
        live = {s for s in language_sets if s}
        for gone in [s for s in self._ids if s not in live]:
            del self._ids[gone]
        for new in sorted(live - self._ids.keys(), key=lambda s: "-".join(sorted(s))):
            self._ids[new] = next(self._next)
        return tuple(
            Pool(self._ids[s], "-".join(sorted(s)), s, frozenset())
            for s in sorted(live, key=lambda s: self._ids[s])
        )


def members_of(
    pools: Sequence[Pool], nodes: Iterable[MemberView], *, generated: bool
) -> dict[int, tuple[str, ...]]:
    """Pool id → member node ids, sorted (generated pools: a node's own language set only)."""
    members: dict[int, list[str]] = {p.pool_id: [] for p in pools}
    by_set = {p.languages: p.pool_id for p in pools} if generated else {}
    for node in nodes:
        if generated:
            pool_id = by_set.get(node.languages)
            if pool_id is not None:
                members[pool_id].append(node.node_id)
            continue
        for pool in pools:
            if is_member(pool, node):
                members[pool.pool_id].append(node.node_id)
    return {pool_id: tuple(sorted(ids)) for pool_id, ids in members.items()}


class PoolLanguageIndex:
    """Maps a pair to the pools whose languages hold both codes, in preference order.

    Preference: configured pools keep the operator's order; generated pools put smaller
    language sets first, so a pair goes to specialised nodes before generalists (whose slots
    are then left for pairs only they serve).  ``auto`` source: the target alone must be held.
    Lookups are memoised; the memo is bounded because clients choose the pairs.
    """

    __slots__ = ("_by_lang", "_memo", "_order")
    _MEMO_LIMIT = 4096

    def __init__(self, pools: Sequence[Pool], *, generated: bool) -> None:
        ordered = sorted(pools, key=lambda p: (len(p.languages), p.pool_id)) if generated else pools
        self._order: Mapping[int, int] = {p.pool_id: i for i, p in enumerate(ordered)}
        by_lang: dict[str, set[int]] = {}
        for pool in pools:
            for code in pool.languages:
                by_lang.setdefault(code, set()).add(pool.pool_id)
        self._by_lang = {code: frozenset(ids) for code, ids in by_lang.items()}
        self._memo: dict[Pair, tuple[int, ...]] = {}

    def _holding(self, code: str) -> frozenset[int]:
        found: frozenset[int] = frozenset()
        for key in langs.lookup_keys(code):
            found |= self._by_lang.get(key, frozenset())
        return found

    def lookup(self, src: str, tgt: str) -> tuple[int, ...]:
        """Pool ids serving ``src → tgt`` (normalised codes), best first."""
        pair = (src, tgt)
        hit = self._memo.get(pair)
        if hit is not None:
            return hit
        ids = self._holding(tgt)
        if src != langs.AUTO:
            ids &= self._holding(src)
        result = tuple(sorted(ids, key=self._order.__getitem__))
        if len(self._memo) >= self._MEMO_LIMIT:
            self._memo.clear()
        self._memo[pair] = result
        return result
