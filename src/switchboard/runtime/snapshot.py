"""``RuntimeSnapshot``: the frozen view of nodes and pools that dispatch reads (seed §4).

The management domain builds a new snapshot after a structural change and publishes it by one
reference assignment (``SnapshotHolder.publish``); dispatch reads ``holder.current`` once per
attempt and never sees management state.  Nothing in a snapshot is ever mutated, except the
language index's private lookup memo, which only caches a pure function of the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from switchboard.runtime.index import PoolLanguageIndex
from switchboard.runtime.values import NodeRuntime, Pool


@dataclass(frozen=True, slots=True)
class RuntimeSnapshot:
    version: int = 0
    nodes: Mapping[str, NodeRuntime] = field(default_factory=lambda: MappingProxyType({}))
    pools: tuple[Pool, ...] = ()
    pool_members: Mapping[int, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    lang_index: PoolLanguageIndex = field(
        default_factory=lambda: PoolLanguageIndex((), generated=True)
    )
    generated_pools: bool = True
    # Memo of pure functions of this snapshot (e.g. a pool's eligible members for a pair),
    # filled on first use by dispatch; never part of the snapshot's value.
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def pools_of(self, node_id: str) -> list[int]:
        return [pid for pid, members in self.pool_members.items() if node_id in members]


Listener = Callable[[RuntimeSnapshot], None]


class SnapshotHolder:
    """Holds the current snapshot; ``publish`` swaps it and tells listeners (e.g. the waiting
    queue, which retries when new nodes or slots appear)."""

    __slots__ = ("_listeners", "current")

    def __init__(self) -> None:
        self.current = RuntimeSnapshot()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, snapshot: RuntimeSnapshot) -> None:
        self.current = snapshot  # the copy-on-write swap: one reference assignment
        for listener in self._listeners:
            listener(snapshot)
