"""Micro-benchmark: loop time of one structural change, old builder vs new (issue 9, item 4).

Per change, the time from the change to the first dispatch's candidate list:

  old        the builder before issue 9 (``legacy/builder.py``, which the old design's
             model runs: every node walked, dict copied, pools, members and index
             rebuilt), then the first dispatch, which found
             the per-snapshot eligible-member memo empty and walked the pool again
  new        ``SnapshotBuilder.build`` with only the changed node, then the first dispatch
  registry   the new one as the server runs it: the ``ManagementRegistry`` call (register,
             remove, heartbeat, drain, set_pools) + ``rebuild_now`` (build and publish) +
             the first dispatch

"First dispatch" = ``SessionRuntimeState.decide`` + ``selection.candidates`` for a session
bound to the changed node's pool, as the dispatcher does per attempt.

Changes: join (a node registers into an existing pool), leave (a node goes), flip (a heartbeat
turns a ready node degraded, the next turns it ready again), drain (operator drain), pool (the
operator's PUT /pools toggles one configured pool's required services; measured with
configured pools, the others with generated ones).

Population (seeded): 12 languages; 70 % of nodes serve en<->X, 30 % en<->X and en<->Y, so
there are 66 generated pools whose sizes grow with the node count (the largest is printed).
Each cell: median (and p90) of ``--iterations`` changes, µs of wall time on uvloop.

``--maps`` first prints the cost of a one-key change in a dict copy vs ``immutables.Map``.

Run:  .venv/bin/python benchmarks/micro/snapshot_change.py [--sizes 200,2000,10000] [--maps]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from types import MappingProxyType

import immutables
import uvloop

from switchboard.agent import wire
from switchboard.dispatch import selection
from switchboard.legacy.builder import build_from_scratch
from switchboard.management.builder import SnapshotBuilder
from switchboard.management.pools import GeneratedPoolIds
from switchboard.management.registry import ManagementRegistry
from switchboard.metrics import Metrics
from switchboard.protocol import codec
from switchboard.protocol.messages import NodeHeartbeat, NodeRegister
from switchboard.runtime.snapshot import RuntimeSnapshot, SnapshotHolder
from switchboard.runtime.values import NodeRuntime, NodeStatus, Pool
from switchboard.sessions.state import SessionRuntimeState

LANGS = ["zh", "ja", "ko", "fr", "de", "es", "it", "pt", "ru", "ar", "hi"]
ALL = frozenset({"asr", "nmt", "tts"})
EVENTS = ["join", "leave", "flip", "drain", "pool"]


# --- the builder before issue 9: the old design's model keeps it (legacy/builder.py) ----------

old_build = build_from_scratch  # every node walked; a memo that lives and dies with its snapshot


# --- population ---------------------------------------------------------------------------------


def population(count: int) -> list[tuple[str, list[tuple[str, str]]]]:
    rng = random.Random(9)
    nodes = []
    for i in range(count):
        targets = rng.sample(LANGS, 2 if rng.random() < 0.3 else 1)
        pairs = [p for x in targets for p in (("en", x), (x, "en"))]
        nodes.append((f"node-{i:05d}", pairs))
    return nodes


def view(node_id: str, pairs: list[tuple[str, str]], status: NodeStatus) -> NodeRuntime:
    return NodeRuntime(node_id, status, frozenset(pairs), ALL, True, 4)


def configured_pools() -> tuple[Pool, ...]:
    return tuple(
        Pool(100 + i, f"en-{x}", frozenset({"en", x}), frozenset()) for i, x in enumerate(LANGS)
    )


def toggled(pools: tuple[Pool, ...], step: int) -> tuple[Pool, ...]:
    """The operator's list with pool 0's required services switched on or off."""
    first = replace(pools[0], required_services=frozenset({"tts"}) if step % 2 else frozenset())
    return (first, *pools[1:])


def warm(snapshot: RuntimeSnapshot, nodes: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """One dispatch per pair the population serves, as live traffic would have made: the
    memos a change then finds filled (or, for the old builder, does not)."""
    for i, pair in enumerate(sorted({p for _, pairs in nodes for p in pairs})):
        dispatch(snapshot, pair, i)


def dispatch(snapshot: RuntimeSnapshot, pair: tuple[str, str], start: int) -> int:
    decision = SessionRuntimeState().decide(snapshot, *pair)
    return len(selection.candidates(snapshot, decision, ALL, start=start))


def ident(pairs: list[tuple[str, str]]) -> wire.Identity:
    return wire.Identity(
        pairs=pairs,
        services=sorted(ALL),
        max_concurrency=4,
        backend_name="bench",
        streams_partials=False,
        hardware={"cpu_cores": 8, "memory_gb": 32, "gpus": []},
        platform="linux-x64",
    )


def register_msg(node_id: str, pairs: list[tuple[str, str]]) -> NodeRegister:
    msg = codec.decode_node(wire.register(ident(pairs), node_id=node_id, token=None))
    assert isinstance(msg, NodeRegister)
    return msg


def heartbeat_msg(node_id: str, pairs: list[tuple[str, str]], ready: bool) -> NodeHeartbeat:
    frame = wire.heartbeat(
        ident(pairs), node_id=node_id, cpu_percent=1, mem_percent=1, running_jobs=0, ready=ready
    )
    msg = codec.decode_node(frame)
    assert isinstance(msg, NodeHeartbeat)
    return msg


# --- the old and new builders driven by the same changes ------------------------------------------


class Model:
    """Views as the registry holds them, turned into snapshots by ``old`` or ``new``."""

    def __init__(self, nodes: list[tuple[str, list[tuple[str, str]]]], *, old: bool) -> None:
        self.views = {n: view(n, pairs, NodeStatus.READY) for n, pairs in nodes}
        self.old, self.version, self.configured = old, 0, None
        self.ids, self.builder = GeneratedPoolIds(), SnapshotBuilder()
        self.build_us: list[float] = []  # every build's own time
        self.step_builds: list[float] = []  # the timed changes' builds
        self.snapshot = self.build(dict(self.views))

    def build(self, changes: dict[str, NodeRuntime | None]) -> RuntimeSnapshot:
        self.version += 1
        start = time.perf_counter_ns()
        if self.old:
            values = list(self.views.values())
            built = old_build(
                self.version, values, configured=self.configured, generated_ids=self.ids
            )
        else:
            built = self.builder.build(self.version, changes, configured=self.configured)
        self.build_us.append((time.perf_counter_ns() - start) / 1000)
        return built

    def change(self, node_id: str, new: NodeRuntime | None) -> None:
        if new is None:
            del self.views[node_id]
        else:
            self.views[node_id] = new
        self.snapshot = self.build({node_id: new})

    def set_pools(self, pools: tuple[Pool, ...] | None) -> None:
        self.configured = pools  # type: ignore[assignment]
        self.snapshot = self.build({})


def timed(
    step: Callable[[int], object],
    untimed: Callable[[int], object],
    n: int,
    model: Model | None = None,
) -> list[float]:
    """µs per ``step``; with ``model``, the step's build alone goes to ``model.step_builds``."""
    samples = []
    for i in range(n):
        untimed(i)
        start = time.perf_counter_ns()
        step(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
        if model is not None:
            model.step_builds.append(model.build_us[-1])
    return samples


def steady_dispatch(
    model: Model, nodes: list[tuple[str, list[tuple[str, str]]]], n: int
) -> list[float]:
    """A dispatch with no change before it: the per-job cost the change adds to."""
    for i in range(n):
        dispatch(model.snapshot, nodes[i][1][0], i)  # fill the memos, as traffic does
    return timed(lambda i: dispatch(model.snapshot, nodes[i][1][0], i), lambda i: None, n)


def model_events(
    model: Model, nodes: list[tuple[str, list[tuple[str, str]]]], n: int
) -> Iterator[tuple[str, list[float]]]:
    spare = [(f"spare-{i}", nodes[i % len(nodes)][1]) for i in range(n)]
    warm(model.snapshot, nodes)

    def join(i: int) -> None:
        node_id, pairs = spare[i]
        model.change(node_id, view(node_id, pairs, NodeStatus.REGISTERING))
        dispatch(model.snapshot, pairs[0], i)

    def unjoin(i: int) -> None:
        if i:
            model.views.pop(spare[i - 1][0])
            model.snapshot = model.build({spare[i - 1][0]: None})

    yield "join", timed(join, unjoin, n, model)
    model.views.pop(spare[n - 1][0])
    model.snapshot = model.build({spare[n - 1][0]: None})

    def leave(i: int) -> None:
        node_id, pairs = nodes[i]
        model.change(node_id, None)
        dispatch(model.snapshot, pairs[0], i)

    def rejoin(i: int) -> None:
        if i:
            node_id, pairs = nodes[i - 1]
            model.change(node_id, view(node_id, pairs, NodeStatus.READY))

    yield "leave", timed(leave, rejoin, n, model)
    rejoin(n)

    def flip(i: int) -> None:
        node_id, pairs = nodes[i // 2]
        status = NodeStatus.DEGRADED if i % 2 == 0 else NodeStatus.READY
        model.change(node_id, view(node_id, pairs, status))
        dispatch(model.snapshot, pairs[0], i)

    yield "flip", timed(flip, lambda i: None, n, model)

    def drain(i: int) -> None:
        node_id, pairs = nodes[i]
        model.change(node_id, view(node_id, pairs, NodeStatus.DRAINING))
        dispatch(model.snapshot, pairs[0], i)

    def undrain(i: int) -> None:
        if i:
            node_id, pairs = nodes[i - 1]
            model.change(node_id, view(node_id, pairs, NodeStatus.READY))

    yield "drain", timed(drain, undrain, n, model)
    undrain(n)

    base = configured_pools()
    model.set_pools(base)
    warm(model.snapshot, nodes)

    def pool(i: int) -> None:
        model.set_pools(toggled(base, i + 1))
        dispatch(model.snapshot, ("en", LANGS[0]), i)

    yield "pool", timed(pool, lambda i: None, n, model)


Step = Callable[[int], Awaitable[None]]


class RegistryBench:
    """The same changes through ``ManagementRegistry`` (what the server runs)."""

    def __init__(self, nodes: list[tuple[str, list[tuple[str, str]]]], n: int) -> None:
        self.nodes, self.n = nodes, n
        self.holder = SnapshotHolder()
        self.registry = ManagementRegistry(
            self.holder, metrics=Metrics(), default_max_concurrency=4, heartbeat_interval=5
        )
        self.beats = {
            node_id: (heartbeat_msg(node_id, pairs, True), heartbeat_msg(node_id, pairs, False))
            for node_id, pairs in nodes
        }
        self.spare = [(f"spare-{i}", nodes[i % len(nodes)][1]) for i in range(n)]
        self.spare_msgs = [register_msg(node_id, pairs) for node_id, pairs in self.spare]
        self.base = configured_pools()

    async def run(self) -> dict[str, list[float]]:
        for node_id, pairs in self.nodes:
            await self._add(node_id, pairs)
        await self.registry.rebuild_now()
        warm(self.holder.current, self.nodes)
        results = {
            "join": await self._timed(self.join, self.unjoin),
            "leave": await self._timed(self.leave, self.rejoin),
            "flip": await self._timed(self.flip, self.nothing),
            "drain": await self._timed(self.drain, self.nothing),
        }
        await self.registry.set_pools(self.base)
        await self.registry.rebuild_now()
        warm(self.holder.current, self.nodes)
        results["pool"] = await self._timed(self.pool, self.nothing)
        return results

    async def _timed(self, step: Step, untimed: Step) -> list[float]:
        samples = []
        for i in range(self.n):
            await untimed(i)
            start = time.perf_counter_ns()
            await step(i)
            samples.append((time.perf_counter_ns() - start) / 1000)
        await untimed(self.n)  # undo the last step
        return samples

    async def _add(self, node_id: str, pairs: list[tuple[str, str]]) -> None:
        await self.registry.register(node_id, register_msg(node_id, pairs))
        await self.registry.heartbeat(node_id, self.beats[node_id][0])

    async def _changed(self, pair: tuple[str, str], i: int) -> None:
        await self.registry.rebuild_now()
        dispatch(self.holder.current, pair, i)

    async def nothing(self, i: int) -> None:
        pass

    async def join(self, i: int) -> None:
        await self.registry.register(self.spare[i][0], self.spare_msgs[i])
        await self._changed(self.spare[i][1][0], i)

    async def unjoin(self, i: int) -> None:
        if i:
            await self.registry.remove(self.spare[i - 1][0])
            await self.registry.rebuild_now()

    async def leave(self, i: int) -> None:
        await self.registry.remove(self.nodes[i][0])
        await self._changed(self.nodes[i][1][0], i)

    async def rejoin(self, i: int) -> None:
        if i:
            await self._add(*self.nodes[i - 1])
            await self.registry.rebuild_now()

    async def flip(self, i: int) -> None:
        node_id, pairs = self.nodes[i // 2]
        ready = i % 2 == 1  # degraded, then ready again
        await self.registry.heartbeat(node_id, self.beats[node_id][0 if ready else 1])
        await self._changed(pairs[0], i)

    async def drain(self, i: int) -> None:
        await self.registry.drain(self.nodes[i][0])
        await self._changed(self.nodes[i][1][0], i)

    async def pool(self, i: int) -> None:
        await self.registry.set_pools(toggled(self.base, i + 1))
        await self._changed(("en", LANGS[0]), i)


def _map_costs(size: int, reps: int = 200) -> tuple[float, float]:
    d = {f"node-{i:05d}": i for i in range(size)}
    m = immutables.Map(d)

    def copy() -> object:
        c = d.copy()
        c["node-00042"] = -1
        return MappingProxyType(c)

    dict_s = min(timeit.repeat(copy, number=reps, repeat=5))
    map_s = min(timeit.repeat(lambda: m.set("node-00042", -1), number=reps, repeat=5))
    return dict_s / reps * 1e6, map_s / reps * 1e6


def maps(sizes: list[int]) -> None:
    print("one-key change of a node map (µs): dict copy + set vs immutables.Map.set")
    for size in sizes:
        dict_us, map_us = _map_costs(size)
        print(f"  {size:>6} nodes: dict {dict_us:7.2f}   Map {map_us:6.2f}")


def summary(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=10)
    return f"{statistics.median(samples):8.1f} {q[-1]:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="200,2000,10000")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--maps", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.maps:
        maps(sizes)
    n = args.iterations
    print(f"µs per change incl. first dispatch (build alone in []), median and p90 of {n}")
    head = f"{'nodes':>6} {'change':6} {'old':>17} {'[old build]':>11} {'new':>17}"
    print(f"{head} {'[new build]':>11} {'registry':>17}")
    for size in sizes:
        nodes = population(size)
        old_model, new_model = Model(nodes, old=True), Model(nodes, old=False)
        largest = max(len(m) for m in new_model.snapshot.pool_members.values())
        old, old_builds = _events(old_model, nodes, n)
        new, new_builds = _events(new_model, nodes, n)
        reg = uvloop.run(RegistryBench(nodes, n).run())
        for event in EVENTS:
            cells = [summary(old[event]), f"{statistics.median(old_builds[event]):11.1f}"]
            cells += [summary(new[event]), f"{statistics.median(new_builds[event]):11.1f}"]
            print(f"{size:>6} {event:6} {' '.join(cells)} {summary(reg[event])}")
        fresh = Model(nodes, old=False)
        steady = statistics.median(steady_dispatch(fresh, nodes, n))
        print(f"{size:>6} (largest pool {largest}; a dispatch with no change: {steady:.1f} µs)")


def _events(
    model: Model, nodes: list[tuple[str, list[tuple[str, str]]]], n: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    totals, builds = {}, {}
    for event, samples in model_events(model, nodes, n):
        totals[event], builds[event] = samples, model.step_builds
        model.step_builds = []
    return totals, builds


if __name__ == "__main__":
    main()
