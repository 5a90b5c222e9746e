"""``switchboard serve``: run one scheduler process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from switchboard.config import Settings
from switchboard.server.app import build_app
from switchboard.server.scheduler import Scheduler
from switchboard.store.factory import open_store

log = logging.getLogger("switchboard.server")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(settings: Settings) -> int:
    """Serve until a signal; returns the exit status."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(settings))


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> int:
    sched = Scheduler(settings, open_store(settings))
    await sched.start()
    if not await sched.store.ping():
        log.warning("reservation store %s unreachable at start; serving degraded", sched.store.name)
        sched.dispatcher.store_up = False
    app_runner = web.AppRunner(build_app(sched), handle_signals=False, access_log=None)
    await app_runner.setup()
    site = web.TCPSite(app_runner, settings.host, settings.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        await sched.shutdown(grace=0)
        await app_runner.cleanup()
        return 1
    port = _bound_port(app_runner) or settings.port
    # One machine-readable line, so wrappers and tests can find a port chosen with --port 0.
    print(
        f"switchboard listening on http://{settings.host}:{port} (store={sched.store.name})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down")
    await sched.shutdown(grace=min(settings.job_timeout, 5.0))
    await app_runner.cleanup()
    print("switchboard stopped", file=sys.stderr, flush=True)
    return 0


def _bound_port(app_runner: web.AppRunner) -> int | None:
    for address in app_runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
