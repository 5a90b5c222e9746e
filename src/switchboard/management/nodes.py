"""Node state and its lifecycle (contract §1 "Status").

``registering`` → (first heartbeat) ``ready`` | ``degraded`` ⇄ … → ``draining`` → ``offline``.
Every change of status goes through ``NodeState.set_status``, which logs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from switchboard.protocol import langs
from switchboard.protocol.messages import (
    CapabilityByType,
    InstalledModel,
    LanguageCapabilities,
    NodeRegister,
    ResourceUsage,
)
from switchboard.runtime.values import NodeStatus, Pair

log = logging.getLogger("switchboard.management")


def pairs_from(
    caps: LanguageCapabilities | None, models: list[InstalledModel] | None
) -> frozenset[Pair]:
    """A node's pairs (contract §1 "Pairs"): declared pairs, else its NMT models' pairs."""
    if caps is not None and caps.supported_language_pairs is not None:
        return frozenset(
            (langs.normalize(p.src), langs.normalize(p.tgt)) for p in caps.supported_language_pairs
        )
    return frozenset(
        (langs.normalize(m.src_lang), langs.normalize(m.tgt_lang))
        for m in models or ()
        if m.kind.lower() == "nmt" and m.src_lang and m.tgt_lang
    )


def ready_services(caps: list[CapabilityByType]) -> frozenset[str]:
    """Service types the node reports ready, lower case (``asr``, ``nmt``, ``tts``, …)."""
    return frozenset(c.type.lower() for c in caps if c.ready)


@dataclass(slots=True)
class NodeState:
    """What the management domain knows of one connected node (mutable, lock-guarded)."""

    node_id: str
    pairs: frozenset[Pair]
    services: frozenset[str]
    accept_public_jobs: bool
    max_concurrency: int
    installed_models: list[InstalledModel]
    last_heartbeat: float
    status: NodeStatus = NodeStatus.REGISTERING
    usage: ResourceUsage | None = None
    platform: str = ""
    version: str = ""
    drained: bool = field(default=False)
    # The capability list last reported: a heartbeat repeating it (the routine case) skips
    # recomputing ``services`` (a list compare of three small structs costs a fifth of that).
    capabilities: list[CapabilityByType] = field(default_factory=list)

    @classmethod
    def from_register(
        cls, node_id: str, msg: NodeRegister, *, default_max_concurrency: int, now: float
    ) -> NodeState:
        return cls(
            node_id=node_id,
            pairs=pairs_from(msg.language_capabilities, msg.installed_models),
            services=ready_services(msg.capability_by_type),
            capabilities=msg.capability_by_type,
            accept_public_jobs=msg.accept_public_jobs,
            max_concurrency=msg.max_concurrency or default_max_concurrency,
            installed_models=msg.installed_models,
            last_heartbeat=now,
            platform=msg.platform,
            version=msg.version,
        )

    def set_status(self, status: NodeStatus) -> bool:
        """The one place a node changes status; returns whether it changed."""
        if status is self.status:
            return False
        log.info("node %s: %s -> %s", self.node_id, self.status.value, status.value)
        self.status = status
        return True

    def health_status(self) -> NodeStatus:
        """The status the latest report implies, for a node past registration."""
        if self.drained:
            return NodeStatus.DRAINING
        return NodeStatus.READY if self.services else NodeStatus.DEGRADED

    def status_after_undrain(self) -> NodeStatus:
        """A node drained before its first heartbeat (``usage`` is set by heartbeats only)
        goes back to ``registering``; any other to what its latest report says."""
        return NodeStatus.REGISTERING if self.usage is None else self.health_status()
