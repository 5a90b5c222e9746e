"""The heartbeat storm of E2, driven from the load generator.

Storm on: every node heartbeats at ``hz_storm`` (10 Hz), ``churn_per_s`` extra nodes join and
as many leave every second (each lives about one second), and ``flips_per_s`` times a second a
node's health flips (its heartbeat reports no service ready → ``degraded``, or ready again).
Storm off: heartbeats at ``hz_calm``, churn nodes gone, every node healthy.

Heartbeats come from one pump rather than a task per node, so a change of rate applies within
one 10 ms tick instead of after each node's current sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from switchboard.bench.fakes import FakeNode

_TICK = 0.01


@dataclass(frozen=True, slots=True)
class StormSpec:
    hz_calm: float = 1.0
    hz_storm: float = 10.0
    churn_per_s: float = 5.0
    flips_per_s: float = 5.0


@dataclass(slots=True)
class StormCounts:
    heartbeats: int = 0
    joins: int = 0
    leaves: int = 0
    flips: int = 0
    join_failures: int = 0


class Storm:
    def __init__(
        self,
        nodes: Sequence[FakeNode],
        spec: StormSpec,
        *,
        make_node: Callable[[int], FakeNode],
        connect: Callable[[FakeNode], asyncio.Future[None] | asyncio.Task[None]],
        rng: random.Random,
    ) -> None:
        self.nodes = list(nodes)  # every node that heartbeats, churn nodes included
        self.spec = spec
        self.counts = StormCounts()
        self.on = False
        self._make_node = make_node
        self._connect = connect
        self._rng = rng
        self._stable = list(nodes)
        self._churners: deque[FakeNode] = deque()
        self._degraded: deque[FakeNode] = deque()
        self._serial = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def hz(self) -> float:
        return self.spec.hz_storm if self.on else self.spec.hz_calm

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._pump()),
            asyncio.create_task(self._every(self.spec.churn_per_s, self._churn)),
            asyncio.create_task(self._every(self.spec.flips_per_s, self._flip)),
        ]

    async def stop(self) -> None:
        self.set(storm=False)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def set(self, *, storm: bool) -> None:
        self.on = storm
        if storm:
            return
        while self._churners:
            self._leave(self._churners.popleft())
        while self._degraded:
            self._toggle(self._degraded.popleft())

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        credit, turn, last = 0.0, 0, loop.time()
        while True:
            await asyncio.sleep(_TICK)
            now = loop.time()
            credit += (now - last) * self.hz * len(self.nodes)
            last = now
            due = int(credit)
            credit -= due
            for _ in range(min(due, len(self.nodes))):
                turn = (turn + 1) % len(self.nodes)
                self.nodes[turn].heartbeat()
            self.counts.heartbeats += due

    async def _every(self, per_s: float, action: Callable[[], None]) -> None:
        if per_s <= 0:
            return
        while True:
            await asyncio.sleep(1 / per_s)
            if self.on:
                action()

    def _churn(self) -> None:
        """One join, and one leave once about a second's worth of churners exist."""
        if len(self._churners) >= max(1, round(self.spec.churn_per_s)):
            self._leave(self._churners.popleft())
        node = self._make_node(next(self._serial))
        self._churners.append(node)
        self.counts.joins += 1
        task = self._connect(node)
        task.add_done_callback(functools.partial(self._joined, node=node))

    def _joined(self, task: asyncio.Future[None], *, node: FakeNode) -> None:
        if task.cancelled() or task.exception() is not None:
            self.counts.join_failures += 1
            with contextlib.suppress(ValueError):
                self._churners.remove(node)
            return
        if node in self._churners:
            self.nodes.append(node)
        else:
            node.leave()  # left before it finished joining

    def _leave(self, node: FakeNode) -> None:
        self.counts.leaves += 1
        with contextlib.suppress(ValueError):
            self.nodes.remove(node)
        node.leave()

    def _flip(self) -> None:
        if len(self._degraded) >= 3 or not self._stable:
            if self._degraded:
                self._toggle(self._degraded.popleft())
            return
        healthy = [n for n in self._stable if n.healthy]
        if healthy:
            node = self._rng.choice(healthy)
            self._toggle(node)
            self._degraded.append(node)

    def _toggle(self, node: FakeNode) -> None:
        node.healthy = not node.healthy
        node.heartbeat()  # the status change reaches the scheduler now, not at the next beat
        self.counts.flips += 1
