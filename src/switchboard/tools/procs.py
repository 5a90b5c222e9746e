"""The child processes every tool starts: the scheduler, node agents, a private redis-server.

One launcher, blocking (``subprocess`` and a reader thread), because its callers are both
plain code (``bench`` runs without an event loop; the e2e suite starts spare servers on a
thread pool) and asyncio code (``chaos``, ``demo``, the agent tests), which call it through
``asyncio.to_thread``.  The only waits are for a line on the child's stdout and for its exit;
nothing here polls the event loop's clock.

- :class:`ChildProcess`: any child; stderr to a log file, stdout kept line by line and matched
  against a ``ready`` pattern (``switchboard serve`` and ``switchboard node`` each print one
  line when ready, and the agent one per registration).
- :class:`SchedulerProcess`: ``python -m switchboard serve`` (or a module that wraps it, as
  ``bench.serverproc`` does) on port 0; learns its address from the ``listening`` line and
  comes back on the same port when started again, so peers reconnect to the same URL.
- :class:`RedisProcess`: a private ``redis-server`` on a free loopback port, no persistence; a
  fault may stop, restart, pause or freeze it.
- :class:`RedisClusterProcess`: a Redis Cluster of such servers (3 primaries and 3 replicas by
  default) made one by ``redis-cli --cluster create``; a fault may fail a shard over by hand or
  SIGKILL its primary and wait for the replica's promotion.

Every child gets SIGTERM if the tool dies without cleaning up (``PR_SET_PDEATHSIG``, Linux), so
an interrupted run leaves no scheduler or redis-server behind, and its environment has no
``SWITCHBOARD_*`` settings: a developer's tokens or settings must not change what a tool runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final

from switchboard.store import admin

LISTENING: Final = re.compile(
    r"switchboard listening on (?P<url>http://(?P<host>[^\s:/]+):(?P<port>\d+))"
    r" \(store=(?P<store>[^)]+)\)"
)
"""The one line ``switchboard serve`` prints once it accepts connections (server/runner.py)."""

REGISTERED: Final = re.compile(r"switchboard node (?P<node_id>\S+) registered with ")
"""The line ``switchboard node`` prints at every registration (agent/command.py)."""

_PR_SET_PDEATHSIG: Final = 1
_LIBC = ctypes.util.find_library("c") if sys.platform == "linux" else None
# Resolved before any fork: between fork and exec the child may only call it.
_prctl: Callable[..., int] | None = (
    getattr(ctypes.CDLL(_LIBC, use_errno=True), "prctl", None) if _LIBC else None
)


class ProcessFailed(RuntimeError):
    """A child process did not start, or died where it should not have."""


def die_with_parent() -> None:
    """``preexec_fn`` of every child: SIGTERM when the tool that started it dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it; it can be taken before
    it is bound, so callers that can start on port 0 should)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (this environment) without ``SWITCHBOARD_*``, unbuffered, plus ``extra``."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("SWITCHBOARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def flag_args(flags: Mapping[str, object]) -> list[str]:
    """``{"job_timeout": 5}`` → ``["--job-timeout", "5"]``, as ``switchboard serve`` spells it."""
    args: list[str] = []
    for key, value in flags.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


def peak_rss(pid: int) -> int | None:
    """A process's peak resident memory in bytes (``VmHWM``: the kernel's high-water mark, so
    a peak between two samples is not missed), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ChildProcess:
    """One child process, started again as often as a fault needs.

    ``lines`` holds every stdout line of every incarnation; ``matches`` every ``ready`` match.
    Stopping sends SIGCONT first: a SIGSTOPped process cannot act on SIGTERM.
    """

    failure: ClassVar[type[Exception]] = ProcessFailed

    def __init__(
        self,
        args: Sequence[str],
        *,
        log_path: Path,
        ready: re.Pattern[str] | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        stdout_to_log: bool = False,
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.ready = ready
        self.env = dict(env) if env is not None else child_env()
        # A child in a session of its own does not get the terminal's Ctrl-C: the tool stops
        # its children itself, in order.
        self.new_session = new_session
        self.stdout_to_log = stdout_to_log  # the demo keeps stdout with stderr in one log
        self.lines: list[str] = []
        self.matches: list[re.Match[str]] = []
        self.returncode: int | None = None
        self.starts = 0
        self.peak_rss = 0  # bytes, over every incarnation
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()
        self._eof = True

    # --- life -------------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the process and return at once (see :meth:`start` to wait until ready)."""
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                start_new_session=self.new_session,
                preexec_fn=die_with_parent,
            )
        self.starts += 1
        self.returncode = None
        self._eof = False
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()

    def start(self, timeout: float = 10.0) -> re.Match[str] | None:
        """Launch; with a ``ready`` pattern, wait for this incarnation's first match."""
        seen = len(self.matches)
        self.launch()
        if self.ready is None:
            return None
        try:
            return self.wait_match(seen + 1, timeout)
        except self.failure:
            self.kill()
            raise

    def wait_match(self, count: int, timeout: float) -> re.Match[str]:
        """The ``count``-th ``ready`` match since the first start; fails when the process's
        stdout ends first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.matches) < count:
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    what = "exited" if self._eof else f"not ready in {timeout:g}s"
                    raise self.failure(f"{' '.join(self.args[:5])} {what}\n{self.output()}")
                self._changed.wait(left)
            return self.matches[count - 1]

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        log = self.log_path.open("a", encoding="utf-8") if self.stdout_to_log else None
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                match = self.ready.search(line) if self.ready is not None else None
                with self._changed:
                    self.lines.append(line)
                    if match is not None:
                        self.matches.append(match)
                        self.on_ready(match)
                    self._changed.notify_all()
        finally:
            if log is not None:
                log.close()
            with self._changed:
                self._eof = True  # wakes a start() still waiting, so it fails at once
                self._changed.notify_all()

    def on_ready(self, match: re.Match[str]) -> None:
        """Hook: a ``ready`` line arrived (runs on the reader thread)."""

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise self.failure("not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def send_signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def sample(self) -> None:
        """Fold the current high-water mark of resident memory into :attr:`peak_rss`."""
        if self.running:
            self.peak_rss = max(self.peak_rss, peak_rss(self.pid) or 0)

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, or None if still running after ``timeout`` seconds."""
        if self._proc is None:
            return self.returncode
        try:
            status = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reaped(status)
        return status

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit status."""
        self.sample()
        proc = self._proc
        if proc is None:
            return self.returncode if self.returncode is not None else -1
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        status = proc.wait()
        self._reaped(status)
        return status

    def kill(self) -> int | None:
        """SIGKILL: no goodbye, no cleanup (a crash); the exit status."""
        self.sample()
        proc = self._proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        status = proc.wait()
        self._reaped(status)
        return status

    def kill_group(self) -> None:
        """Last resort for a child in its own session: SIGKILL its whole process group."""
        if self._proc is not None and self.new_session:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def _reaped(self, status: int) -> None:
        self.returncode = status
        if self._reader is not None:
            self._reader.join(2.0)  # the last lines, before anyone reads them

    # --- reports ----------------------------------------------------------------------------

    def output(self, tail: int = 200) -> str:
        """The command, its stdout and the tail of its log, for failure reports."""
        try:
            log = self.log_path.read_text(errors="replace").splitlines()[-tail:]
        except OSError:
            log = ["<no log>"]
        status = self._proc.poll() if self._proc is not None else None
        return "\n".join(
            [
                f"$ {' '.join(self.args)}",
                f"exit status: {status}",
                "--- stdout",
                *self.lines,
                f"--- stderr (last {tail} lines)",
                *log,
            ]
        )

    def tracebacks(self) -> int:
        """Tracebacks in the log: every one is a defect to explain."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Traceback (most recent call last)")


class SchedulerProcess(ChildProcess):
    """``python -m MODULE [serve] --port P [args] [flags]``: the scheduler on ``host:port``.

    The first start asks for port 0; a later start asks for the port the first one got, so a
    restarted scheduler is found at the same URL.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        log_path: Path,
        flags: Mapping[str, object] | None = None,
        module: str = "switchboard",
        command: Sequence[str] = ("serve",),
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        stdout_to_log: bool = False,
    ) -> None:
        self.extra_args = [*args, *flag_args(flags or {})]
        self.head = [sys.executable, "-m", module, *command]
        self.host = ""
        self.port = 0
        self.store = ""
        super().__init__(
            self._command(),
            log_path=log_path,
            ready=LISTENING,
            env=env,
            new_session=new_session,
            stdout_to_log=stdout_to_log,
        )

    def _command(self) -> list[str]:
        return [*self.head, "--port", str(self.port), *self.extra_args]

    def launch(self) -> None:
        self.args = self._command()
        super().launch()

    def on_ready(self, match: re.Match[str]) -> None:
        self.host, self.port, self.store = match["host"], int(match["port"]), match["store"]

    @property
    def url(self) -> str:
        if not self.port:
            raise self.failure(f"the scheduler has no port\n{self.output()}")
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)


class AgentProcess(ChildProcess):
    """``python -m switchboard node …``: ready at each registration (:data:`REGISTERED`)."""

    def __init__(
        self,
        flags: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        stdout_to_log: bool = False,
    ) -> None:
        args = [sys.executable, "-m", "switchboard", "node", *flags]
        super().__init__(
            args,
            log_path=log_path,
            ready=REGISTERED,
            env=env,
            new_session=new_session,
            stdout_to_log=stdout_to_log,
        )

    @property
    def registrations(self) -> list[str]:
        """The node id of each registration so far, in order."""
        with self._changed:
            return [match["node_id"] for match in self.matches]


class RedisProcess:
    """A private ``redis-server`` that a test or a fault may stop, restart on the same port,
    pause or freeze.  No persistence: a restart starts empty, as after a crash, script cache
    included."""

    def __init__(
        self,
        workdir: Path,
        *,
        binary: str | None = None,
        scale: float = 1.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ProcessFailed("redis-server not found on PATH (apt-get install redis-server)")
        self.binary = found
        self.workdir = workdir
        self.scale = scale  # stretches every wait (slow machines)
        self.extra_args = tuple(extra_args)  # more redis-server options, e.g. --unixsocket
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> admin.SyncClient:
        """A synchronous client for set-up, inspection and faults (not the code under test)."""
        return admin.sync_client(self.port, timeout=5 * self.scale)

    def start(self) -> None:
        """Start and wait until it answers PING."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        args += ["--logfile", str(self.workdir / "redis.log"), *self.extra_args]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        self._wait_ready(deadline=time.monotonic() + 10 * self.scale)

    def _wait_ready(self, *, deadline: float) -> None:
        while True:
            if not self.running:
                raise ProcessFailed(f"redis-server exited early; see {self.workdir}/redis.log")
            if admin.answers(self.port):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessFailed(f"redis-server on port {self.port} never answered")
            time.sleep(0.01)

    def stop(self) -> None:
        """Terminate the process (SIGKILL after a while) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a frozen server cannot handle SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout=5 * self.scale)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port; the new server knows no keys and no scripts."""
        self.stop()
        self.start()

    def pause(self, ms: int) -> None:
        """``CLIENT PAUSE <ms> ALL``: the server keeps connections open but answers nothing."""
        with self.client() as admin:
            admin.client_pause(ms, all=True)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections and bytes; nothing is processed."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to clients or to a cluster's other nodes."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _cluster_port() -> int:
    """A free port for a cluster node's bus (``cluster-port``): its own, rather than Redis'
    default of port + 10000, which may be taken or beyond 65535."""
    return free_port()


class RedisClusterProcess:
    """A Redis Cluster of real ``redis-server`` processes on loopback: ``shards`` primaries,
    each with ``replicas`` replicas, made one cluster by ``redis-cli --cluster create``.

    For the store's cluster tests and faults: which primary holds a key, a manual failover
    (``CLUSTER FAILOVER`` on a replica), a primary SIGKILLed and its replica promoted.  The
    node timeout is short (``node_timeout_ms``) so that a killed primary is replaced within
    seconds; no persistence, as :class:`RedisProcess`."""

    def __init__(
        self,
        workdir: Path,
        *,
        shards: int = 3,
        replicas: int = 1,
        scale: float = 1.0,
        node_timeout_ms: int = 1000,
    ) -> None:
        self.workdir = workdir
        self.scale = scale
        self.shards = shards
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisProcess] = []
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ProcessFailed("redis-cli not found on PATH (apt-get install redis-tools)")
        self.cli = cli

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every primary the cluster started with as a seed."""
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[: self.shards])
        return f"redis+cluster://{seeds}"

    def start(self) -> None:
        """Start every node, create the cluster and wait until every slot is served."""
        try:
            for i in range(self.shards * (1 + self.replicas)):
                node_dir = self.workdir / f"node{i}"
                node_dir.mkdir(parents=True, exist_ok=True)
                args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                args += ["--cluster-node-timeout", str(int(self.node_timeout_ms * self.scale))]
                args += ["--cluster-port", str(_cluster_port())]
                node = RedisProcess(node_dir, scale=self.scale, extra_args=args)
                self.nodes.append(node)
                node.start()
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60 * self.scale,
            )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def wait_ok(self, *, timeout_s: float = 30.0, primary: int | None = None) -> None:
        """Until every running node says ``cluster_state:ok`` and all of them agree on the same
        ``shards`` primaries serving every slot (``primary``'s port among them, if given)."""
        deadline = time.monotonic() + timeout_s * self.scale
        while True:
            if self._all_ok(primary):
                return
            if time.monotonic() > deadline:
                raise ProcessFailed(f"redis cluster in {self.workdir} never became ok")
            time.sleep(0.05)

    def _all_ok(self, primary: int | None) -> bool:
        running = [n for n in self.nodes if n.running]
        views: set[tuple[int, ...]] = set()
        try:
            for node in running:
                with node.client() as client:
                    info = admin.command(client, "CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text:
                        return False
                    views.add(tuple(self._primary_ports(client)))
        except admin.RedisError:
            return False
        if len(views) != 1:
            return False
        (ports,) = views
        return len(ports) == self.shards and (primary is None or primary in ports)

    def _primary_ports(self, client: admin.SyncClient) -> list[int]:
        """The ports of the primaries that serve slots, as ``client``'s node sees them."""
        ports = []
        for line in _cluster_nodes(client):
            fields = line.split()
            flags = fields[2].split(",")
            if "master" in flags and "fail" not in flags and len(fields) > 8:
                ports.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(ports)

    def _any(self) -> RedisProcess:
        for node in self.nodes:
            if node.running:
                return node
        raise ProcessFailed("no node of the cluster is running")

    def primaries(self) -> list[RedisProcess]:
        """The running nodes that are primaries serving slots now."""
        with self._any().client() as client:
            ports = set(self._primary_ports(client))
        return [n for n in self.nodes if n.port in ports and n.running]

    def keyslot(self, key: str) -> int:
        with self._any().client() as client:
            return int(admin.command(client, "CLUSTER", "KEYSLOT", key))

    def primary_of(self, key: str) -> RedisProcess:
        """The primary that serves ``key``'s hash slot now."""
        slot = self.keyslot(key)
        with self._any().client() as client:
            for line in _cluster_nodes(client):
                fields = line.split()
                if "master" not in fields[2].split(",") or "fail" in fields[2]:
                    continue
                for spec in fields[8:]:
                    low, _, high = spec.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                        return next(n for n in self.nodes if n.port == port)
        raise ProcessFailed(f"no primary serves slot {slot}")

    def replica_of(self, primary: RedisProcess) -> RedisProcess:
        """A running replica of ``primary``, in sync with it (by the replica's own ``ROLE``:
        a node's view of the others lags after a failover)."""
        deadline = time.monotonic() + 10 * self.scale
        while True:
            for node in self.nodes:
                if node is primary or not node.running:
                    continue
                try:
                    with node.client() as client:
                        role = admin.command(client, "ROLE")
                except admin.RedisError:
                    continue
                fields = [f.decode() if isinstance(f, bytes) else f for f in role]
                in_sync = fields[0] == "slave" and fields[3] == "connected"
                if in_sync and int(fields[2]) == primary.port:
                    return node
            if time.monotonic() > deadline:
                raise ProcessFailed(f"primary on port {primary.port} has no running replica")
            time.sleep(0.05)

    def failover(self, primary: RedisProcess) -> RedisProcess:
        """A manual failover: ``CLUSTER FAILOVER`` on a replica of ``primary``, which becomes
        the primary once the old one has handed over; returns the new primary."""
        replica = self.replica_of(primary)
        with replica.client() as client:
            admin.command(client, "CLUSTER", "FAILOVER")
        self._wait_primary(replica)
        return replica

    def kill_primary(self, primary: RedisProcess) -> RedisProcess:
        """SIGKILL ``primary``; its replica is promoted once the others mark it failed (the
        node timeout); returns the new primary."""
        replica = self.replica_of(primary)
        primary.kill()
        self._wait_primary(replica)
        return replica

    def _wait_primary(self, node: RedisProcess) -> None:
        deadline = time.monotonic() + 30 * self.scale
        while True:
            try:
                with node.client() as client:
                    role = admin.command(client, "ROLE")
                if role and role[0] in (b"master", "master"):
                    break
            except admin.RedisError:
                pass
            if time.monotonic() > deadline:
                raise ProcessFailed(f"redis on port {node.port} was never promoted")
            time.sleep(0.05)
        self.wait_ok(primary=node.port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_nodes(client: admin.SyncClient) -> list[str]:
    reply = admin.command(client, "CLUSTER", "NODES")
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return [line for line in text.splitlines() if line.strip()]
