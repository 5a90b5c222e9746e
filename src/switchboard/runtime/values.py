"""The frozen values that the management domain builds and dispatch reads (seed §4).

They live here, in the runtime domain, rather than in ``management/``: a ``RuntimeSnapshot`` is
made of them, and dispatch reads snapshots, so if they lived in ``management/`` the runtime
domain (and through it dispatch) would import management, and management imports the runtime
to publish snapshots: a cycle, and a door from dispatch to the management lock.  Here the
arrows all point one way: ``management → runtime ← dispatch, sessions``, and ``runtime``
imports only ``protocol`` (``tests/unit/test_layers.py`` pins it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from switchboard.protocol import langs

Pair = tuple[str, str]


class NodeStatus(enum.StrEnum):
    """A node's lifecycle state (contract §1 "Status"); transitions are management's."""

    REGISTERING = "registering"
    READY = "ready"
    DEGRADED = "degraded"
    DRAINING = "draining"
    OFFLINE = "offline"


def node_languages(pairs: Iterable[Pair]) -> frozenset[str]:
    """Every code a node's pairs mention: what pool membership looks at."""
    return frozenset(code for pair in pairs for code in pair)


@dataclass(frozen=True, slots=True)
class NodeRuntime:
    """One node as dispatch sees it (seed §4.1 ``NodeRuntimeSnapshot``)."""

    node_id: str
    status: NodeStatus
    pairs: frozenset[Pair]
    services: frozenset[str]
    accept_public_jobs: bool
    max_concurrency: int

    def serves(self, src: str, tgt: str) -> bool:
        """Exact ordered pair, with ``zh`` serving ``zh-cn``; ``auto`` source: any source."""
        auto = src == langs.AUTO
        return any(
            langs.serves(node_tgt, tgt) and (auto or langs.serves(node_src, src))
            for node_src, node_tgt in self.pairs
        )

    def to_json(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "status": self.status.value,
            "language_pairs": [{"src": s, "tgt": t} for s, t in sorted(self.pairs)],
            "services": sorted(self.services),
            "max_concurrency": self.max_concurrency,
        }


@dataclass(frozen=True, slots=True)
class Pool:
    """A pool (contract §5): generated (one per language set) or configured by the operator."""

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
