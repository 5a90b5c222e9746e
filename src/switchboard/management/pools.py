"""Pool membership and generated pool ids (contract §5, seed §3 task A3).

Pure functions over frozen values: which pools exist and who is a member.  The values
themselves (``Pool``) and the ``PoolLanguageIndex`` are the runtime domain's
(``runtime/values.py``, ``runtime/index.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import count

from switchboard.protocol import langs
from switchboard.runtime.values import Pool


@dataclass(frozen=True, slots=True)
class MemberView:
    """What pool membership needs to know of a node."""

    node_id: str
    languages: frozenset[str]
    services: frozenset[str]


def _covers(node_langs: frozenset[str], wanted: str) -> bool:
    return any(langs.serves(code, wanted) for code in node_langs)


@lru_cache(maxsize=4096)
def covers_languages(node_langs: frozenset[str], pool_langs: frozenset[str]) -> bool:
    """Whether a node listing ``node_langs`` serves every language of a pool, cached: the
    incremental builder asks it once per node *kind* for every redefined pool, and the sets
    it sees are few (nodes' language sets, operators' pools)."""
    return all(_covers(node_langs, code) for code in pool_langs)


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
