"""Micro-benchmark: the reservation hot path on a 3-shard Redis Cluster (issue 10, item 4).

Two questions, answered on one machine in one run:

1. **Which client for the hot path on a Cluster?**  One ``try_reserve_many`` + one
   ``release_many`` (the project's scripts, one request of 4 candidates in one node group) per
   iteration, sequentially, through

     routed      ``ShardRouter``: the pipelined client, one connection per primary, routed by
                 redis-py's slot map (what the store ships)
     rediscluster  redis-py's ``RedisCluster`` (register_script / EVALSHA)
     direct      the pipelined client straight to the primary that serves the group (no
                 router: what routing itself costs is routed minus direct)
     plain       the pipelined client on a plain redis-server (the single-Redis baseline;
                 plain minus direct is what a cluster node with a replica costs)

   reported as client CPU µs per call (process time / calls) and wall p50 / p99 per call.

2. **What a reservation costs when its candidates live in several node groups.**
   ``RedisStore.try_reserve`` + ``release`` of 4 candidates, sequentially: ``one-group``
   (4 nodes chosen to share a group: one script), ``four-groups`` (4 nodes in 4 groups: the
   probe round, then the reserve; the release is one script per group), and ``plain`` (the
   same on one redis-server, where it is always one script).

Run (from the repo root, the project's .venv; needs redis-server and redis-cli on PATH):

    .venv/bin/python benchmarks/micro/redis_cluster.py [--iterations 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from switchboard.store import pipelined
from switchboard.store.base import Candidate
from switchboard.store.keys import StoreKeys
from switchboard.store.redis_cluster import ShardRouter, cluster_client_from_url
from switchboard.store.redis_store import RedisStore, _load_lua
from switchboard.tools.procs import RedisClusterProcess, RedisProcess

NAMESPACE = "bench"
LEASE_MS = 60_000


def group_mates(keys: StoreKeys, count: int, *, same: bool) -> list[str]:
    """``count`` node ids that all share one group (``same``) or all differ."""
    out: list[str] = []
    seen: set[int] = set()
    i = 0
    while len(out) < count:
        node, i = f"node-{i}", i + 1
        group = keys.group_of(node)
        if same and out and group != keys.group_of(out[0]):
            continue
        if not same and group in seen:
            continue
        seen.add(group)
        out.append(node)
    return out


async def timed(
    label: str, iterations: int, call: Callable[[int], Awaitable[None]]
) -> dict[str, Any]:
    for i in range(200):  # warm-up: connections, script caches
        await call(i)
    walls: list[float] = []
    cpu0 = time.process_time()
    for i in range(iterations):
        t0 = time.perf_counter()
        await call(i)
        walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    walls.sort()
    return {
        "label": label,
        "cpu_us": cpu / iterations * 1e6,
        "p50_us": walls[len(walls) // 2] * 1e6,
        "p99_us": walls[int(len(walls) * 0.99)] * 1e6,
    }


def script_call(
    evalsha: Callable[[pipelined.Script, list[str], list[Any]], Awaitable[Any]],
    keys: StoreKeys,
    nodes: list[str],
) -> Callable[[int], Awaitable[None]]:
    reserve = pipelined.Script(_load_lua("try_reserve_many"))
    release = pipelined.Script(_load_lua("release_many"))
    group = keys.group_of(nodes[0])
    slots = [keys.slots(n) for n in nodes]

    async def call(i: int) -> None:
        holder = f"h{i}:1"
        args: list[Any] = [1, holder, LEASE_MS, len(nodes)]
        for node in nodes:
            args += [node, 1_000_000, 0]
        got = await evalsha(reserve, [keys.group_nodes(group), *slots], args)
        assert got and got[0] in nodes, got
        chosen = keys.slots(got[0])
        assert await evalsha(release, [chosen], [holder]) == [1]

    return call


def awaited(
    evalsha_then: Callable[[pipelined.Script, list[str], list[Any], pipelined.Reply], None],
) -> Callable[[pipelined.Script, list[str], list[Any]], Awaitable[Any]]:
    """The callback face every client is timed through, as ``RedisStore`` calls it."""

    async def call(script: pipelined.Script, keys: list[str], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def reply(value: Any, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        evalsha_then(script, keys, args, reply)
        return await future

    return call


async def clients(cluster_url: str, plain_url: str, iterations: int) -> list[dict[str, Any]]:
    sharded = StoreKeys(NAMESPACE, sharded=True)
    nodes = group_mates(sharded, 4, same=True)
    rc = cluster_client_from_url(cluster_url, max_connections=32, timeout_s=2.0)
    await rc.initialize()
    router = ShardRouter(rc, username=None, password=None, connect_timeout_s=2.0, stall_s=6.0)

    routed = awaited(router.evalsha_then)

    scripts: dict[str, Any] = {}

    async def via_redis_cluster(script: pipelined.Script, keys: list[str], args: list[Any]) -> Any:
        registered = scripts.get(script.sha) or scripts.setdefault(
            script.sha, rc.register_script(script.source)
        )
        return await registered(keys=keys, args=args)

    primary = rc.nodes_manager.slots_cache[
        rc.keyslot(sharded.group_nodes(sharded.group_of(nodes[0])))
    ][0]
    direct = pipelined.PipelinedClient(
        pipelined.Endpoint(host=primary.host, port=int(primary.port)),
        connect_timeout_s=2.0,
        stall_s=6.0,
    )
    plain_keys = StoreKeys(NAMESPACE)
    host, port = plain_url.removeprefix("redis://").split("/")[0].split(":")
    plain = pipelined.PipelinedClient(
        pipelined.Endpoint(host=host, port=int(port)), connect_timeout_s=2.0, stall_s=6.0
    )
    try:
        return [
            await timed("routed", iterations, script_call(routed, sharded, nodes)),
            await timed("rediscluster", iterations, script_call(via_redis_cluster, sharded, nodes)),
            await timed(
                "direct", iterations, script_call(awaited(direct.evalsha_then), sharded, nodes)
            ),
            await timed(
                "plain", iterations, script_call(awaited(plain.evalsha_then), plain_keys, nodes)
            ),
        ]
    finally:
        await router.close()
        await rc.aclose()
        await plain.close()
        await direct.close()


async def stores(cluster_url: str, plain_url: str, iterations: int) -> list[dict[str, Any]]:
    sharded = StoreKeys(NAMESPACE, sharded=True)
    out = []
    for label, url, same in (
        ("one-group", cluster_url, True),
        ("four-groups", cluster_url, False),
        ("plain", plain_url, False),
    ):
        store = RedisStore.from_url(url, namespace=f"{NAMESPACE}-{label}", timeout_s=2.0)
        cands = [Candidate(n, 1_000_000) for n in group_mates(sharded, 4, same=same)]

        async def call(i: int, store: RedisStore = store, cands: list[Candidate] = cands) -> None:
            node = await store.try_reserve(cands, f"h{i}:1", lease_s=60.0)
            assert node is not None
            assert await store.release(node, f"h{i}:1")

        try:
            out.append(await timed(label, iterations, call))
        finally:
            await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise SystemExit("needs redis-server and redis-cli on PATH")
    work = Path(tempfile.mkdtemp(prefix="rcbench-"))
    cluster = RedisClusterProcess(work / "cluster")
    plain = RedisProcess(work)
    cluster.start()
    plain.start()
    try:
        results: dict[str, list[dict[str, Any]]] = {}
        for _ in range(opts.repeats):
            for part in (clients, stores):
                for row in uvloop.run(part(cluster.url, plain.url, opts.iterations)):
                    results.setdefault(f"{part.__name__}/{row['label']}", []).append(row)
        print(f"loadavg {Path('/proc/loadavg').read_text().split()[:3]}")
        print(f"{'what':28} {'CPU µs/call':>12} {'p50 µs':>8} {'p99 µs':>8}")
        for name, rows in results.items():
            cpu = statistics.median(r["cpu_us"] for r in rows)
            p50 = statistics.median(r["p50_us"] for r in rows)
            p99 = statistics.median(r["p99_us"] for r in rows)
            print(f"{name:28} {cpu:12.1f} {p50:8.0f} {p99:8.0f}")
    finally:
        cluster.stop()
        plain.stop()


if __name__ == "__main__":
    main()
