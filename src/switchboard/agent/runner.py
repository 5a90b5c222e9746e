"""Run one agent as a process: signals, exit status (``switchboard node`` and scripts)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from switchboard.agent.agent import AgentConfig, NodeAgent
from switchboard.agent.backends import Backend

log = logging.getLogger("switchboard.agent")


def run_agent(
    config: AgentConfig,
    backend: Backend,
    *,
    on_registered: Callable[[str], None] | None = None,
    on_registered_with: Callable[[str, str], None] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT, then drain; returns the exit status.

    The first signal drains (no new work, running jobs finish and are answered, exit 0); a
    second one stops at once, abandoning running jobs (exit 1).  At each registration
    ``on_registered`` gets the node id, and ``on_registered_with`` the node id and the URL of
    the scheduler it registered with (one of several, with ``more_urls``).
    """
    return asyncio.run(_main(config, backend, on_registered, on_registered_with))


async def _main(
    config: AgentConfig,
    backend: Backend,
    on_registered: Callable[[str], None] | None,
    on_registered_with: Callable[[str, str], None] | None,
) -> int:
    def registered(node_id: str) -> None:
        if on_registered is not None:
            on_registered(node_id)
        if on_registered_with is not None:
            on_registered_with(node_id, agent.url)

    agent = NodeAgent(config, backend, on_registered=registered)
    task = asyncio.ensure_future(agent.run())
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if agent.draining:
            log.warning("second %s: stopping without finishing jobs", signal.Signals(signum).name)
            task.cancel()
        else:
            agent.drain()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task
    except asyncio.CancelledError:
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
