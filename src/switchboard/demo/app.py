"""``switchboard demo``: a whole Switchboard on one machine, under load, shown live.

1. start the scheduler (``python -m switchboard serve --port 0``) and read its port from the
   line it prints;
2. start ``--nodes`` node agents with the stand-in backend (``python -m switchboard node``),
   each in its own process, and wait until the scheduler lists them all ``ready``;
3. run ``--sessions`` client sessions in this process (the SDK) for ``--duration`` seconds,
   polling the scheduler to show nodes, dispatch rate and latency percentiles;
4. stop the sessions (each finishes its burst: nothing is cut off), SIGTERM the nodes (they
   drain), SIGTERM the scheduler, wait for all, SIGKILL any straggler's process group;
5. print the summary; exit 1 if an utterance went unanswered (lost) or was answered with an
   error, an answer came out of order, a session failed or a process exited badly; 2 if the
   stack could not start.  Errors count as failures too: on one idle machine every utterance
   should be translated, so an error code means something is wrong, and a run whose every
   answer is INTERNAL_ERROR must not pass for a good one.

Ctrl-C or SIGTERM at any time jumps to step 4; a second one shortens the waits to a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from switchboard.client.urls import endpoint
from switchboard.demo import processes
from switchboard.demo.load import PAIRS, Load, Tally
from switchboard.demo.monitor import Monitor, Reading
from switchboard.demo.rooms import ROOM_PAIRS, RoomLoad, room_sizes
from switchboard.demo.view import Frame, plain_line, render, summary_lines
from switchboard.tools.procs import AgentProcess, ProcessFailed, SchedulerProcess, child_env

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_LIMIT = 20.0  # seconds for the scheduler to listen and the nodes to be ready
LOAD_GRACE = 15.0  # seconds for sessions to get their last answers after the run
STOP_GRACE = 10.0  # seconds for each child to exit after SIGTERM
# --saturate: sessions pause this little between bursts (a closed loop offering far more than
# the nodes serve), and the scheduler sheds once its waiting line's oldest job is this old.
SATURATED_THINK_TIME = 0.02
SATURATED_QUEUE_AGE = 0.25


class DemoError(Exception):
    """The demo could not run; the message says what to look at."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    duration: float = 20.0
    nodes: int = 4
    sessions: int = 50
    store: str = "memory"
    redis_url: str = DEFAULT_REDIS_URL
    node_concurrency: int = 4
    latency_median: float = 0.08
    latency_p99: float = 0.3
    think_time: float = 1.0
    streaming: bool = False  # sessions stream audio_chunk frames instead of utterances
    rooms: bool = False  # sessions talk in rooms (fan-out) instead of alone
    saturate: bool = False  # more speech than the nodes serve: the scheduler sheds (OVERLOADED)

    @classmethod
    def from_flags(
        cls,
        *,
        duration: float,
        nodes: int,
        sessions: int,
        store: str | None,
        redis_url: str | None,
        streaming: bool = False,
        rooms: bool = False,
        saturate: bool = False,
    ) -> DemoOptions:
        """As ``serve`` does, a Redis URL implies the Redis store (protocol.md §6)."""
        if store == "memory" and redis_url is not None:
            raise ValueError("--store memory conflicts with --redis-url")
        chosen = store or ("redis" if redis_url is not None else "memory")
        if rooms:
            if streaming:
                raise ValueError("--rooms and --streaming do not combine (yet)")
            room_sizes(sessions)  # ValueError: too few sessions for a room
        return cls(
            duration=duration,
            nodes=nodes,
            sessions=sessions,
            store=chosen,
            redis_url=redis_url or DEFAULT_REDIS_URL,
            streaming=streaming,
            rooms=rooms,
            saturate=saturate,
            think_time=SATURATED_THINK_TIME if saturate else 1.0,
        )


def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns the exit status."""
    return asyncio.run(Demo(options).run())


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.console = Console()
        self.live_view = self.console.is_terminal
        self.workdir = Path(tempfile.mkdtemp(prefix="switchboard-demo-"))
        self.stop = asyncio.Event()
        self.hurry = False
        self.scheduler: SchedulerProcess | None = None
        self.nodes: dict[str, AgentProcess] = {}
        self.base_url = ""

    def say(self, line: str) -> None:
        print(line, flush=True)

    # --- the run ----------------------------------------------------------------------------

    async def run(self) -> int:
        self._handle_signals()
        status = 1
        tally: Tally | None = None
        try:
            if await self._unless_stopped(self._start_stack()):
                tally, seconds, scheduling, shed = await self._drive()
                status = 0
            else:
                self.say("demo: interrupted during start-up")
        except DemoError as exc:
            self.say(f"demo: error: {exc}")
            status = 2
        finally:
            exits = await self._stop_stack()
        if tally is not None:
            for line in summary_lines(
                tally, seconds=seconds, scheduling=scheduling, exits=exits, shed=shed
            ):
                self.say(line)
            status = 1 if _failed(tally, exits, saturate=self.options.saturate) else 0
        self._tidy(status)
        return status

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if self.stop.is_set():
                self.hurry = True
            self.stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)

    async def _unless_stopped(self, work: Awaitable[None]) -> bool:
        """Run ``work`` unless a signal comes first (then cancel it); True if it finished."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.create_task(self.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task.done():
            task.result()  # re-raises DemoError
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    def _tidy(self, status: int) -> None:
        if status == 0:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self.say(f"demo: logs kept in {self.workdir}")

    # --- processes --------------------------------------------------------------------------

    async def _start_stack(self) -> None:
        env = child_env(os.environ)
        await self._start_scheduler(env)
        async with Monitor(self.base_url) as monitor:
            if not await monitor.store_up():
                # The scheduler serves degraded without its store: every utterance would be
                # refused with SCHEDULER_DEPENDENCY_DOWN, which is no demo at all.
                raise DemoError(f"the scheduler cannot reach Redis at {self.options.redis_url}")
        for n in range(1, self.options.nodes + 1):
            node = processes.node(
                self._node_flags(n), log_path=self.workdir / f"node-{n}.log", env=env
            )
            self.nodes[f"node-{n}"] = node
            node.launch()
            self.say(f"demo: node demo-node-{n} pid {node.pid}")
        wanted = {f"demo-node-{n}" for n in range(1, self.options.nodes + 1)}
        async with Monitor(self.base_url) as monitor:
            if not await monitor.wait_nodes_ready(wanted, limit=START_LIMIT):
                raise DemoError(f"the nodes did not all become ready; see {self.workdir}")

    async def _start_scheduler(self, env: dict[str, str]) -> None:
        log_path = self.workdir / "scheduler.log"
        # Known before it starts: a Ctrl-C during start-up stops it like any other child.
        self.scheduler = processes.scheduler(self._scheduler_args(), log_path=log_path, env=env)
        try:
            match = await asyncio.to_thread(self.scheduler.start, START_LIMIT)
        except ProcessFailed:
            raise DemoError(f"the scheduler did not start; see {log_path}") from None
        assert match is not None
        self.base_url = match["url"]
        self.say(
            f"demo: scheduler pid {self.scheduler.pid} listening on {self.base_url}"
            f" (store={self.options.store})"
        )

    def _scheduler_args(self) -> list[str]:
        # Every demo peer connects from 127.0.0.1: lift the per-address connection limit.
        args = ["--host", "127.0.0.1", "--max-connections-per-address", "0"]
        args += ["--log-level", "warning"]
        if self.options.saturate:
            args += ["--overload-queue-age", str(SATURATED_QUEUE_AGE)]
        if self.options.store == "redis":
            # A namespace of its own: the demo never touches another deployment's keys.
            namespace = f"switchboard-demo-{uuid.uuid4().hex[:8]}"
            args += ["--redis-url", self.options.redis_url, "--redis-namespace", namespace]
        return args

    def _node_flags(self, n: int) -> list[str]:
        o = self.options
        args = ["--url", endpoint(self.base_url, "/ws/node"), "--node-id", f"demo-node-{n}"]
        for src, tgt in ROOM_PAIRS if o.rooms else PAIRS:
            args += ["--pair", f"{src}:{tgt}"]
        args += ["--max-concurrency", str(o.node_concurrency), "--seed", str(n)]
        args += ["--latency-median", str(o.latency_median), "--latency-p99", str(o.latency_p99)]
        args += ["--log-level", "warning"]
        return args

    async def _stop_stack(self) -> dict[str, int]:
        """Nodes first (they drain, with no work left), then the scheduler."""
        grace = 1.0 if self.hurry else STOP_GRACE
        exits = await processes.stop_children(self.nodes, grace=grace)
        if self.scheduler is not None:
            scheduler = {"scheduler": self.scheduler}
            exits = {**await processes.stop_children(scheduler, grace=grace), **exits}
        return exits

    # --- load and view ----------------------------------------------------------------------

    async def _drive(self) -> tuple[Tally, float, tuple[float | None, ...], dict[str, int]]:
        tally = Tally()
        url = endpoint(self.base_url, "/ws/session")
        o = self.options
        load: Load | RoomLoad
        if o.saturate:
            self.say(
                "demo: saturated: the sessions offer more than the nodes serve; the scheduler"
                " refuses what it cannot place in time (OVERLOADED) and the SDK resends it"
            )
        if o.rooms:
            load = RoomLoad(url, sessions=o.sessions, tally=tally, think_time=o.think_time)
            self.say("demo: sessions talk in rooms; counts are per listener")
        else:
            load = Load(
                url,
                sessions=o.sessions,
                tally=tally,
                think_time=o.think_time,
                streaming=o.streaming,
            )
        load_stop = asyncio.Event()
        started = time.monotonic()
        load_task = asyncio.create_task(load.run(load_stop))
        async with Monitor(self.base_url) as monitor:
            await self._show(monitor, load, started)
            load_stop.set()
            await self._finish_load(load_task)
            seconds = time.monotonic() - started
            final = await monitor.read()
        return tally, seconds, final.scheduling, final.shed

    async def _finish_load(self, load_task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(load_task), 1.0 if self.hurry else LOAD_GRACE)
        except TimeoutError:
            load_task.cancel()  # what is still unanswered now counts as lost
            await asyncio.gather(load_task, return_exceptions=True)

    async def _show(self, monitor: Monitor, load: Load | RoomLoad, started: float) -> None:
        interval = 0.5 if self.live_view else 1.0
        deadline = started + self.options.duration
        previous: Reading | None = None
        with self._live() as live:
            while True:
                reading = await monitor.read()
                frame = Frame(
                    elapsed=time.monotonic() - started,
                    duration=self.options.duration,
                    reading=reading,
                    rate=reading.rate_since(previous),
                    tally=load.tally,
                    open_sessions=load.open_sessions,
                )
                previous = reading if reading.ok else previous
                if live is not None:
                    live.update(render(frame))
                else:
                    self.say(plain_line(frame))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), min(interval, remaining))

    @contextlib.contextmanager
    def _live(self) -> Iterator[Live | None]:
        if not self.live_view:
            yield None
            return
        with Live(console=self.console, refresh_per_second=4) as live:
            yield live


def _failed(tally: Tally, exits: dict[str, int], *, saturate: bool = False) -> bool:
    # Saturated on purpose, OVERLOADED is the expected answer to what could not be placed.
    errors = {c: n for c, n in tally.errors.items() if not (saturate and c == "OVERLOADED")}
    return bool(
        tally.lost
        or errors
        or tally.out_of_order
        or tally.session_failures
        or any(status != 0 for status in exits.values())
    )
