"""The Redis reservation store: several schedulers share one set of leases.

Each operation is one Lua script (``store/lua/*.lua``), so it is atomic and costs one round
trip; reservations and releases made in the same event-loop tick share one script call
(``batching.py``), which runs them in order, so a batch means what the calls would mean one by
one while the client CPU per call, by far the largest cost, is paid once per batch.  Lease
expiry uses Redis server time (``TIME`` inside the scripts), never this process's clock, so
schedulers on different hosts agree.

Two clients, one URL: the hot path (the batched reserve and release scripts) goes through
``pipelined.py``, one pipelined connection that costs a third of redis-py's CPU per call; the
rest (renew, counts, ping) through redis-py's connection pool.  Both send ``EVALSHA`` and, after
a ``SCRIPT FLUSH`` or a Redis restart (``NOSCRIPT``), load the script again and retry by
themselves.

Failure contract: every call is bounded by ``timeout_s`` (an ``asyncio.timeout`` around the
whole call, because a paused Redis accepts bytes but never answers; redis-py also has socket
timeouts, the pipelined client drops a connection that has owed replies for three timeouts).
Whatever either client or the socket raises is translated here, in ``_translate``, into
``StoreUnavailable`` (cannot reach Redis right now) or ``StoreError`` (Redis answered with an
error); no redis-py or pipelined-client exception leaves this module.  A connection error is
retried once at once on a fresh connection: after a restart the old connection is dead but a
new one works, and every script is idempotent per holder, so repeating it is safe.

On a Redis Cluster (``redis+cluster://``, ``redis_cluster.py``) the same scripts run per node
group: leases are spread over groups (``keys.py``), the hot path is routed to the primary of
each group's slot, and a reservation whose candidates span groups is a probe, then the script
in the chosen group (``groups.py``).  A batch in one group is one script, as on one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, Final, TypeVar

from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from switchboard.config import redact_url
from switchboard.errors import ConfigError, StoreError, StoreUnavailable
from switchboard.store import groups as grouping
from switchboard.store import pipelined
from switchboard.store.base import Candidate, Claim, Outcome, ReservationStore, _then, awaited
from switchboard.store.batching import Batcher
from switchboard.store.keys import DEFAULT_NAMESPACE, StoreKeys
from switchboard.store.memory import check_lease
from switchboard.store.redis_cluster import ShardRouter, cluster_client_from_url, is_cluster_url

T = TypeVar("T")
# Either client: one Redis (redis://, rediss://, unix://) or a Redis Cluster (redis+cluster://).
AnyRedis = Redis | RedisCluster
# The hot path: one pipelined connection, or one per primary of a Cluster.
HotClient = pipelined.PipelinedClient | ShardRouter
_ReserveRequest = tuple[tuple[Candidate, ...], str, int]  # candidates, holder, lease ms

# Redis errors that mean "the server cannot serve us right now" rather than "the request was
# wrong": connection/timeout (incl. LOADING and auth, which subclass ConnectionError), a replica
# after failover, a cluster mid-reshard, and a server out of memory.
_UNAVAILABLE: Final = (
    pipelined.ConnectionFailed,  # incl. AUTH or SELECT refused, as redis-py's auth errors
    pipelined.Overloaded,
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.OutOfMemoryError,
    rexc.ClusterError,  # Cluster: redirects or retries exhausted (a failover under way)
    rexc.SlotNotCoveredError,  # Cluster: a slot without a primary (mid-failover)
    TimeoutError,  # asyncio.timeout() and socket timeouts (asyncio.TimeoutError is this in 3.11)
    OSError,
)
# The same conditions as error replies, by their code: the pipelined client has no classes for
# them, and neither has redis-py for BUSY (a script still running past busy-reply-threshold
# answers every other client so).
_UNAVAILABLE_REPLIES: Final = frozenset(
    {"BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "NOAUTH"}
)
# The hot-path connection is dropped after this many timeouts without a reply while it owes
# some: a pause of a few timeouts keeps it (and its order: a late reserve still runs before the
# release that undoes it), a vanished peer does not hold it for TCP's hours.
_STALL_TIMEOUTS: Final = 3


@functools.cache
def _load_lua(name: str) -> str:
    """Read a script shipped as package data (``switchboard/store/lua/<name>.lua``)."""
    return resources.files("switchboard.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _translate(exc: BaseException) -> StoreError:
    """Map any failure of a Redis call onto the Switchboard exception tree."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if (
        isinstance(exc, _UNAVAILABLE)
        or _reply_code(exc) in _UNAVAILABLE_REPLIES
        or _no_cluster_node(exc)
    ):
        return StoreUnavailable(f"redis unavailable ({detail})")
    return StoreError(f"redis error ({detail})")


def _no_cluster_node(exc: BaseException) -> bool:
    """redis-py's cluster client reached none of its seeds: an outage, though its class (the
    one it also raises for a misconfigured cluster) says nothing more."""
    return isinstance(exc, rexc.RedisClusterException) and "cannot be connected" in str(exc)


def _reply_code(exc: BaseException) -> str | None:
    """The error code an error reply starts with (``BUSY``, ``ERR``, ...); None if not one."""
    if isinstance(exc, rexc.ResponseError | pipelined.ReplyError):
        return str(exc).split(" ", 1)[0]
    return None


def _nodes_of(reply: Any, count: int) -> list[str | None]:
    """``try_reserve_many``'s reply: a node id per request, ``''`` for no room."""
    if not isinstance(reply, list) or len(reply) != count:
        raise StoreError(f"unexpected reply from try_reserve_many: {reply!r}")
    return [node or None for node in reply]


def _lease_ms(lease_s: float) -> int:
    """Lease length in whole ms, rounded up so a short lease never becomes zero."""
    # round() first so float noise (0.7 * 1000 = 700.0000000000001) does not add a ms.
    return max(1, math.ceil(round(check_lease(lease_s) * 1000, 6)))


def _check_timeout(timeout_s: float) -> None:
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ConfigError(f"store timeout must be a positive number of seconds, got {timeout_s!r}")


def _as_int(value: object) -> int:
    """A script's integer reply; anything else means the server is not what we think."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise StoreError(f"unexpected reply from redis script: {value!r}")


def client_from_url(url: str, *, max_connections: int, timeout_s: float) -> AnyRedis:
    """A redis-py client on its own blocking pool for ``url`` (nothing connects yet); for a
    ``redis+cluster://`` URL, redis-py's cluster client (``redis_cluster.py``).

    A blocking pool: past its size a call waits (bounded by the caller's timeout) instead of
    failing at once, which redis-py's default pool would report as an outage.  One immediate
    retry on a connection error: enough to replace a pooled connection that died with a Redis
    restart, short enough to fail fast.  (It must be redis.asyncio.retry.Retry: the sync class
    silently never retries.)  A bad URL raises; wrap the call in ``_config_errors``."""
    if is_cluster_url(url):
        return cluster_client_from_url(url, max_connections=max_connections, timeout_s=timeout_s)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), retries=1),
    )
    return Redis(connection_pool=pool)


def _config_errors(url: str, make: Callable[[], T]) -> T:
    """``make()``, with a bad URL or option reported as ``ConfigError`` (secrets redacted)."""
    try:
        return make()
    except (ValueError, OSError, rexc.RedisError) as exc:
        raise ConfigError(f"bad redis url {redact_url(url)!r}: {type(exc).__name__}") from None


async def bounded(
    op: Callable[[], Awaitable[T]], timeout_s: float, *, client: AnyRedis | None = None
) -> T:
    """Run one redis-py operation within ``timeout_s`` (a paused Redis accepts bytes but never
    answers); translate every failure onto the Switchboard exception tree.

    A ``RedisCluster`` ``client`` is initialized first (its slot map loaded, once): redis-py
    8.1's cluster client, used by several calls at once before its first load, fails some of
    them (``AttributeError`` inside its connection set-up); one load before any call avoids
    it."""
    try:
        async with asyncio.timeout(timeout_s):
            if isinstance(client, RedisCluster):
                await client.initialize()  # a no-op once loaded
            return await op()
    except StoreError:
        raise
    except TimeoutError as exc:  # our asyncio.timeout: a paused or black-holed Redis
        raise StoreUnavailable(f"redis gave no answer within {timeout_s:g} s") from exc
    except Exception as exc:
        raise _translate(exc) from exc


def hot_client(client: AnyRedis, *, timeout_s: float) -> HotClient:
    """The hot path's client to the server(s) ``client`` talks to: one pipelined connection
    (``Endpoint.of_pool``: the two can never point at different servers), or on a Cluster one
    per primary, routed by ``client``'s slot map (``redis_cluster.ShardRouter``)."""
    stall_s = _STALL_TIMEOUTS * timeout_s
    if isinstance(client, RedisCluster):
        kwargs = client.get_connection_kwargs()
        if not kwargs.get("decode_responses"):
            raise ConfigError("RedisStore needs a client with decode_responses=True")
        return ShardRouter(
            client,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            connect_timeout_s=timeout_s,
            stall_s=stall_s,
        )
    if not client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ConfigError("RedisStore needs a client with decode_responses=True")
    return pipelined.PipelinedClient(
        pipelined.Endpoint.of_pool(client.connection_pool),
        connect_timeout_s=timeout_s,
        stall_s=stall_s,
    )


class RedisStore(ReservationStore):
    """Leases as sorted sets in Redis; see ``keys.py`` for the layout."""

    name = "redis"

    def __init__(
        self,
        client: AnyRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 1.0,
        hot: HotClient | None = None,
    ) -> None:
        """Wrap ``client``, which must use ``decode_responses=True`` (node ids come back as str);
        the hot path gets its own connection to the same server (``Endpoint.of_pool``), or on
        a Cluster ``hot`` (a ``ShardRouter``), and the keys spread over shards.

        Prefer ``from_url``, which also sets the socket timeouts and the retry policy.
        """
        _check_timeout(timeout_s)
        self._client = client
        self._hot = hot or hot_client(client, timeout_s=timeout_s)
        self._keys = StoreKeys(namespace, sharded=isinstance(client, RedisCluster))
        self._timeout_s = timeout_s
        self._try_reserve = pipelined.Script(_load_lua("try_reserve_many"))
        self._release = pipelined.Script(_load_lua("release_many"))
        self._reassert = pipelined.Script(_load_lua("reassert"))
        # Requests made in the same loop tick share one script call (store/batching.py).
        # On a Cluster one batch at a time: a batch's probe must see the batch before it.
        self._reserve_batch: Batcher[_ReserveRequest, str | None] = Batcher(
            self._reserve_many, max_in_flight=1 if self._keys.sharded else 2
        )
        self._release_batch: Batcher[tuple[str, str], bool] = Batcher(self._release_many)
        self._renew = self._script("renew")
        self._reserved = self._script("reserved")
        self._held_total = self._script("held_total")
        self._probe = pipelined.Script(_load_lua("probe"))

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = DEFAULT_NAMESPACE, timeout_s: float = 1.0
    ) -> RedisStore:
        """A store on its own connections to ``url``; nothing connects until the first call."""
        _check_timeout(timeout_s)

        # The hot path's TLS context is built in __init__, so a bad ssl_* option (an unreadable
        # ssl_ca_certs, say) is a ConfigError at start-up, not an outage at the first call.
        def make() -> RedisStore:
            client = client_from_url(url, max_connections=32, timeout_s=timeout_s)
            return cls(
                client,
                namespace=namespace,
                timeout_s=timeout_s,
                hot=hot_client(client, timeout_s=timeout_s),
            )

        return _config_errors(url, make)

    @property
    def namespace(self) -> str:
        return self._keys.namespace

    def _script(self, name: str) -> AsyncScript:
        return self._client.register_script(_load_lua(name))

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        return await bounded(op, self._timeout_s, client=self._client)

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._call(lambda: script(keys=keys, args=args))

    def _run_hot(
        self,
        script: pipelined.Script,
        keys: Sequence[str],
        args: Sequence[pipelined.Arg],
        done: Callable[[Any, StoreError | None], None],
    ) -> None:
        """One script on the pipelined connection, written now; ``done`` gets the reply or
        the translated failure, once (``_HotCall``)."""
        _HotCall(self._hot, script, keys, args, done, timeout_s=self._timeout_s).start()

    async def try_reserve(
        self, candidates: Sequence[Candidate], holder: str, *, lease_s: float
    ) -> str | None:
        (node,) = await self.try_reserve_many([(candidates, holder)], lease_s=lease_s)
        return node

    async def try_reserve_many(
        self, requests: Sequence[tuple[Sequence[Candidate], str]], *, lease_s: float
    ) -> list[str | None]:
        return list(await awaited(self.reserve_soon, requests, lease_s=lease_s))

    def reserve_soon(
        self,
        requests: Sequence[tuple[Sequence[Candidate], str]],
        *,
        lease_s: float,
        done: Outcome[str | None],
    ) -> None:
        lease_ms = _lease_ms(lease_s)
        wanted = [(tuple(cands), holder, lease_ms) for cands, holder in requests if cands]
        if not wanted:  # nothing to ask Redis; still answered from the loop, as always
            asyncio.get_running_loop().call_soon(done, [None] * len(requests), None)
            return

        def spread(results: Sequence[str | None] | None, error: BaseException | None) -> None:
            if error is not None or results is None:
                done(None, error)
                return
            got = iter(results)
            done([next(got) if cands else None for cands, _ in requests], None)

        self._reserve_batch.submit(wanted, spread)

    def _reserve_many(self, requests: Sequence[_ReserveRequest], done: Outcome[str | None]) -> None:
        nodes_key = self._keys.nodes
        if self._keys.sharded:
            group = self._one_group(c.node_id for cands, _, _ in requests for c in cands)
            if group is None:  # candidates in several groups: rounds (groups.py)
                _then(self._reserve_rounds(requests), done)
                return
            nodes_key = self._keys.group_nodes(group)  # one group: one script, as on one Redis
        keys, args = self._reserve_call(nodes_key, requests)

        def parse(reply: Any, error: StoreError | None) -> None:
            if error is None:
                try:
                    done(_nodes_of(reply, len(requests)), None)
                except StoreError as exc:
                    done(None, exc)
            else:
                done(None, error)

        self._run_hot(self._try_reserve, keys, args, parse)

    def _reserve_call(
        self, nodes_key: str, requests: Sequence[_ReserveRequest]
    ) -> tuple[list[str], list[pipelined.Arg]]:
        """``try_reserve_many``'s keys and arguments for ``requests``."""
        keys = [nodes_key]
        args: list[pipelined.Arg] = [len(requests)]
        for candidates, holder, lease_ms in requests:
            args += [holder, lease_ms, len(candidates)]
            for cand in candidates:
                keys.append(self._keys.slots(cand.node_id))
                args += [cand.node_id, cand.capacity, cand.tier]
        return keys, args

    def _hot_future(
        self, script: pipelined.Script, keys: Sequence[str], args: Sequence[pipelined.Arg]
    ) -> asyncio.Future[Any]:
        """``_run_hot`` as a future (the sharded paths gather these: a future per script
        call, no task per call, and only one task per batch)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def got(value: Any, error: StoreError | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        self._run_hot(script, keys, args, got)
        return future

    # --- Redis Cluster: the same operations over node groups (keys.py, groups.py) -------------

    def _one_group(self, node_ids: Iterable[str]) -> int | None:
        """The group every one of ``node_ids`` is in, or ``None`` if they span several."""
        group: int | None = None
        for node in node_ids:
            this = self._keys.group_of(node)
            if group is None:
                group = this
            elif this != group:
                return None
        return group

    def _by_group(self, node_ids: Iterable[str]) -> dict[int, list[int]]:
        """Positions of ``node_ids`` by their node group, groups in order of first appearance."""
        out: dict[int, list[int]] = {}
        for i, node in enumerate(node_ids):
            out.setdefault(self._keys.group_of(node), []).append(i)
        return out

    async def _reserve_rounds(self, requests: Sequence[_ReserveRequest]) -> list[str | None]:
        """A batch of reservations over node groups, in rounds (``groups.py``).  If a round
        fails, the leases the batch already took are released before the error is raised, so
        a failed batch holds nothing."""
        results: list[str | None] = [None] * len(requests)
        left = {i: grouping.unique(cands) for i, (cands, _, _) in enumerate(requests)}
        group_of = {c.node_id: self._keys.group_of(c.node_id) for cs in left.values() for c in cs}
        try:
            while left:
                left = await self._reserve_round(left, requests, group_of, results)
        except BaseException:
            taken = [(node, requests[i][1]) for i, node in enumerate(results) if node]
            if taken:
                self.release_soon(taken, done=lambda _results, _error: None)
            raise
        return results

    async def _reserve_round(
        self,
        left: Mapping[int, Sequence[Candidate]],
        requests: Sequence[_ReserveRequest],
        group_of: Mapping[str, int],
        results: list[str | None],
    ) -> dict[int, list[Candidate]]:
        """Probe, plan, reserve: fills ``results`` with what was granted and returns the
        requests to try again, each with the candidates of the groups it has not tried."""
        probe = await self._probe_round(left, requests, group_of)
        holders = [holder for _, holder, _ in requests]
        sends: dict[int, list[int]] = {}
        for index, group in grouping.plan(list(left.items()), group_of, probe, holders).items():
            if group is not None:
                sends.setdefault(group, []).append(index)
        calls = [
            self._hot_future(
                self._try_reserve,
                *self._reserve_call(
                    self._keys.group_nodes(group),
                    [
                        (
                            tuple(c for c in left[i] if group_of[c.node_id] == group),
                            requests[i][1],
                            requests[i][2],
                        )
                        for i in indices
                    ],
                ),
            )
            for group, indices in sends.items()
        ]
        # Every reply is read, errors included: what the other groups granted must be counted
        # (and released) before the first error is raised.
        replies = await asyncio.gather(*calls, return_exceptions=True)
        tried_again: dict[int, list[Candidate]] = {}
        failure: BaseException | None = None
        for (group, indices), reply in zip(sends.items(), replies, strict=True):
            try:
                if isinstance(reply, BaseException):
                    raise reply
                nodes = _nodes_of(reply, len(indices))
            except BaseException as exc:
                failure = failure or exc
                continue
            for index, node in zip(indices, nodes, strict=True):
                results[index] = node
                rest = [c for c in left[index] if group_of[c.node_id] != group]
                if node is None and rest:  # its group filled since the probe: try the others
                    tried_again[index] = rest
        if failure is not None:
            raise failure
        return tried_again

    async def _probe_round(
        self,
        left: Mapping[int, Sequence[Candidate]],
        requests: Sequence[_ReserveRequest],
        group_of: Mapping[str, int],
    ) -> grouping.Probe:
        """Live counts of the candidates of the requests that span several groups: one probe
        script per group, all at once; nothing is asked when no request spans groups."""
        asks: dict[int, list[tuple[int, str]]] = {}
        for index, cands in left.items():
            if len({group_of[c.node_id] for c in cands}) > 1:
                for cand in cands:
                    asks.setdefault(group_of[cand.node_id], []).append((index, cand.node_id))
        if not asks:
            return grouping.Probe({}, frozenset())
        replies = await asyncio.gather(
            *(
                self._hot_future(
                    self._probe,
                    [self._keys.slots(node) for _, node in pairs],
                    [requests[index][1] for index, _ in pairs],
                )
                for pairs in asks.values()
            )
        )
        live: dict[str, int] = {}
        held: set[tuple[int, str]] = set()
        for pairs, reply in zip(asks.values(), replies, strict=True):
            if not isinstance(reply, list) or len(reply) != len(pairs):
                raise StoreError(f"unexpected reply from probe: {reply!r}")
            for (index, node), count in zip(pairs, reply, strict=True):
                if _as_int(count) == grouping.HELD:
                    held.add((index, node))
                else:
                    live[node] = _as_int(count)
        return grouping.Probe(live, frozenset(held))

    async def _release_grouped(self, leases: Sequence[tuple[str, str]]) -> list[bool]:
        groups = self._by_group(node for node, _ in leases)
        replies = await asyncio.gather(
            *(
                self._hot_future(
                    self._release,
                    [self._keys.slots(leases[i][0]) for i in indices],
                    [leases[i][1] for i in indices],
                )
                for indices in groups.values()
            )
        )
        out = [False] * len(leases)
        for indices, reply in zip(groups.values(), replies, strict=True):
            if not isinstance(reply, list) or len(reply) != len(indices):
                raise StoreError(f"unexpected reply from release_many: {reply!r}")
            for i, released in zip(indices, reply, strict=True):
                out[i] = _as_int(released) > 0
        return out

    async def release(self, node_id: str, holder: str) -> bool:
        (released,) = await awaited(self.release_soon, [(node_id, holder)])
        return bool(released)

    def release_soon(self, leases: Sequence[tuple[str, str]], *, done: Outcome[bool]) -> None:
        self._release_batch.submit(leases, done)

    def _release_many(self, leases: Sequence[tuple[str, str]], done: Outcome[bool]) -> None:
        if self._keys.sharded and self._one_group(node for node, _ in leases) is None:
            _then(self._release_grouped(leases), done)
            return
        keys = [self._keys.slots(node_id) for node_id, _ in leases]

        def parse(reply: Any, error: StoreError | None) -> None:
            if error is None and (not isinstance(reply, list) or len(reply) != len(leases)):
                error = StoreError(f"unexpected reply from release_many: {reply!r}")
            if error is not None:
                done(None, error)
                return
            try:
                done([_as_int(n) > 0 for n in reply], None)
            except StoreError as exc:
                done(None, exc)

        self._run_hot(self._release, keys, [holder for _, holder in leases], parse)

    async def renew(self, leases: Iterable[tuple[str, str]], *, lease_s: float) -> int:
        lease_ms = _lease_ms(lease_s)
        unique = list(dict.fromkeys(leases))  # a lease listed twice is still one lease
        if not unique:
            return 0
        groups = self._by_group(node for node, _ in unique).values()
        counts = await asyncio.gather(
            *(
                self._run(
                    self._renew,
                    [self._keys.slots(unique[i][0]) for i in indices],
                    [lease_ms, *(unique[i][1] for i in indices)],
                )
                for indices in groups
            )
        )
        return sum(_as_int(count) for count in counts)

    # --- leases lost by Redis: re-created before anything new is reserved ------------------

    def reassert_soon(self, claims: Sequence[Claim], *, lease_s: float, done: Outcome[int]) -> None:
        """On the hot-path connection, in order with reservations and releases: a release
        sent later drops what this re-creates, and a reservation sent later counts it."""
        if not claims:
            asyncio.get_running_loop().call_soon(done, [0, 0, 0], None)
            return
        lease_ms = _lease_ms(lease_s)
        if self._keys.sharded and self._one_group(node for node, _, _ in claims) is None:
            _then(self._reassert_grouped(claims, lease_ms), done)  # one script per node group
            return
        keys, args = self._reassert_call(claims, lease_ms)

        def parse(reply: Any, error: StoreError | None) -> None:
            if error is not None:
                done(None, error)
                return
            try:
                done(_reassert_counts(reply), None)
            except StoreError as exc:
                done(None, exc)

        self._run_hot(self._reassert, keys, args, parse)

    async def _reassert_grouped(self, claims: Sequence[Claim], lease_ms: int) -> list[int]:
        groups = self._by_group(node for node, _, _ in claims).values()
        replies = await asyncio.gather(
            *(
                self._hot_future(
                    self._reassert, *self._reassert_call([claims[i] for i in indices], lease_ms)
                )
                for indices in groups
            )
        )
        totals = [0, 0, 0]
        for reply in replies:
            totals = [a + b for a, b in zip(totals, _reassert_counts(reply), strict=True)]
        return totals

    def reassert_on_connect(
        self,
        claims: Callable[[], Sequence[Claim]],
        *,
        lease_s: float,
        lost: Callable[[int, int], None],
    ) -> None:
        """Every new hot-path connection (the first, and each after a Redis restart or an
        outage) runs ``reassert`` on ``claims()`` before any command queued on it, so no
        reservation of this instance can reach a Redis that lost its leases before they
        are back.  ``lost(recreated, over)`` hears of leases that had to be re-created."""
        hot = self._hot
        if not isinstance(hot, pipelined.PipelinedClient):
            # A Cluster's hot path is one connection per primary (``ShardRouter``), each
            # holding some node groups' leases: there the renewal and the re-assert ahead of
            # the first reservation after an outage re-create them (docs/scale-out.md).
            return
        lease_ms = _lease_ms(lease_s)
        source = self._reassert.source

        def set_up() -> tuple[tuple[pipelined.Arg, ...], Callable[[Any], None]] | None:
            current = claims()
            if not current:
                return None
            keys, args = self._reassert_call(current, lease_ms)
            return ("EVAL", source, len(keys), *keys, *args), reassert_reply

        def reassert_reply(reply: Any) -> None:
            if isinstance(reply, list) and len(reply) == 3 and reply[1]:
                lost(_as_int(reply[1]), _as_int(reply[2]))

        hot.set_up_hook = set_up

    def _reassert_call(
        self, claims: Sequence[Claim], lease_ms: int
    ) -> tuple[list[str], list[pipelined.Arg]]:
        """One script's keys and arguments: every claim in one node group (one slot)."""
        keys = [self._keys.group_nodes(self._keys.group_of(claims[0][0]))]
        args: list[pipelined.Arg] = [lease_ms]
        for node_id, holder, capacity in claims:
            keys.append(self._keys.slots(node_id))
            args += [node_id, holder, capacity]
        return keys, args

    async def reserved(self, node_ids: Iterable[str]) -> Mapping[str, int]:
        nodes = list(dict.fromkeys(node_ids))
        if not nodes:
            return {}
        groups = list(self._by_group(nodes).values())
        replies = await asyncio.gather(
            *(
                self._run(self._reserved, [self._keys.slots(nodes[i]) for i in g], [])
                for g in groups
            )
        )
        out: dict[str, int] = {}
        for indices, reply in zip(groups, replies, strict=True):
            if not isinstance(reply, list) or len(reply) != len(indices):
                raise StoreError(f"unexpected reply from reserved: {reply!r}")
            for i, count in zip(indices, reply, strict=True):
                out[nodes[i]] = _as_int(count)
        return {node: out[node] for node in nodes}

    async def held_total(self) -> int:
        """One script per node group (one on a single Redis): on a Cluster the total is a sum
        of per-group reads, exact for each group, not one atomic read of all."""
        keys = self._keys
        totals = await asyncio.gather(
            *(
                self._run(self._held_total, [keys.group_nodes(g)], [keys.group_slots_prefix(g)])
                for g in range(keys.groups)
            )
        )
        return sum(_as_int(total) for total in totals)

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._client.ping))
        except StoreError:
            return False

    async def close(self) -> None:
        """Close both clients.  Best effort: a dead connection needs no clean goodbye."""
        with contextlib.suppress(Exception):
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._hot.close()


class _HotCall:
    """One hot-path script call with ``_call``'s policy and redis-py's retry: once more at once
    after a connection error (a fresh connection is opened; the scripts are idempotent per
    holder), and no answer within the timeout is ``StoreUnavailable`` (a paused Redis accepts
    bytes but never answers).  Timed by the loop's clock, not ``asyncio.timeout``: there is no
    task to cancel, only a callback to give up on.

    An object rather than closures: a closure that retries by naming itself is a reference
    cycle, which keeps the whole job it serves (frames and all) alive until the cyclic
    collector runs; this one holds no cycle once it has finished (E0 measured 14x the young
    collections with the closures)."""

    __slots__ = ("_args", "_client", "_done", "_keys", "_retried", "_script", "_timer")

    def __init__(
        self,
        client: HotClient,
        script: pipelined.Script,
        keys: Sequence[str],
        args: Sequence[pipelined.Arg],
        done: Callable[[Any, StoreError | None], None] | None,
        *,
        timeout_s: float,
    ) -> None:
        self._client = client
        self._script = script
        self._keys = keys
        self._args = args
        self._done = done  # None once finished
        self._retried = False
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            timeout_s, self._expired, timeout_s
        )

    def start(self) -> None:
        self._client.evalsha_then(self._script, self._keys, self._args, self._reply)

    def _expired(self, timeout_s: float) -> None:
        self._finish(None, StoreUnavailable(f"redis gave no answer within {timeout_s:g} s"))

    def _reply(self, value: Any, error: BaseException | None) -> None:
        if self._done is None:
            return  # given up on: a late reply is dropped
        if isinstance(error, pipelined.ConnectionFailed) and not self._retried:
            self._retried = True
            self.start()
        elif isinstance(error, StoreError):
            self._finish(None, error)
        elif error is not None:
            translated = _translate(error)
            translated.__cause__ = error  # as ``raise ... from``: the cause stays readable
            self._finish(None, translated)
        else:
            self._finish(value, None)

    def _finish(self, value: Any, error: StoreError | None) -> None:
        done, self._done = self._done, None
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if done is not None:
            done(value, error)


def _reassert_counts(reply: Any) -> list[int]:
    """``reassert.lua``'s ``{renewed, recreated, over}``."""
    if not isinstance(reply, list) or len(reply) != 3:
        raise StoreError(f"unexpected reply from reassert: {reply!r}")
    return [_as_int(n) for n in reply]
