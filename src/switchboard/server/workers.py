"""``switchboard serve --workers N``: N full instances behind one port, under one supervisor.

Each worker is a process of its own (forked from this one before any event loop or thread
exists), with its own event loop, its own Redis connections and its own instance id,
``<instance_id>-w<k>``: a full member of the cluster on the shared Redis (cluster/), so a
session on one worker is served by a node on another exactly as between machines.

One port.  The parent binds the port with SO_REUSEPORT and keeps that socket bound but never
listening: it reserves the port (``--port 0`` is resolved once, here) and takes no
connections, because the kernel spreads new connections over the *listening* sockets of the
group only, one per worker.  A worker that dies takes its own listening socket with it; the
kernel stops sending connections there at once, and the others carry on.

Supervision.  The parent runs no event loop: it waits on two pipes (workers write their number
to one when they listen; signal handlers write to the other through ``set_wakeup_fd``) and
reaps children with ``waitpid``.  A worker that dies after it was listening is started again,
under the same instance id, at most once a second: the cluster has already failed over its
jobs, and the new process reads what its inbox still holds.  A worker that dies before it ever
listened on the first start is a configuration problem (the port is taken, say): everything
stops, exit status 1.  SIGTERM or SIGINT stop every worker with SIGTERM, each then shuts down
gracefully as a lone ``serve`` does, and SIGKILL follows only after its grace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Final

from switchboard.config import Settings
from switchboard.server.runner import ServeHooks, run
from switchboard.server.scheduler import new_instance_id

log = logging.getLogger("switchboard.server")

RESTART_INTERVAL: Final = 1.0  # s: least time between two starts of one worker
STOP_MARGIN: Final = 10.0  # s: over a worker's own grace, before it is SIGKILLed
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG: Final = 1


def worker_instance_id(base: str, index: int) -> str:
    """The instance id of worker ``index`` (1-based)."""
    return f"{base}-w{index}"


def run_workers(settings: Settings, hooks: ServeHooks | None = None) -> int:
    """Run ``settings.workers`` workers until SIGTERM or SIGINT; the exit status."""
    try:
        holder = reserve_port(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    with holder:
        port = int(holder.getsockname()[1])
        base = settings.instance_id or new_instance_id()
        each = dataclasses.replace(settings, port=port, instance_id=base)
        return _Supervisor(each, hooks, holder.fileno()).run()


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT, not listening: the workers' listening
    sockets join its group (same user, same option), and ``port`` 0 becomes a real port."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(slots=True)
class _Worker:
    index: int
    pid: int = 0
    started: float = 0.0  # monotonic
    listening: bool = False  # this incarnation
    ever_listened: bool = False
    due: float | None = None  # a restart is due at this monotonic time


class _Supervisor:
    def __init__(self, settings: Settings, hooks: ServeHooks | None, holder_fd: int) -> None:
        self.settings = settings
        self.hooks = hooks
        self.holder_fd = holder_fd
        self.workers = [_Worker(k) for k in range(1, settings.workers + 1)]
        self.stopping = False
        self.announced = False
        self.failed = False
        self.exit_codes: list[int] = []  # non-zero statuses of workers stopped at the end
        self._ready_r, self._ready_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        self._ready_buffer = b""

    # --- the parent ---------------------------------------------------------------------------

    def run(self) -> int:
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.set_blocking(fd, False)
        previous = {sig: signal.signal(sig, self._on_stop) for sig in _STOP_SIGNALS}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _wake_only)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            for worker in self.workers:
                self._spawn(worker)
            while not self.stopping:
                self._wait(self._next_due())
                self._reap()
                self._restart_due()
            return self._stop_all()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
                os.close(fd)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _wait(self, until: float | None) -> None:
        timeout = None if until is None else max(0.0, until - time.monotonic())
        readable, _, _ = select.select([self._ready_r, self._wake_r], [], [], timeout)
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        if self._ready_r in readable:
            self._read_ready()

    def _read_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._ready_buffer += os.read(self._ready_r, 4096)
        *lines, self._ready_buffer = self._ready_buffer.split(b"\n")
        for line in lines:
            pid_text, _, index_text = line.decode().partition(" ")
            worker = self.workers[int(index_text) - 1]
            if worker.pid == int(pid_text):  # not a line from an incarnation already gone
                worker.listening = worker.ever_listened = True
        if not self.announced and all(w.listening for w in self.workers):
            self.announced = True
            # The one line a lone `serve` prints, once every worker takes connections.
            print(
                f"switchboard listening on http://{self.settings.host}:{self.settings.port}"
                f" (store={self.settings.store}) with {len(self.workers)} workers",
                flush=True,
            )

    def _reap(self) -> None:
        by_pid = {w.pid: w for w in self.workers if w.pid}
        while by_pid:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = by_pid.pop(pid, None)
            if worker is None:
                continue
            worker.pid, worker.listening = 0, False
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                # Killed by our SIGTERM before its loop took signals: it had nothing to stop.
                if code not in (0, -signal.SIGTERM):
                    self.exit_codes.append(code)
                continue
            if not worker.ever_listened:
                log.error(
                    "worker %d exited (status %d) before it listened; stopping",
                    worker.index,
                    code,
                )
                self.failed = self.stopping = True
                continue
            worker.due = max(time.monotonic(), worker.started + RESTART_INTERVAL)
            log.warning(
                "worker %d (%s) exited (status %d); starting it again",
                worker.index,
                self._instance_id(worker),
                code,
            )

    def _next_due(self) -> float | None:
        due = [w.due for w in self.workers if w.due is not None]
        return min(due) if due else None

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.due is not None and worker.due <= now and not self.stopping:
                self._spawn(worker)

    def _stop_all(self) -> int:
        log.info("stopping %d worker(s)", sum(1 for w in self.workers if w.pid))
        for worker in self.workers:
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        grace = min(self.settings.job_timeout, 5.0) + STOP_MARGIN
        deadline = time.monotonic() + grace
        killed = False
        while any(w.pid for w in self.workers):
            if not killed and time.monotonic() >= deadline:
                killed = True
                for worker in self.workers:
                    if worker.pid:
                        log.error("worker %d did not stop in %gs; killing it", worker.index, grace)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signal.SIGKILL)
            self._wait(None if killed else deadline)  # SIGCHLD wakes it
            self._reap()
        log.info("switchboard stopped (%d workers)", len(self.workers))
        return 1 if self.failed or self.exit_codes else 0

    def _instance_id(self, worker: _Worker) -> str:
        assert self.settings.instance_id is not None
        return worker_instance_id(self.settings.instance_id, worker.index)

    # --- a worker -----------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        worker.due = None
        worker.started = time.monotonic()
        worker.listening = False
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which leaves with os._exit
            os._exit(self._child(worker))
        worker.pid = pid

    def _child(self, worker: _Worker) -> int:  # pragma: no cover - covered end to end
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            for fd in (self._ready_r, self._wake_r, self._wake_w, self.holder_fd):
                os.close(fd)
            _die_with_parent()
            instance_id = self._instance_id(worker)
            settings = dataclasses.replace(self.settings, instance_id=instance_id, workers=1)
            status = run(settings, self.hooks, worker=self._announcer(worker, instance_id))
        except BaseException:  # whatever it was: reported here, and the parent restarts us
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return status

    def _announcer(self, worker: _Worker, instance_id: str) -> Callable[[str], None]:
        ready_w = self._ready_w

        def announce(address: str) -> None:
            log.info("worker %d (%s) listening on %s", worker.index, instance_id, address)
            os.write(ready_w, f"{os.getpid()} {worker.index}\n".encode())

        return announce


def _wake_only(_signum: int, _frame: FrameType | None) -> None:
    """SIGCHLD: the wakeup fd has the byte; the handler only has to exist."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """SIGTERM when the supervisor dies, so no worker outlives it (Linux)."""
    libc = ctypes.util.find_library("c") if sys.platform == "linux" else None
    prctl = getattr(ctypes.CDLL(libc, use_errno=True), "prctl", None) if libc else None
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
