"""deploy/nginx/switchboard.conf in front of three instances on one Redis: sessions and nodes
connect through nginx only, spread over the three, and every utterance is answered.

nginx runs as a private process (its own prefix, pid file, logs and temp paths in the test's
directory, ``daemon off``) from a configuration rendered from the deploy file with this run's
ports, so the test needs no root and touches nothing of the system's nginx."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from switchboard.tools.procs import AgentProcess, ChildProcess, free_port
from tests.e2e.conftest import ServerFactory
from tests.e2e.harness import FakeNode, FakeSession, ServerProcess, eventually, scaled

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

DEPLOY_CONF = Path(__file__).parents[2] / "deploy" / "nginx" / "switchboard.conf"
UPSTREAMS = ("10.0.0.11:5010", "10.0.0.12:5010", "10.0.0.13:5010")
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
)
MAIN = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    include {dir}/switchboard.conf;
}}
"""


def render(directory: Path, port: int, instances: list[ServerProcess]) -> Path:
    """The deploy file with this run's ports, inside a private main configuration."""
    text = DEPLOY_CONF.read_text()
    for upstream, server in zip(UPSTREAMS, instances, strict=True):
        assert upstream in text, f"{upstream} is no longer in {DEPLOY_CONF}"
        text = text.replace(upstream, f"127.0.0.1:{server.port}")
    text, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", text)
    assert listens == 1, f"one `listen 80;` expected in {DEPLOY_CONF}"
    (directory / "temp").mkdir(parents=True, exist_ok=True)
    (directory / "switchboard.conf").write_text(text)
    main = directory / "nginx.conf"
    main.write_text(MAIN.format(dir=directory))
    return main


@pytest.fixture
async def three(
    server_factory: ServerFactory, redis_server: RedisServer, namespace: str
) -> list[ServerProcess]:
    on_redis = ("--redis-url", redis_server.url, "--redis-namespace", namespace)
    behind_proxy = {
        "max_connections_per_address": 0,
        "max_http_requests_per_address": 0,
        "instance_ttl": 1.0,  # a killed instance's nodes are free to move after a second
    }
    return [
        await server_factory(*on_redis, "--instance-id", name, **behind_proxy)
        for name in ("lb-a", "lb-b", "lb-c")
    ]


@pytest.fixture
async def nginx(three: list[ServerProcess], tmp_path: Path) -> AsyncIterator[str]:
    """nginx in front of the three; its base URL."""
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/setup.sh --nginx installs Debian's)")
    directory = tmp_path / "nginx"
    directory.mkdir()
    directory.chmod(0o755)  # started as root, nginx's workers run as an unprivileged user
    port = free_port()
    main = render(directory, port, three)
    proc = ChildProcess(
        [NGINX, "-p", str(directory), "-c", str(main), "-g", "daemon off;"],
        log_path=directory / "stderr.log",
    )
    proc.launch()
    url = f"http://127.0.0.1:{port}"
    try:

        async def answers() -> bool:
            assert proc.running, (directory / "error.log").read_text(errors="replace")
            try:
                async with aiohttp.ClientSession() as http, http.get(url + "/health") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(answers, "nginx answering /health", within=10)
        yield url
    finally:
        proc.terminate()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_sessions_and_nodes_through_nginx_spread_over_three_instances(
    nginx: str, three: list[ServerProcess]
) -> None:
    ws = nginx.replace("http://", "ws://", 1)
    nodes: list[FakeNode] = []
    sessions: list[FakeSession] = []
    try:
        for _ in range(6):
            node = FakeNode(ws + "/ws/node", pairs=[("en", "de")])
            nodes.append(node)
            await node.connect()
            await node.register()
            await node.heartbeat()
            node.start_heartbeats(three[0].heartbeat_interval / 4)
        for _ in range(6):
            session = FakeSession(ws + "/ws/session")
            sessions.append(session)
            await session.connect()
            await session.init()

        # least_conn hands the six nodes two to each instance, and the sessions likewise.
        async def spread() -> bool:
            rows = await get_json(nginx + "/api/v1/nodes")
            held = sorted(row["instance_id"] for row in rows if row["status"] == "ready")
            body = await get_json(nginx + "/api/v1/cluster")
            counts = {i["instance_id"]: i["sessions"] for i in body["instances"]}
            return held == ["lb-a"] * 2 + ["lb-b"] * 2 + ["lb-c"] * 2 and counts == {
                "lb-a": 2,
                "lb-b": 2,
                "lb-c": 2,
            }

        await eventually(spread, "nodes and sessions spread over the three", within=5)

        for session in sessions:
            for index in range(4):
                await session.utter(index)
        for session in sessions:
            answers = await session.wait_answers(4)
            assert [f["utterance_index"] for f in answers] == [0, 1, 2, 3]
            assert all(f["type"] == "translation_result" for f in answers), answers
        assert sum(len(node.assigns) for node in nodes) == 24
        for server in three:
            await server.wait_idle()
    finally:
        for peer in [*nodes, *sessions]:
            await peer.close()


async def test_an_agent_behind_nginx_moves_when_its_instance_dies(
    nginx: str, three: list[ServerProcess], tmp_path: Path
) -> None:
    """One URL, nginx's: when the instance holding the node is killed, the agent reconnects
    through nginx, which skips the dead instance, and registers on a survivor (after
    NODE_ID_CONFLICT while the dead instance's presence lives)."""
    ws = nginx.replace("http://", "ws://", 1)
    agent = AgentProcess(
        ["--url", ws, "--node-id", "behind-lb", "--reconnect-max", "0.5"],
        log_path=tmp_path / "agent.log",
    )
    by_name = dict(zip(("lb-a", "lb-b", "lb-c"), three, strict=True))
    held_by: list[str] = []

    async def held(*, not_by: str | None = None) -> bool:
        rows = {r["node_id"]: r for r in await get_json(nginx + "/api/v1/nodes")}
        row = rows.get("behind-lb")
        if row is None or row["status"] != "ready" or row["instance_id"] == not_by:
            return False
        held_by.append(row["instance_id"])
        return True

    try:
        await asyncio.to_thread(agent.start, scaled(10))
        await eventually(held, "the node listed ready", within=5)
        first = held_by[-1]
        await asyncio.to_thread(by_name[first].kill)
        await asyncio.to_thread(agent.wait_match, 2, scaled(15))  # registered again
        await eventually(lambda: held(not_by=first), "the node on a survivor", within=5)
        assert held_by[-1] in set(by_name) - {first}
    finally:
        agent.kill()
