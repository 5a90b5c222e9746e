"""Micro-benchmark: what one routine heartbeat costs the event loop (issue 9, item 5).

A routine heartbeat changes nothing structural (same services, same pairs, same status), so
it should cost a few µs and publish nothing.  Measured on uvloop, in one process, timing
``--iterations`` heartbeats round-robin over ``--nodes`` registered nodes (each repeat timed
as a whole with ``perf_counter``; medians and minima over ``--repeats``):

  decode    ``codec.decode_node(frame)`` of the frame ``switchboard.agent`` sends (wire.heartbeat:
            resource usage, installed services, capability by type; ~480 bytes)
  registry  ``await registry.heartbeat(node_id, msg)`` with the message already decoded
  path      both, plus the node-id check ``server/node_channel.py`` does: the loop time one
            heartbeat frame costs from bytes to done

Only public APIs are used, so the same script measures an older checkout:

    git archive <commit> src | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/micro/heartbeat.py

Run:  .venv/bin/python benchmarks/micro/heartbeat.py [--nodes 200] [--iterations 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import uvloop

from switchboard.agent import wire
from switchboard.management.registry import ManagementRegistry
from switchboard.metrics import Metrics
from switchboard.protocol import codec
from switchboard.protocol.messages import NodeHeartbeat, NodeRegister
from switchboard.runtime.snapshot import SnapshotHolder

IDENT = wire.Identity(
    pairs=[("zh", "en"), ("en", "zh")],
    services=["asr", "nmt", "tts"],
    max_concurrency=4,
    backend_name="pseudo",
    streams_partials=True,
    hardware={"cpu_cores": 8, "memory_gb": 32, "gpus": []},
    platform="linux-x64",
)


def _frames(nodes: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"node-{i}",
            wire.heartbeat(
                IDENT,
                node_id=f"node-{i}",
                cpu_percent=12.3,
                mem_percent=40.1,
                running_jobs=2,
                ready=True,
            ),
        )
        for i in range(nodes)
    ]


async def _registry(frames: list[tuple[str, bytes]]) -> ManagementRegistry:
    registry = ManagementRegistry(
        SnapshotHolder(), metrics=Metrics(), default_max_concurrency=4, heartbeat_interval=5
    )
    for node_id, frame in frames:
        register = codec.decode_node(wire.register(IDENT, node_id=node_id, token=None))
        assert isinstance(register, NodeRegister)
        assert await registry.register(node_id, register)
        first = codec.decode_node(frame)
        assert isinstance(first, NodeHeartbeat)
        await registry.heartbeat(node_id, first)  # registering → ready: the structural one
    await registry.rebuild_now()
    return registry


async def _time(body: Callable[[int], Awaitable[None]], iterations: int) -> float:
    start = time.perf_counter()
    await body(iterations)
    return (time.perf_counter() - start) / iterations * 1e6


async def measure(nodes: int, iterations: int, repeats: int) -> dict[str, list[float]]:
    frames = _frames(nodes)
    registry = await _registry(frames)
    decoded = [(node_id, codec.decode_node(frame)) for node_id, frame in frames]

    async def decode(n: int) -> None:
        for i in range(n):
            codec.decode_node(frames[i % nodes][1])

    async def update(n: int) -> None:
        for i in range(n):
            node_id, msg = decoded[i % nodes]
            await registry.heartbeat(node_id, msg)  # type: ignore[arg-type]

    async def path(n: int) -> None:
        for i in range(n):
            node_id, frame = frames[i % nodes]
            msg = codec.decode_node(frame)
            if isinstance(msg, NodeHeartbeat) and msg.node_id == node_id:
                await registry.heartbeat(node_id, msg)

    results: dict[str, list[float]] = {"decode": [], "registry": [], "path": []}
    for _ in range(repeats):  # repeats outermost: a noisy moment hits every measurement alike
        results["decode"].append(await _time(decode, iterations))
        results["registry"].append(await _time(update, iterations))
        results["path"].append(await _time(path, iterations))
    states = registry.node_states()
    assert len(states) == nodes and all(n.status.value == "ready" for n in states)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    results = uvloop.run(measure(args.nodes, args.iterations, args.repeats))
    print(
        f"{args.nodes} nodes, {args.iterations} heartbeats x {args.repeats} repeats (µs/heartbeat)"
    )
    print(f"{'what':10} {'median':>8} {'min':>8}")
    for name, values in results.items():
        print(f"{name:10} {statistics.median(values):8.2f} {min(values):8.2f}")


if __name__ == "__main__":
    main()
