"""The real processes a fault run starts, breaks and restarts.

- :class:`SchedulerProc`: ``python -m switchboard serve`` (learns its port from the
  ``listening`` line; restarts on the same port, so peers reconnect to the same URL).
- :class:`AgentProc`: ``python -m switchboard node``, the node agent with its stand-in backend.
- :class:`RedisProc`: a private ``redis-server`` on a free loopback port, without persistence.

Each keeps its stderr in a log file under the run's work directory.  Peak memory is the kernel's
high-water mark of resident memory (``VmHWM`` in ``/proc/<pid>/status``), read until the process
ends, so a peak between two samples is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import aiohttp

from switchboard.store import admin

_LISTENING: Final = re.compile(r"switchboard listening on http://(?P<host>[^\s:]+):(?P<port>\d+)")
_REGISTERED: Final = re.compile(r"switchboard node (?P<node_id>\S+) registered")


class ProcessFailed(RuntimeError):
    """A child process did not start, or died where it should not have."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss(pid: int) -> int | None:
    """The process's peak resident memory in bytes (``VmHWM``), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def child_env() -> dict[str, str]:
    """This environment without ``SWITCHBOARD_*``: a run is described by its flags alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """One child process: stderr to ``log``, stdout scanned for ``ready`` lines."""

    def __init__(self, args: Sequence[str], *, log: Path, ready: re.Pattern[str]) -> None:
        self.args = list(args)
        self.log = log
        self._ready = ready
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._matches: asyncio.Queue[re.Match[str]] = asyncio.Queue()
        self.peak_rss = 0  # bytes, over every incarnation
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, *, within: float) -> re.Match[str]:
        """Launch; return the first ``ready`` match on stdout."""
        self._matches = asyncio.Queue()
        with self.log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=log, env=child_env()
            )
        self.starts += 1
        self._drain = asyncio.create_task(self._read_stdout(self._proc))
        try:
            async with asyncio.timeout(within):
                return await self._matches.get()
        except TimeoutError:
            await self.kill()
            raise ProcessFailed(
                f"{' '.join(self.args[:5])} not ready in {within:g}s; see {self.log}"
            ) from None

    async def wait_ready(self, *, within: float) -> re.Match[str]:
        """The next ``ready`` line (an agent prints one per registration)."""
        async with asyncio.timeout(within):
            return await self._matches.get()

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            match = self._ready.search(raw.decode(errors="replace"))
            if match is not None:
                self._matches.put_nowait(match)

    def sample(self) -> None:
        """Fold the current high-water mark into :attr:`peak_rss`."""
        if self.running and self.pid is not None:
            self.peak_rss = max(self.peak_rss, peak_rss(self.pid) or 0)

    def send(self, sig: signal.Signals) -> None:
        if self.running and self._proc is not None:
            self._proc.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup (a crash)."""
        self.sample()
        if self.running and self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)  # a stopped process is killed all the same
            self._proc.kill()
        await self._reap()

    async def stop(self, *, within: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``within`` s; the exit status."""
        self.sample()
        if self.running and self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.terminate()
            try:
                async with asyncio.timeout(within):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
        return await self._reap()

    async def _reap(self) -> int | None:
        if self._proc is None:
            return None
        status = await self._proc.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 2.0)
        return status


class SchedulerProc(Proc):
    """``switchboard serve`` with the given flags; the first start picks a free port."""

    def __init__(self, flags: Mapping[str, object], *, log: Path) -> None:
        self.flags = dict(flags)
        self.port = 0
        super().__init__(self._command(), log=log, ready=_LISTENING)

    def _command(self) -> list[str]:
        args = [sys.executable, "-m", "switchboard", "serve", "--port", str(self.port)]
        for key, value in self.flags.items():
            args += ["--" + key.replace("_", "-"), str(value)]
        return args

    async def start(self, *, within: float = 20.0) -> re.Match[str]:
        self.args = self._command()
        match = await super().start(within=within)
        self.port = int(match["port"])
        return match

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

    def tracebacks(self) -> int:
        """Tracebacks in the log: every one is a defect to explain."""
        try:
            return self.log.read_text(errors="replace").count("Traceback (most recent call last)")
        except OSError:
            return 0


class AgentProc(Proc):
    """``switchboard node`` (the stand-in backend) under a fixed node id."""

    def __init__(self, node_id: str, flags: Sequence[str], *, log: Path) -> None:
        self.node_id = node_id
        args = [sys.executable, "-m", "switchboard", "node", "--node-id", node_id, *flags]
        super().__init__(args, log=log, ready=_REGISTERED)


class RedisProc:
    """A private ``redis-server``: stopped, started again on the same port, or paused."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ProcessFailed("redis-server not found on PATH (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, *, within: float = 10.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir)]
        args += ["--logfile", str(self.workdir / "redis.log")]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        async with asyncio.timeout(within):
            while not await self.ping():
                if self._proc.returncode is not None:
                    raise ProcessFailed(f"redis-server exited; see {self.workdir}/redis.log")
                await asyncio.sleep(0.02)

    async def ping(self) -> bool:
        return await admin.ping(self.port)

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still takes connections and bytes; nothing is processed."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    async def pause(self, seconds: float) -> None:
        """``CLIENT PAUSE <ms> ALL``: connections stay open, nothing is answered."""
        await admin.pause(self.port, seconds)
