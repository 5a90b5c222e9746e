"""``PoolLanguageIndex`` (seed §3 task A3): which pools serve a language pair, best first.

A frozen value built from the pool list alone, so a snapshot whose pools did not change reuses
its predecessor's index (and the index's lookup memo) as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from switchboard.protocol import langs
from switchboard.runtime.values import Pair, Pool


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
