"""Every Redis key the stores use, in one place.

Layout (``<ns>`` is the namespace, default ``switchboard``)::

    sb:{<ns>}:slots:<node_id>   sorted set: member = holder, score = lease expiry in ms
                                (Redis server time, from ``TIME`` inside the scripts)
    sb:{<ns>}:nodes             set of node ids that may have a slots key (for held_total)
    sb:{<ns>}:pools             string: the configured pools every instance shares, JSON
                                ``{"revision": n, "pools": [...]}`` (store/pool_config.py)

The cluster of instances on one namespace (store/cluster.py, docs/scale-out.md)::

    sb:{<ns>}:cluster:instances         sorted set: instance id, score = last announce (ms)
    sb:{<ns>}:cluster:instance:<id>     string with a TTL: the instance's presence (JSON)
    sb:{<ns>}:cluster:nodes             hash: node id -> the node's record (JSON, owner inside)
    sb:{<ns>}:cluster:owners            hash: node id -> id of the instance holding its socket
    sb:{<ns>}:cluster:changes           stream: one entry per node record put or dropped
    sb:{<ns>}:cluster:inbox:<id>        stream: frames for instance <id> (consumer group)
    sb:{<ns>}:cluster:dead              stream: frames that could not be delivered

Why every key carries the *same* hash tag ``{<ns>}``: ``try_reserve`` chooses among all
candidate nodes and reserves on the winner in one Lua script, i.e. one round trip and one atomic
step.  A script may only touch keys in one hash slot on Redis Cluster, so all keys of a namespace
must hash to the same slot.  Cluster therefore still works (the namespace lives on one shard),
and one slot's throughput (tens of thousands of scripts per second) is far above what a fleet of
GPU nodes needs: a reservation costs one script call per job attempt, not per audio frame.
Several deployments can share one Cluster by using different namespaces, which spread over
shards.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.errors import ConfigError

KEY_ROOT = "sb"
DEFAULT_NAMESPACE = "switchboard"
SLOTS = "slots"
NODES = "nodes"
POOLS = "pools"
CLUSTER = "cluster"


def validate_namespace(namespace: str) -> str:
    """Return ``namespace`` if it can sit inside a hash tag; raise ``ConfigError`` otherwise.

    A brace inside the namespace would end (or start) the hash tag early, scattering one
    namespace's keys over several slots and breaking the scripts on Cluster.
    """
    if not namespace or "{" in namespace or "}" in namespace:
        raise ConfigError(f"store namespace must be non-empty and brace-free, got {namespace!r}")
    return namespace


@dataclass(frozen=True, slots=True)
class StoreKeys:
    """The keys of one namespace; all of them share the hash tag ``{namespace}``."""

    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)

    @property
    def tag(self) -> str:
        """The hash-tagged prefix every key starts with: ``sb:{<ns>}``."""
        return f"{KEY_ROOT}:{{{self.namespace}}}"

    @property
    def slots_prefix(self) -> str:
        """Prefix of the per-node sorted sets; ``held_total`` appends node ids to it in Lua."""
        return f"{self.tag}:{SLOTS}:"

    @property
    def nodes(self) -> str:
        """The set of node ids that have (or recently had) a slots key."""
        return f"{self.tag}:{NODES}"

    @property
    def pools(self) -> str:
        """The shared pool configuration (``PUT /api/v1/pools``, ``[[pools]]``)."""
        return f"{self.tag}:{POOLS}"

    def slots(self, node_id: str) -> str:
        """The sorted set of ``node_id``'s leases."""
        return self.slots_prefix + node_id

    @property
    def cluster(self) -> str:
        """Prefix of the cluster's keys (``store/cluster.py``)."""
        return f"{self.tag}:{CLUSTER}"

    @property
    def instances(self) -> str:
        return f"{self.cluster}:instances"

    def presence(self, instance_id: str) -> str:
        return f"{self.cluster}:instance:{instance_id}"

    @property
    def presence_prefix(self) -> str:
        return f"{self.cluster}:instance:"

    @property
    def node_records(self) -> str:
        return f"{self.cluster}:nodes"

    @property
    def node_owners(self) -> str:
        return f"{self.cluster}:owners"

    @property
    def changes(self) -> str:
        return f"{self.cluster}:changes"

    def inbox(self, instance_id: str) -> str:
        return f"{self.cluster}:inbox:{instance_id}"

    @property
    def inbox_prefix(self) -> str:
        return f"{self.cluster}:inbox:"

    @property
    def dead_letters(self) -> str:
        return f"{self.cluster}:dead"
