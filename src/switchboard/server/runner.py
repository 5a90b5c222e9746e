"""``switchboard serve``: run one scheduler process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from switchboard.config import Settings
from switchboard.dispatch.spans import JobSpans
from switchboard.logs import ACCESS_LOGGER
from switchboard.server.access import AccessLogger
from switchboard.server.app import build_app
from switchboard.server.scheduler import Design, Observe, Scheduler, snapshot_design
from switchboard.store.factory import open_cluster, open_pool_config, open_store

log = logging.getLogger("switchboard.server")


# Young-generation threshold (CPython's default is 700 allocations).  A job lives for its
# node's answer (~0.1–1 s); at the default a collection runs every few dozen jobs, and objects
# of jobs still in flight survive two of them into the old generation, whose full collections
# then walk every session's objects (50–170 ms pauses at 1,000 sessions, docs/benchmarks.md).
# Rarer young collections let jobs die young; each one looks only at what is still alive.
GC_YOUNG_THRESHOLD = 20_000


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def settle_heap() -> None:
    """Once serving: move everything built at start-up (modules, the app) out of the cyclic
    collector's sight (``gc.freeze``) and make young collections rarer (above)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _nothing(_sched: Scheduler) -> None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeHooks:
    """What a caller may add around :func:`serve`: the tools plug in here (the benchmark's
    latency tap, its model of the old design, the session recorder), so the server never
    imports them."""

    design: Design = snapshot_design  # builds the registry and the dispatch driver
    observe: Observe | None = None  # makes an observer of sessions, utterances, answers
    built: Callable[[Scheduler], None] = _nothing  # the scheduler exists, not yet started
    stopping: Callable[[Scheduler], None] = _nothing  # a signal came; before the shutdown
    backlog: int = 128  # listen backlog (the benchmark connects 10,000 sessions at once)
    grace: float | None = None  # shutdown grace; default min(job timeout, 5 s)


def run(
    settings: Settings,
    hooks: ServeHooks | None = None,
    *,
    worker: Callable[[str], None] | None = None,
) -> int:
    """Serve until a signal; returns the exit status.  ``worker``: this process is one of
    ``serve --workers N`` (server/workers.py); it shares the port (SO_REUSEPORT) and is called
    with the address once listening, instead of printing the one ``listening`` line."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(settings, hooks=hooks, worker=worker))


async def serve(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    hooks: ServeHooks | None = None,
    worker: Callable[[str], None] | None = None,
) -> int:
    hooks = hooks or ServeHooks()
    sched = Scheduler(
        settings,
        open_store(settings),
        design=hooks.design,
        observe=hooks.observe,
        pool_config=open_pool_config(settings),
        spans=_spans(settings),
        cluster=open_cluster(settings),
    )
    hooks.built(sched)
    await sched.start()
    if not await sched.store.ping():
        log.warning("reservation store %s unreachable at start; serving degraded", sched.store.name)
        sched.dispatcher.store_up = False
    app_runner = web.AppRunner(
        build_app(sched),
        handle_signals=False,
        access_log=logging.getLogger(ACCESS_LOGGER),
        access_log_class=AccessLogger,
    )
    await app_runner.setup()
    site = web.TCPSite(
        app_runner,
        settings.host,
        settings.port,
        reuse_address=True,
        reuse_port=True if worker is not None else None,
        backlog=hooks.backlog,
    )
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        await sched.shutdown(grace=0)
        await app_runner.cleanup()
        return 1
    port = _bound_port(app_runner) or settings.port
    if sched.cluster is not None:
        sched.cluster.listening(f"http://{settings.host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # One machine-readable line, so wrappers and tests can find a port chosen with --port 0.
    # Printed once the signal handlers are in: a wrapper may stop us as soon as it reads it.
    # A worker tells its parent instead, which prints the line once every worker listens.
    if worker is not None:
        worker(f"http://{settings.host}:{port}")
    else:
        print(
            f"switchboard listening on http://{settings.host}:{port} (store={sched.store.name})",
            flush=True,
        )
    settle_heap()
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down")
    hooks.stopping(sched)
    grace = min(settings.job_timeout, 5.0) if hooks.grace is None else hooks.grace
    await sched.shutdown(grace=grace)
    await app_runner.cleanup()
    log.info("switchboard stopped")  # a log line, so --log-format json stays all JSON
    return 0


def _spans(settings: Settings) -> JobSpans | None:
    """``--otel``: one OpenTelemetry span per utterance; imported only then (docs/logging.md)."""
    if not settings.otel:
        return None
    from switchboard.server.otel import OtelSpans

    return OtelSpans.from_environment()


def _bound_port(app_runner: web.AppRunner) -> int | None:
    for address in app_runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
