"""What instances tell each other, as JSON: a node's runtime view and an instance's presence."""

from __future__ import annotations

import msgspec

from switchboard.runtime.values import NodeRuntime, NodeStatus


class NodeRecord(msgspec.Struct, frozen=True):
    """A node's runtime view: the fields a snapshot needs, nothing routine (no heartbeat time,
    no resource use), so a heartbeat never changes it."""

    node_id: str
    status: str
    pairs: list[tuple[str, str]]
    services: list[str]
    accept_public_jobs: bool
    max_concurrency: int


class Presence(msgspec.Struct, frozen=True):
    """An instance's presence value (``GET /api/v1/cluster`` lists them)."""

    instance_id: str
    address: str
    started_at: float  # Unix time
    last_seen: float  # Unix time of this announce
    nodes: int
    sessions: int


_node_decoder = msgspec.json.Decoder(NodeRecord)
_presence_decoder = msgspec.json.Decoder(Presence)


def encode_node(node: NodeRuntime) -> str:
    record = NodeRecord(
        node_id=node.node_id,
        status=node.status.value,
        pairs=sorted(node.pairs),
        services=sorted(node.services),
        accept_public_jobs=node.accept_public_jobs,
        max_concurrency=node.max_concurrency,
    )
    return msgspec.json.encode(record).decode()


def decode_node(text: str) -> NodeRuntime | None:
    """The view a record describes; ``None`` for one that does not parse (written by a newer
    or broken instance: skipped rather than taking the reader down)."""
    try:
        record = _node_decoder.decode(text)
        status = NodeStatus(record.status)
    except (msgspec.DecodeError, ValueError):
        return None
    return NodeRuntime(
        node_id=record.node_id,
        status=status,
        pairs=frozenset((src, tgt) for src, tgt in record.pairs),
        services=frozenset(record.services),
        accept_public_jobs=record.accept_public_jobs,
        max_concurrency=record.max_concurrency,
    )


def encode_presence(presence: Presence) -> str:
    return msgspec.json.encode(presence).decode()


def decode_presence(text: str) -> Presence | None:
    try:
        return _presence_decoder.decode(text)
    except msgspec.DecodeError:
        return None
