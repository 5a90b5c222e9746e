"""The tools' one launcher: real child processes, a real redis-server."""

from __future__ import annotations

import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from switchboard.tools.procs import (
    LISTENING,
    ChildProcess,
    ProcessFailed,
    RedisClusterProcess,
    RedisProcess,
    SchedulerProcess,
    child_env,
    flag_args,
    free_port,
)


def test_child_env_drops_switchboard_settings() -> None:
    """A developer's SWITCHBOARD_* settings never reach a child; output is unbuffered."""
    env = child_env({"SWITCHBOARD_ADMIN_TOKEN": "secret", "PATH": "/bin"}, EXTRA="1")
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", "EXTRA": "1"}


def test_flag_args_spell_flags_as_serve_does() -> None:
    assert flag_args({"job_timeout": 5, "store": "memory"}) == [
        "--job-timeout",
        "5",
        "--store",
        "memory",
    ]


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_child_that_exits_fails_its_start_at_once(tmp_path: Path, timeout_scale: float) -> None:
    """No ready line and the process gone: start fails without waiting out its timeout, and
    the report holds what the child printed."""
    script = "print('about to give up'); raise SystemExit(3)"
    child = ChildProcess(
        [sys.executable, "-c", script],
        log_path=tmp_path / "child.log",
        ready=LISTENING,
    )
    began = time.monotonic()
    with pytest.raises(ProcessFailed, match="about to give up"):
        child.start(timeout=30 * timeout_scale)
    assert time.monotonic() - began < 10 * timeout_scale
    assert child.wait(5) == 3


def test_scheduler_restarts_on_the_port_it_first_got(tmp_path: Path, timeout_scale: float) -> None:
    """Port 0 the first time; the same port after a kill, so peers find it again."""
    sched = SchedulerProcess(flags={"store": "memory"}, log_path=tmp_path / "serve.log")
    try:
        sched.start(timeout=20 * timeout_scale)
        first = sched.port
        assert first > 0 and sched.store == "memory"
        with urllib.request.urlopen(sched.url + "/health", timeout=5 * timeout_scale) as reply:
            assert reply.status == 200
        sched.kill()
        assert not sched.running
        sched.start(timeout=20 * timeout_scale)
        assert sched.port == first and sched.starts == 2
        assert len(sched.matches) == 2
        # Answering means it is past the listening line and has its SIGTERM handler (the
        # runner prints the line first), so the stop below is a clean one.
        with urllib.request.urlopen(sched.url + "/health", timeout=5 * timeout_scale) as reply:
            assert reply.status == 200
    finally:
        assert sched.terminate(timeout=10 * timeout_scale) == 0
    assert sched.tracebacks() == 0


@pytest.mark.redis
def test_redis_restarts_empty_on_the_same_port(tmp_path: Path, timeout_scale: float) -> None:
    """A restart keeps the port and loses every key (no persistence)."""
    server = RedisProcess(tmp_path, scale=timeout_scale)
    server.start()
    try:
        with server.client() as client:
            client.set("k", "v")
        port = server.port
        server.restart()
        assert server.port == port
        with server.client() as client:
            assert client.get("k") is None
    finally:
        server.stop()
    assert not server.running


@pytest.mark.redis
def test_redis_cluster_serves_every_slot_and_fails_over_by_hand(
    tmp_path: Path, timeout_scale: float
) -> None:
    """Three primaries with a replica each; a key is held by the primary serving its slot;
    CLUSTER FAILOVER makes the replica that primary; stop() leaves no server running."""
    cluster = RedisClusterProcess(tmp_path, scale=timeout_scale)
    cluster.start()
    try:
        assert len(cluster.nodes) == 6 and len(cluster.primaries()) == 3
        assert cluster.url.startswith("redis+cluster://127.0.0.1:")
        old = cluster.primary_of("{k}a")
        with old.client() as client:
            client.set("{k}a", "v")
        new = cluster.failover(old)
        assert cluster.primary_of("{k}a").port == new.port != old.port
        with new.client() as client:
            assert client.get("{k}a") == b"v"
    finally:
        cluster.stop()
    assert not any(node.running for node in cluster.nodes)
