"""Redis Cluster: its URL, the cluster-aware client, and the hot path's connection per shard.

``redis+cluster://[user:password@]host:port[,host:port...]`` names a Redis Cluster by one or
more of its nodes (seeds).  The stores then use redis-py's ``RedisCluster`` for everything but
the hot path: it discovers the slot map from the seeds and follows ``MOVED`` and ``ASK`` by
itself.  The hot path (the batched reserve and release scripts, the cross-instance send) keeps
the pipelined client of ``pipelined.py``, one per primary, chosen by the slot map that
``RedisCluster`` keeps (``ShardRouter``): the client CPU per call of one Redis plus about 7 µs
of routing, where ``RedisCluster`` spends about four times as much (docs/scale-out.md has the
figures, ``benchmarks/micro/redis_cluster.py`` measures them).

The router follows the cluster as it changes: a ``MOVED`` reply sends the call where it says
and reloads the slot map; an ``ASK`` reply sends ``ASKING`` and the call (as ``EVAL``) to the
node it names (a slot being migrated); a lost connection, ``CLUSTERDOWN`` or ``TRYAGAIN``
reloads the slot map in the background (a failover: the replica promoted is the next call's
primary) and the error
goes to the caller, whose policy (one retry, then ``StoreUnavailable``) is the one of a single
Redis.  Reloads are coalesced: one at a time, however many calls ask for one.

Limits: no TLS and no database number (Cluster has only database 0) on this scheme yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from switchboard.store import pipelined

log = logging.getLogger("switchboard.store")

CLUSTER_SCHEME: Final = "redis+cluster"
_MAX_REDIRECTS: Final = 5  # as redis-py's RedisCluster: a loop of redirects is a broken cluster
_RELOAD_ON: Final = frozenset({"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY"})


def is_cluster_url(url: str) -> bool:
    return url.lower().startswith(CLUSTER_SCHEME + "://")


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    seeds: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_cluster_url(url: str) -> ClusterUrl:
    """The seeds and credentials of a ``redis+cluster://`` URL; ``ValueError`` if it is not
    one (the message never holds the password)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != CLUSTER_SCHEME:
        raise ValueError(f"not a {CLUSTER_SCHEME}:// URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis://secret@host means a password, as redis-py reads it
            username, password = None, unquote(user)
    if parts.path not in ("", "/", "/0") or parts.query:
        raise ValueError("a cluster URL takes no database number and no options")
    seeds: list[tuple[str, int]] = []
    for spec in hosts.split(","):
        host, colon, port = spec.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("every cluster seed must be host:port")
        seeds.append((host.strip("[]"), int(port)))
    return ClusterUrl(tuple(seeds), username, password)


def cluster_client_from_url(url: str, *, max_connections: int, timeout_s: float) -> RedisCluster:
    """redis-py's cluster client for the seeds of ``url`` (nothing connects yet).  Its own
    retries (a refresh of the slot map after a connection error) run inside the caller's
    timeout."""
    parsed = parse_cluster_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.seeds],
        username=parsed.username,
        password=parsed.password,
        decode_responses=True,
        max_connections=max_connections,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


class ShardRouter:
    """The hot path on Redis Cluster: ``evalsha_then`` (as ``PipelinedClient``'s) on the
    pipelined connection of the primary serving the first key's slot; see the module
    docstring.  Every key of a call must share one slot (the key layout sees to it)."""

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        username: str | None,
        password: str | None,
        connect_timeout_s: float,
        stall_s: float,
    ) -> None:
        self._cluster = cluster
        self._username = username
        self._password = password
        self._connect_timeout_s = connect_timeout_s
        self._stall_s = stall_s
        self._clients: dict[tuple[str, int], pipelined.PipelinedClient] = {}
        self._reloading: asyncio.Task[None] | None = None
        self._waiting: list[Callable[[BaseException | None], None]] = []
        self._closed = False

    @classmethod
    def for_url(
        cls, cluster: RedisCluster, url: str, *, connect_timeout_s: float, stall_s: float
    ) -> ShardRouter:
        parsed = parse_cluster_url(url)
        return cls(
            cluster,
            username=parsed.username,
            password=parsed.password,
            connect_timeout_s=connect_timeout_s,
            stall_s=stall_s,
        )

    def evalsha_then(
        self,
        script: pipelined.Script,
        keys: Sequence[pipelined.Arg],
        args: Sequence[pipelined.Arg],
        reply: pipelined.Reply,
    ) -> None:
        _Routed(self, script, keys, args, reply).send()

    def client_for(self, slot: int) -> pipelined.PipelinedClient | None:
        """The primary serving ``slot`` by the slot map; ``None`` until the map is loaded."""
        nodes = self._cluster.nodes_manager.slots_cache.get(slot)
        if not nodes:
            return None
        return self.client_at(nodes[0].host, int(nodes[0].port))

    def client_at(self, host: str, port: int) -> pipelined.PipelinedClient:
        client = self._clients.get((host, port))
        if client is None:
            endpoint = pipelined.Endpoint(
                host=host, port=port, username=self._username, password=self._password
            )
            client = self._clients[(host, port)] = pipelined.PipelinedClient(
                endpoint, connect_timeout_s=self._connect_timeout_s, stall_s=self._stall_s
            )
        return client

    def reload(self, then: Callable[[BaseException | None], None] | None = None) -> None:
        """Reload the slot map (one reload at a time); ``then(error)`` once it is done."""
        if then is not None:
            self._waiting.append(then)
        if self._reloading is None and not self._closed:
            self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        error: BaseException | None = None
        try:
            async with asyncio.timeout(2 * self._connect_timeout_s):
                if not self._cluster.nodes_manager.slots_cache:  # never loaded: a first load
                    await self._cluster.initialize()
                else:
                    await self._cluster.nodes_manager.initialize()
        except Exception as exc:  # reported to the calls waiting on it, as a lost connection
            error = exc
            log.warning("redis cluster slot map reload failed (%s)", type(exc).__name__)
        finally:
            self._reloading = None
        waiting, self._waiting = self._waiting, []
        for then in waiting:
            then(error)

    async def close(self) -> None:
        self._closed = True
        if self._reloading is not None:
            self._reloading.cancel()
            with contextlib.suppress(BaseException):
                await self._reloading
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()


class _Routed:
    """One hot-path call on Cluster: routed by slot, redirected as the cluster says."""

    __slots__ = ("_args", "_keys", "_redirects", "_reply", "_router", "_script", "_slot")

    def __init__(
        self,
        router: ShardRouter,
        script: pipelined.Script,
        keys: Sequence[pipelined.Arg],
        args: Sequence[pipelined.Arg],
        reply: pipelined.Reply,
    ) -> None:
        self._router = router
        self._script = script
        self._keys = keys
        self._args = args
        self._reply = reply
        self._redirects = 0
        first = keys[0]
        self._slot = int(key_slot(first if isinstance(first, bytes) else str(first).encode()))

    def send(self) -> None:
        client = self._router.client_for(self._slot)
        if client is None:
            self._router.reload(self._loaded)
            return
        client.evalsha_then(self._script, self._keys, self._args, self._answered)

    def _loaded(self, error: BaseException | None) -> None:
        client = None if error is not None else self._router.client_for(self._slot)
        if client is None:
            detail = f"{type(error).__name__}" if error is not None else "slot not served"
            self._reply(None, pipelined.ConnectionFailed(f"no redis cluster map ({detail})"))
            return
        client.evalsha_then(self._script, self._keys, self._args, self._answered)

    def _answered(self, value: Any, error: BaseException | None) -> None:
        if isinstance(error, pipelined.ReplyError):
            code = error.code
            if code in ("MOVED", "ASK") and self._redirects < _MAX_REDIRECTS:
                self._redirect(code, str(error))
                return
            if code in _RELOAD_ON:
                self._router.reload()
        elif isinstance(error, pipelined.ConnectionFailed):
            self._router.reload()  # a primary lost: its replica may be promoted by now
        self._reply(value, error)

    def _redirect(self, code: str, text: str) -> None:
        """``MOVED <slot> <host>:<port>`` or ``ASK <slot> <host>:<port>``."""
        self._redirects += 1
        host, _, port = text.split()[2].rpartition(":")
        client = self._router.client_at(host, int(port))
        if code == "MOVED":
            self._router.reload()  # the map is stale; meanwhile go where we are told
            client.evalsha_then(self._script, self._keys, self._args, self._answered)
            return
        # A slot in migration: this one call goes to the importing node, right after ASKING
        # (which holds for the next command only), as EVAL: an EVALSHA the node has no script
        # for would be retried without ASKING and sent back.
        client.command_then(("ASKING",), _ignored)
        command = ("EVAL", self._script.source, len(self._keys), *self._keys, *self._args)
        client.command_then(command, self._answered)


def _ignored(value: Any, error: BaseException | None) -> None:
    """``ASKING``'s own reply: the call after it reports what matters."""
