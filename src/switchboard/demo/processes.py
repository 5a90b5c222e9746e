"""The demo's child processes: the scheduler and the node agents, each in its own process
group, with their output in log files and nothing left running when the demo ends.

Each child runs in a new session (``start_new_session``): a Ctrl-C in the terminal then reaches
only the demo, which stops the load first and the children after, in order, rather than every
process at once.  On Linux each child also gets SIGTERM if the demo itself dies without
cleaning up (``PR_SET_PDEATHSIG``), so even a ``kill -9`` of the demo leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_LIBC_NAME = ctypes.util.find_library("c") if sys.platform == "linux" else None
# Resolved before any fork: the child must only call it, never load anything.
_prctl: Callable[..., int] | None = (
    getattr(ctypes.CDLL(_LIBC_NAME, use_errno=True), "prctl", None) if _LIBC_NAME else None
)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(base: Mapping[str, str]) -> dict[str, str]:
    """The demo's environment without SWITCHBOARD_* settings (a developer's shell must not
    give the demo's scheduler tokens its own nodes and sessions do not have)."""
    env = {k: v for k, v in base.items() if not k.startswith("SWITCHBOARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """One child process; stdout and stderr go to ``log_path``, stdout lines also to
    ``on_line`` (how the demo learns the scheduler's port)."""

    def __init__(
        self, name: str, proc: asyncio.subprocess.Process, log_path: Path, pump: asyncio.Task[None]
    ) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self._pump = pump

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    @classmethod
    async def spawn(
        cls,
        name: str,
        args: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> Child:
        log = log_path.open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=dict(env),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()  # the child holds its own descriptor
        pump = asyncio.create_task(_pump(proc, log_path, on_line), name=f"{name}-stdout")
        return cls(name, proc, log_path, pump)

    def terminate(self) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        """Last resort: SIGKILL the child's whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def wait(self, limit: float) -> int | None:
        """The exit status, or ``None`` if still running after ``limit`` seconds."""
        try:
            status = await asyncio.wait_for(self.proc.wait(), limit)
        except TimeoutError:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pump, 1.0)
        return status


async def _pump(
    proc: asyncio.subprocess.Process, log_path: Path, on_line: Callable[[str], None] | None
) -> None:
    assert proc.stdout is not None
    with log_path.open("a", encoding="utf-8", errors="replace") as log:
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            log.write(line + "\n")
            log.flush()
            if on_line is not None:
                on_line(line)


async def stop_children(children: Sequence[Child], *, grace: float) -> dict[str, int]:
    """SIGTERM each child, wait up to ``grace`` s, then SIGKILL its group; exit statuses."""
    for child in children:
        child.terminate()
    statuses = await asyncio.gather(*(child.wait(grace) for child in children))
    result: dict[str, int] = {}
    for child, status in zip(children, statuses, strict=True):
        if status is None:
            child.kill_group()
            status = await child.wait(grace)
            status = -signal.SIGKILL if status is None else status
        result[child.name] = status
    return result


LISTENING = re.compile(r"switchboard listening on (?P<url>http://\S+) \(store=(?P<store>[^)]+)\)")
