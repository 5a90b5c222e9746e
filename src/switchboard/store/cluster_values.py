"""The values the cluster store hands over (``cluster.py``), without importing Redis: the
cluster's domain side (``switchboard.cluster``) names them on every instance, a lone one on
the embedded store included, which must not load redis-py for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A frame for another instance's inbox."""

    target: str  # the instance to deliver to
    kind: str  # what the receiver does with it (cluster/relay.py)
    node_id: str
    origin: str  # the sending instance
    frame: bytes


@dataclass(frozen=True, slots=True)
class InboxEntry:
    entry_id: str
    kind: str
    node_id: str
    origin: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class NodeChange:
    change_id: str
    op: str  # "put" or "drop"
    node_id: str
    owner: str
    record: str | None  # the record, for a put


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: str
    fields: dict[str, str]
