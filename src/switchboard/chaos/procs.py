"""The real processes a fault run starts, breaks and restarts, as the faults await them.

The processes themselves are the tools' (``switchboard.tools.procs``: one launcher for every
tool); this module is their asyncio face.  A blocking call (a start waits for a line on the
child's stdout, a stop for its exit) runs on a worker thread, so the run's sessions and nodes
keep going meanwhile — a fault is measured against a load that does not pause for it.

- :class:`SchedulerProc`: ``python -m switchboard serve``; a restart comes back on the same
  port, so peers reconnect to the same URL.
- :class:`AgentProc`: ``python -m switchboard node``, the node agent with its stand-in backend.
- :class:`RedisProc`: a private ``redis-server`` on a free loopback port, without persistence.
- :class:`RedisClusterProc`: a private 3-shard Redis Cluster (a replica per primary), whose
  primaries a fault may SIGKILL.

Each keeps its stderr in a log file under the run's work directory.  Peak memory is the kernel's
high-water mark of resident memory (``VmHWM``), read until the process ends, so a peak between
two samples is not missed.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from switchboard.store.keys import KEY_ROOT, SLOTS
from switchboard.tools.procs import (
    AgentProcess,
    ChildProcess,
    ProcessFailed,
    RedisClusterProcess,
    RedisProcess,
    SchedulerProcess,
)

__all__ = ["AgentProc", "ProcessFailed", "RedisClusterProc", "RedisProc", "SchedulerProc"]


class _Proc:
    """A tools child process, awaited: each ``start`` or :meth:`wait_ready` consumes the
    next ``ready`` line (an agent prints one per registration)."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self._consumed = 0  # ready lines already handed out

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child.starts else None

    @property
    def running(self) -> bool:
        return self.child.running

    @property
    def peak_rss(self) -> int:
        """Bytes, over every incarnation."""
        return self.child.peak_rss

    @property
    def log(self) -> Path:
        return self.child.log_path

    async def start(self, *, within: float) -> re.Match[str]:
        """Launch; return this incarnation's first ``ready`` match."""
        match = await asyncio.to_thread(self.child.start, within)
        assert match is not None  # every chaos child has a ready pattern
        self._consumed = len(self.child.matches)
        return match

    async def wait_ready(self, *, within: float) -> re.Match[str]:
        """The next ``ready`` line."""
        count = self._consumed + 1
        match = await asyncio.to_thread(self.child.wait_match, count, within)
        self._consumed = count
        return match

    def sample(self) -> None:
        """Fold the current high-water mark into :attr:`peak_rss`."""
        self.child.sample()

    def send(self, sig: signal.Signals) -> None:
        self.child.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup (a crash)."""
        await asyncio.to_thread(self.child.kill)

    async def stop(self, *, within: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``within`` s; the exit status."""
        return await asyncio.to_thread(self.child.terminate, within)


class SchedulerProc(_Proc):
    """``switchboard serve`` with the given flags; the first start picks a free port."""

    def __init__(self, flags: Mapping[str, object], *, log: Path) -> None:
        self.process = SchedulerProcess(flags=flags, log_path=log)
        super().__init__(self.process)

    async def start(self, *, within: float = 20.0) -> re.Match[str]:
        return await super().start(within=within)

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stats(self) -> dict[str, object] | None:
        """``GET /api/v1/stats``, or None while it cannot be read."""
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self.url + "/api/v1/stats") as resp,
            ):
                if resp.status != 200:
                    return None
                body: dict[str, object] = await resp.json()
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def ready_nodes(self) -> int:
        """Nodes ``/api/v1/nodes`` lists as ready (0 while it cannot be read)."""
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self.url + "/api/v1/nodes") as resp,
            ):
                if resp.status != 200:
                    return 0
                rows = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0
        if not isinstance(rows, list):
            return 0
        return sum(1 for row in rows if isinstance(row, dict) and row.get("status") == "ready")

    def tracebacks(self) -> int:
        """Tracebacks in the log: every one is a defect to explain."""
        return self.process.tracebacks()


class AgentProc(_Proc):
    """``switchboard node`` (the stand-in backend) under a fixed node id."""

    def __init__(self, node_id: str, flags: Sequence[str], *, log: Path) -> None:
        self.node_id = node_id
        super().__init__(AgentProcess(["--node-id", node_id, *flags], log_path=log))


class RedisProc:
    """A private ``redis-server``: stopped, started again on the same port, or paused."""

    def __init__(self, workdir: Path) -> None:
        self.process = RedisProcess(workdir)

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return self.process.url

    async def start(self) -> None:
        await asyncio.to_thread(self.process.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.process.stop)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still takes connections and bytes; nothing is processed."""
        self.process.freeze()

    def thaw(self) -> None:
        self.process.thaw()

    async def pause(self, seconds: float) -> None:
        """``CLIENT PAUSE <ms> ALL``: connections stay open, nothing is answered."""
        await asyncio.to_thread(self.process.pause, int(seconds * 1000))


@dataclass(frozen=True, slots=True)
class ShardLeases:
    """What one primary holds of a namespace's leases, read at one moment."""

    primary: RedisProcess
    keys: int  # lease keys (one sorted set per node with a lease)
    live: int  # leases whose expiry is still ahead (by the primary's own clock)


class RedisClusterProc:
    """A private Redis Cluster (3 primaries, a replica each) on free loopback ports."""

    def __init__(self, workdir: Path, *, scale: float) -> None:
        self.workdir = workdir
        self.scale = scale
        self.process: RedisClusterProcess | None = None

    @property
    def cluster(self) -> RedisClusterProcess:
        assert self.process is not None, "cluster not started"
        return self.process

    @property
    def url(self) -> str:
        return self.cluster.url

    async def start(self) -> None:
        """Start it; a port taken between probing and binding costs a retry (three tries)."""
        for attempt in range(3):
            process = RedisClusterProcess(
                self.workdir / f"redis-cluster-{attempt}", scale=self.scale
            )
            try:
                await asyncio.to_thread(process.start)
            except (ProcessFailed, subprocess.SubprocessError):
                continue
            self.process = process
            return
        raise ProcessFailed(f"could not start a redis cluster under {self.workdir} (3 tries)")

    async def stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)

    async def leases(self, namespace: str) -> list[ShardLeases]:
        """Every serving primary's share of ``namespace``'s leases (a scan of each)."""
        return await asyncio.to_thread(self._leases, namespace)

    def _leases(self, namespace: str) -> list[ShardLeases]:
        # Lease keys are sb:{<ns>}:slots:<node> or, sharded, sb:{<ns>:g<k>}:slots:<node>.
        pattern = f"{KEY_ROOT}:{{{namespace}*}}:{SLOTS}:*"
        shares = []
        for primary in self.cluster.primaries():
            with primary.client() as client:
                seconds, micros = client.time()
                now_ms = int(seconds) * 1000 + int(micros) // 1000
                keys = live = 0
                for key in client.scan_iter(match=pattern, count=1000):
                    keys += 1
                    live += int(client.zcount(key, f"({now_ms}", "+inf"))
            shares.append(ShardLeases(primary, keys, live))
        return shares

    async def kill_primary(self, primary: RedisProcess) -> RedisProcess:
        """SIGKILL ``primary``; wait until its replica is promoted and every node agrees
        (``cluster_state:ok``).  The new primary."""
        return await asyncio.to_thread(self.cluster.kill_primary, primary)
