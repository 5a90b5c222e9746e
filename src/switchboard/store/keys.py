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

Two layouts of the same keys, chosen by the URL (``store/redis_cluster.py``):

* **One Redis** (``redis://``, ``rediss://``, ``unix://``): every key carries the same hash tag
  ``{<ns>}``, as above.  ``try_reserve`` chooses among all candidates and reserves on the winner
  in one script, one round trip; nothing here changed when Cluster support came.
* **Redis Cluster** (``redis+cluster://``, ``sharded``): the work is spread over shards.  A
  node's leases live under its *node group*'s tag ``{<ns>:g<k>}``, ``k`` a stable hash of the
  node id (CRC32, the same in every process) modulo ``NODE_GROUPS``; the group's nodes set
  beside them.  An instance's presence and inbox live under the instance's own tag
  ``{<ns>:i:<id>}``, so the send script's presence check and ``XADD`` stay one slot.  The
  node view, the change stream, the instance list, the dead letters and the pools stay on
  ``{<ns>}``: they are small and change only with the fleet, not per job.  Each script
  touches one slot; a reservation whose candidates live in several groups is one script per
  group it tries (``redis_store.py``, docs/scale-out.md)::

    sb:{<ns>:g<k>}:slots:<node_id>      the leases of a node of group k
    sb:{<ns>:g<k>}:nodes                the nodes of group k that may have leases
    sb:{<ns>:i:<id>}:cluster:instance   instance <id>'s presence
    sb:{<ns>:i:<id>}:cluster:inbox      instance <id>'s inbox
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from switchboard.errors import ConfigError

KEY_ROOT = "sb"
DEFAULT_NAMESPACE = "switchboard"
SLOTS = "slots"
NODES = "nodes"
POOLS = "pools"
CLUSTER = "cluster"
# Node groups on Redis Cluster: enough tags to spread over a few dozen shards (16,384 slots are
# hashed pseudo-randomly, so 3 shards get about 5 each), few enough that a group's nodes set
# stays a cheap scan for held_total.
NODE_GROUPS = 32


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
    """The keys of one namespace: all under the hash tag ``{namespace}`` on one Redis; spread
    over node groups and instances when ``sharded`` (Redis Cluster)."""

    namespace: str = DEFAULT_NAMESPACE
    sharded: bool = False

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)

    @property
    def groups(self) -> int:
        """How many node groups lease keys are spread over (1: all under ``{<ns>}``)."""
        return NODE_GROUPS if self.sharded else 1

    def group_of(self, node_id: str) -> int:
        """A node's group: stable across processes and restarts (CRC32, not ``hash``)."""
        if not self.sharded:
            return 0
        return zlib.crc32(node_id.encode()) % NODE_GROUPS

    def group_tag(self, group: int) -> str:
        """The prefix of group ``group``'s keys: ``sb:{<ns>:g<k>}``, or ``sb:{<ns>}``."""
        return f"{KEY_ROOT}:{{{self.namespace}:g{group}}}" if self.sharded else self.tag

    def group_nodes(self, group: int) -> str:
        """The set of group ``group``'s node ids that may have a slots key."""
        return f"{self.group_tag(group)}:{NODES}"

    def group_slots_prefix(self, group: int) -> str:
        return f"{self.group_tag(group)}:{SLOTS}:"

    def instance_tag(self, instance_id: str) -> str:
        """The prefix of an instance's own keys: ``sb:{<ns>:i:<id>}``, or ``sb:{<ns>}``."""
        return f"{KEY_ROOT}:{{{self.namespace}:i:{instance_id}}}" if self.sharded else self.tag

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
        if self.sharded:
            return self.group_slots_prefix(self.group_of(node_id)) + node_id
        return self.slots_prefix + node_id

    @property
    def cluster(self) -> str:
        """Prefix of the cluster's keys (``store/cluster.py``)."""
        return f"{self.tag}:{CLUSTER}"

    @property
    def instances(self) -> str:
        return f"{self.cluster}:instances"

    def presence(self, instance_id: str) -> str:
        if self.sharded:
            return f"{self.instance_tag(instance_id)}:{CLUSTER}:instance"
        return f"{self.cluster}:instance:{instance_id}"

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
        if self.sharded:
            return f"{self.instance_tag(instance_id)}:{CLUSTER}:inbox"
        return f"{self.cluster}:inbox:{instance_id}"

    @property
    def dead_letters(self) -> str:
        return f"{self.cluster}:dead"
