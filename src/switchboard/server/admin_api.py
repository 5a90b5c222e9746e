"""The operator HTTP API of contract §4 (``/dashboard`` and ``/api/v1/latency`` are in
:mod:`switchboard.server.dashboard`)."""

from __future__ import annotations

import functools
import time
from collections import Counter

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from switchboard.dispatch import selection
from switchboard.errors import StoreError, StoreUnavailable
from switchboard.management.registry import ManagementRegistry
from switchboard.runtime.pool_config import PoolConfigInvalid, parse_pools_body
from switchboard.server.auth import bearer, token_ok
from switchboard.server.limits import AddressCounter
from switchboard.server.scheduler import SCHEDULER, Scheduler
from switchboard.sessions.state import SessionRuntimeState

routes = web.RouteTableDef()
_json = msgspec.json.encode
HTTP_REQUESTS = web.AppKey("http_requests", AddressCounter)  # --max-http-requests-per-address


def _reply(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_json(body), status=status, content_type="application/json")


def _sched(request: web.Request) -> Scheduler:
    sched: Scheduler = request.app[SCHEDULER]
    return sched


def authorized(request: web.Request) -> bool:
    """Contract §4: with ``--admin-token``, the bearer token is required."""
    expected = _sched(request).settings.admin_token
    return token_ok(bearer(request.headers.get("Authorization")), expected)


def unauthorized() -> web.Response:
    return _reply({"error": "UNAUTHORIZED", "message": "bearer token required"}, 401)


def admin_only(handler: Handler) -> Handler:
    """Guard one operator route (``/api/v1/*``).

    A decorator, not an application middleware: a middleware stays on the call stack of every
    request it wraps for as long as the request lives, and a WebSocket session is one long
    request, so each middleware cost every idle session a few hundred bytes (issue 4 allows
    16 KiB a session).  With no middleware aiohttp calls the channel handlers directly.
    """

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            return unauthorized()
        return await handler(request)

    return guarded


def http_limited(handler: Handler) -> Handler:
    """Guard one plain HTTP route with ``--max-http-requests-per-address`` (docs/security.md).

    Counts requests in progress per remote address: under HTTP/1.1 a connection carries one
    request at a time, so this is the number of the address's connections that cost us
    something beyond an idle socket (a body being buffered, up to ``--max-frame-bytes``, or a
    handler running).  A guard on each route, like
    :func:`admin_only` and for its reason: the WebSocket routes are not wrapped, so a session
    carries nothing of it for its lifetime.  The refusal closes the connection, so a client
    over the limit does not keep its socket either.
    """

    @functools.wraps(handler)
    async def limited(request: web.Request) -> web.StreamResponse:
        counter = request.app[HTTP_REQUESTS]
        address = request.remote or "unknown"
        try:
            if not counter.open(address):
                return too_many_requests(counter.limit)
            return await handler(request)
        finally:
            counter.close(address)

    return limited


def too_many_requests(limit: int) -> web.Response:
    message = f"too many HTTP requests in progress from this address (limit {limit})"
    response = _reply({"error": "TOO_MANY_REQUESTS", "message": message}, 429)
    response.headers["Retry-After"] = "1"
    response.force_close()
    return response


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    if _sched(request).dispatcher.store_up:
        return _reply({"status": "ok"})
    return _reply({"status": "degraded", "store": "down"}, 503)


def readiness(*, store_up: bool, closing: bool) -> tuple[int, dict[str, str]]:
    """``/health/ready``'s answer (protocol.md §7).  Shutting down wins over a store outage:
    it is the one that will not pass, so it is the reason a load balancer should see."""
    if closing:
        return 503, {"status": "not_ready", "reason": "shutting_down"}
    if not store_up:
        return 503, {"status": "not_ready", "reason": "store_down"}
    return 200, {"status": "ready"}


@routes.get("/health/live")
async def health_live(request: web.Request) -> web.Response:
    """Liveness (§7): answering at all is the proof.  It never looks at the store, so an
    orchestrator does not restart every instance, dropping every session, on a Redis blip."""
    return _reply({"status": "ok"})


@routes.get("/health/ready")
async def health_ready(request: web.Request) -> web.Response:
    """Readiness (§7): send new traffic here?  ``closing`` is set as SIGTERM is handled, before
    the shutdown grace, so a load balancer drains the instance while its jobs finish."""
    sched = _sched(request)
    status, body = readiness(store_up=sched.dispatcher.store_up, closing=sched.closing)
    return _reply(body, status)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    # Prometheus' own content type (with its format version), not a bare text/plain.
    body = await _sched(request).metrics.render_in_slices()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/v1/stats")
@admin_only
async def stats(request: web.Request) -> web.Response:
    return _reply(await stats_body(_sched(request)))


async def stats_body(sched: Scheduler) -> dict[str, object]:
    """``GET /api/v1/stats`` (contract §4); the dashboard's live stream sends it too."""
    snapshot = sched.snapshots.current
    # This instance's nodes (protocol.md §7): in a cluster the snapshot also holds the others'.
    cluster = sched.cluster
    mine = [
        node
        for node_id, node in snapshot.nodes.items()
        if cluster is None or cluster.owner_of(node_id) == sched.instance_id
    ]
    by_status = Counter(node.status.value for node in mine)
    try:
        held: int | None = await sched.store.held_total()
    except StoreUnavailable:
        held = None
    return {
        "nodes": {
            "total": len(mine),
            **{s: by_status.get(s, 0) for s in ("ready", "registering", "degraded", "draining")},
        },
        "sessions": len(sched.session_conns),
        "pools": len(snapshot.pools),
        "jobs_in_flight": sched.dispatcher.in_flight,
        "reservations_held": held,
        "dispatched_total": sched.dispatcher.dispatched_total,
        "failed_total": sched.dispatcher.failed_total,
        "snapshot_version": snapshot.version,
        "store": {"kind": sched.store.name, "up": sched.dispatcher.store_up},
        "instance_id": sched.instance_id,
        **({} if cluster is None else {"cluster": _cluster_totals(sched)}),
    }


def _cluster_totals(sched: Scheduler) -> dict[str, int]:
    """Totals over the cluster (Redis only), as of the last presence round."""
    members = sched.cluster.members.values() if sched.cluster is not None else ()
    return {
        "instances": len(members),
        "nodes": len(sched.snapshots.current.nodes),
        "sessions": sum(p.sessions for p in members),
    }


async def _reserved(sched: Scheduler, node_ids: list[str]) -> dict[str, int | None]:
    try:
        counts = await sched.store.reserved(node_ids)
    except StoreUnavailable:
        return dict.fromkeys(node_ids)
    return {node_id: counts.get(node_id, 0) for node_id in node_ids}


@routes.get("/api/v1/nodes")
@admin_only
async def nodes(request: web.Request) -> web.Response:
    return _reply(await nodes_body(_sched(request)))


async def nodes_body(sched: Scheduler) -> list[dict[str, object]]:
    """``GET /api/v1/nodes`` (contract §4, docs/protocol.md for the telemetry fields)."""
    snapshot = sched.snapshots.current
    reserved = await _reserved(sched, list(snapshot.nodes))
    telemetry = node_telemetry(sched.registry)
    cluster = sched.cluster
    return [
        {
            **node.to_json(),
            "pools": snapshot.pools_of(node_id),
            "reserved": reserved[node_id],
            # Heartbeats are not replicated: a node another instance holds has null telemetry.
            **telemetry.get(node_id, NO_TELEMETRY),
            # The instance holding the node's socket (protocol.md §5 "Cluster").
            "instance_id": sched.instance_id if cluster is None else cluster.owner_of(node_id),
        }
        for node_id, node in sorted(snapshot.nodes.items())
    ]


# What a node's heartbeats say, for the operator (docs/protocol.md §4): null when not reported,
# so a CPU-only node shows no GPU rather than an idle one.
NO_TELEMETRY: dict[str, float | int | None] = dict.fromkeys(
    (
        "heartbeat_age_s",
        "cpu_percent",
        "mem_percent",
        "gpu_percent",
        "gpu_mem_percent",
        "running_jobs",
    )
)


def node_telemetry(registry: ManagementRegistry) -> dict[str, dict[str, float | int | None]]:
    """Heartbeat age and the latest ``resource_usage`` of each node, by node_id."""
    found: dict[str, dict[str, float | int | None]] = {}
    for state in registry.node_states():
        usage = state.usage
        entry = dict(NO_TELEMETRY, heartbeat_age_s=round(registry.heartbeat_age(state), 3))
        if usage is not None:
            entry.update(
                cpu_percent=usage.cpu_percent,
                mem_percent=usage.mem_percent,
                gpu_percent=usage.gpu_percent,
                gpu_mem_percent=usage.gpu_mem_percent,
                running_jobs=usage.running_jobs,
            )
        found[state.node_id] = entry
    return found


def _instances(sched: Scheduler) -> list[dict[str, object]]:
    """Every instance of the cluster, as of the last presence round (this one alone on the
    embedded store)."""
    cluster = sched.cluster
    if cluster is None:
        now = time.time()
        return [
            {
                "instance_id": sched.instance_id,
                "address": "",
                "nodes": len(sched.nodes),
                "sessions": len(sched.session_conns),
                "started_at": sched.started_at,
                "last_seen": now,
            }
        ]
    return [
        {
            "instance_id": p.instance_id,
            "address": p.address,
            "nodes": p.nodes,
            "sessions": p.sessions,
            "started_at": p.started_at,
            "last_seen": p.last_seen,
        }
        for _, p in sorted(cluster.members.items())
    ]


@routes.get("/api/v1/cluster")
@admin_only
async def cluster(request: web.Request) -> web.Response:
    """Contract §7 "Cluster": ``{"instances": [...]}``."""
    return _reply({"instances": _instances(_sched(request))})


@routes.get("/api/v1/pools")
@admin_only
async def pools(request: web.Request) -> web.Response:
    return _reply(pools_json(_sched(request)))


def pools_json(sched: Scheduler) -> list[dict[str, object]]:
    snapshot = sched.snapshots.current
    return [
        {**pool.to_json(), "members": list(snapshot.pool_members.get(pool.pool_id, ()))}
        for pool in snapshot.pools
    ]


@routes.get("/api/v1/simulate")
@admin_only
async def simulate(request: web.Request) -> web.Response:
    """Dry run of dispatch for a pair, reserving nothing (contract §4)."""
    sched = _sched(request)
    src, tgt = request.query.get("src_lang"), request.query.get("tgt_lang")
    if not src or not tgt:
        return _reply({"error": "src_lang and tgt_lang are required"}, 400)
    snapshot = sched.snapshots.current
    decision = SessionRuntimeState().decide(snapshot, src, tgt)
    services = selection.ALL_SERVICES
    counts = await _reserved(sched, list(snapshot.nodes))
    load = {node_id: n for node_id, n in counts.items() if n is not None}
    cands = selection.candidates(
        snapshot, decision, services, load=load, limit=max(len(snapshot.nodes), 1)
    )
    chosen = {c.node_id for c in cands}
    excluded = dict(selection.explain(snapshot, src, tgt, services))
    for node_id, node in snapshot.nodes.items():
        if node_id in chosen or node_id in excluded:
            continue
        used = load.get(node_id, 0)
        in_pools = any(node_id in snapshot.pool_members.get(p, ()) for p in decision.pools)
        excluded[node_id] = (
            f"full ({used}/{node.max_concurrency})" if in_pools else "in no pool serving the pair"
        )
    return _reply(
        {
            "pair": {"src": decision.pair[0], "tgt": decision.pair[1]},
            "pools": list(decision.pools),
            "candidates": [c.node_id for c in cands],
            "excluded": excluded,
        }
    )


@routes.put("/api/v1/pools")
@admin_only
async def put_pools(request: web.Request) -> web.Response:
    """Contract §4, through the pool configuration store (server/pool_sync.py): stored first,
    so with Redis every instance gets the pools and they outlive restarts; with the store
    unreachable nothing changes anywhere (503), rather than on this instance alone."""
    sched = _sched(request)
    try:
        new = parse_pools_body(await request.read())
    except PoolConfigInvalid as exc:
        return _reply({"error": "INVALID_MESSAGE", "message": str(exc)}, 400)
    try:
        await sched.pool_sync.put(new)
    except StoreUnavailable as exc:
        message = f"pools not changed: {exc}"
        return _reply({"error": "SCHEDULER_DEPENDENCY_DOWN", "message": message}, 503)
    except StoreError as exc:
        return _reply({"error": "INTERNAL_ERROR", "message": f"pools not changed: {exc}"}, 500)
    return _reply(pools_json(sched))


@routes.post("/api/v1/nodes/{node_id}/drain")
@admin_only
async def drain(request: web.Request) -> web.Response:
    node_id = request.match_info["node_id"]
    sched = _sched(request)
    if not await sched.registry.drain(node_id):
        # A node held by another instance of the cluster: drained there (cluster/relay.py).
        if sched.cluster is None or not sched.cluster.drain_remote(node_id):
            return _reply({"error": "not found", "node_id": node_id}, 404)
        return _reply({"node_id": node_id, "status": "draining"})
    await sched.registry.rebuild_now()
    return _reply({"node_id": node_id, "status": "draining"})


@routes.post("/api/v1/nodes/{node_id}/undrain")
@admin_only
async def undrain(request: web.Request) -> web.Response:
    """Protocol.md §7: the node takes new jobs again; its status after (``ready`` unless its
    latest report says otherwise); a node that was not draining is left as it is."""
    node_id = request.match_info["node_id"]
    sched = _sched(request)
    registry = sched.registry
    status = await registry.undrain(node_id)
    if status is None:
        # A node held by another instance of the cluster: undrained there (cluster/relay.py),
        # in the status its services imply.
        remote = sched.snapshots.current.nodes.get(node_id)
        if (
            remote is None
            or sched.cluster is None
            or not sched.cluster.drain_remote(node_id, on=False)
        ):
            return _reply({"error": "not found", "node_id": node_id}, 404)
        return _reply({"node_id": node_id, "status": "ready" if remote.services else "degraded"})
    await registry.rebuild_now()
    return _reply({"node_id": node_id, "status": status.value})
