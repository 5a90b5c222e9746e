"""``switchboard serve --workers N`` (docs/scale-out.md): N instances behind one port, each a
cluster member, under one supervisor; real processes, real sockets, a real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import Peers, ServerFactory
from tests.e2e.harness import ServerProcess, eventually

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

TTL = 1.0  # --instance-ttl: a restarted worker's old presence does not linger


def worker_pids(server: ServerProcess) -> list[int]:
    """The supervisor's children: one process per worker."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text()
    return sorted(int(pid) for pid in children.split())


async def instances(server: ServerProcess) -> dict[str, dict[str, Any]]:
    body = await server.get_json("/api/v1/cluster")
    return {row["instance_id"]: row for row in body["instances"]}


async def start_workers(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, **options: Any
) -> ServerProcess:
    return await server_factory(
        "--redis-url",
        redis_server.url,
        "--redis-namespace",
        namespace,
        "--instance-id",
        "wk",
        workers=2,
        instance_ttl=TTL,
        **options,
    )


async def test_two_workers_share_one_port_and_answer_everything(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str, peers: Peers
) -> None:
    """Sessions and nodes connected through the one port land on both workers (the kernel
    spreads connections); every utterance is answered, across workers or not."""
    server = await start_workers(server_factory, redis_server, namespace)
    assert len(worker_pids(server)) == 2
    nodes = [await peers.node(server) for _ in range(8)]
    sessions = [await peers.session(server) for _ in range(8)]

    async def spread() -> bool:
        rows = await instances(server)
        return (
            sorted(rows) == ["wk-w1", "wk-w2"]
            and all(row["nodes"] + row["sessions"] > 0 for row in rows.values())
            and sum(row["nodes"] for row in rows.values()) == len(nodes)
        )

    # 16 connections all on one worker would be a 1 in 32,768 chance.
    await eventually(spread, "nodes and sessions on both workers", within=5)
    for session in sessions:
        for index in range(3):
            await session.utter(index)
    for session in sessions:
        answers = await session.wait_answers(3)
        assert [f["utterance_index"] for f in answers] == [0, 1, 2]
        assert all(f["type"] == "translation_result" for f in answers), answers
    # Both workers see every node (one cluster view), whichever one answers the request.
    for _ in range(4):
        assert len(await server.nodes()) == len(nodes)
    assert server.terminate() == 0


async def test_a_dead_worker_is_started_again_under_its_id(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str
) -> None:
    server = await start_workers(server_factory, redis_server, namespace)
    first, second = worker_pids(server)
    os.kill(second, signal.SIGKILL)

    async def replaced() -> bool:
        pids = worker_pids(server)
        return len(pids) == 2 and first in pids and second not in pids

    await eventually(replaced, "a new worker in place of the killed one", within=5)

    async def listening_again() -> bool:
        again = [line for line in _log(server) if "worker 2 (wk-w2) listening on" in line]
        return len(again) == 2 and sorted(await instances(server)) == ["wk-w1", "wk-w2"]

    await eventually(listening_again, "worker 2 listening again, in the cluster", within=5)
    assert any("worker 2 (wk-w2) exited" in line for line in _log(server))
    assert server.terminate() == 0  # SIGTERM: every worker stopped gracefully


def test_more_than_one_worker_needs_redis() -> None:
    """The embedded store cannot be shared between processes: a clear refusal, status 2."""
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers 2 needs the Redis store" in done.stderr


def _log(server: ServerProcess) -> list[str]:
    return server.log_path.read_text(errors="replace").splitlines()
