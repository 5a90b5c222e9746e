"""The demo's child processes: the scheduler and the node agents, each in its own process
group, with their output in log files and nothing left running when the demo ends.

They are the tools' launcher (``switchboard.tools.procs``).  Each child runs in a new session:
a Ctrl-C in the terminal then reaches only the demo, which stops the load first and the
children after, in order, rather than every process at once.  Each child also gets SIGTERM if
the demo itself dies without cleaning up (``PR_SET_PDEATHSIG``, Linux), so even a ``kill -9``
of the demo leaves nothing behind.  Stdout goes to the same log as stderr.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from switchboard.tools.procs import AgentProcess, ChildProcess, SchedulerProcess


def scheduler(args: Sequence[str], *, log_path: Path, env: Mapping[str, str]) -> SchedulerProcess:
    """``switchboard serve --port 0 ARGS``, not started yet."""
    return SchedulerProcess(args, log_path=log_path, env=env, new_session=True, stdout_to_log=True)


def node(flags: Sequence[str], *, log_path: Path, env: Mapping[str, str]) -> AgentProcess:
    """``switchboard node FLAGS``, not started yet."""
    return AgentProcess(flags, log_path=log_path, env=env, new_session=True, stdout_to_log=True)


async def stop_children(children: Mapping[str, ChildProcess], *, grace: float) -> dict[str, int]:
    """SIGTERM each child, wait up to ``grace`` s, then SIGKILL its group; exit statuses."""
    for child in children.values():
        child.send_signal(signal.SIGTERM)
    await _exited(children.values(), grace)
    stragglers = [child for child in children.values() if child.running]
    for child in stragglers:
        child.kill_group()
    await _exited(stragglers, grace)
    result: dict[str, int] = {}
    for name, child in children.items():
        if not child.starts:
            continue  # stopped before it was started (a Ctrl-C during start-up)
        status = child.wait(0) if not child.running else None
        result[name] = -signal.SIGKILL if status is None else status
    return result


async def _exited(children: Iterable[ChildProcess], limit: float) -> None:
    """Until every child has exited or ``limit`` seconds have passed.  A thread of its own
    for each child's wait: a demo may run more nodes than the default executor has threads."""
    pending = [child for child in children if child.running]
    if not pending:
        return
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(len(pending), thread_name_prefix="demo-wait") as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, c.wait, limit) for c in pending))
