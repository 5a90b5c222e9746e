"""``switchboard node --url A --url B``: when the instance a node is on dies, the node ends up
registered on another instance of the cluster (real processes, one real redis-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from switchboard.agent import AgentConfig
from switchboard.agent.command import split_urls
from switchboard.client import Session, sine_pcm16
from switchboard.tools.procs import AgentProcess, child_env, free_port
from tests.agent.support import AgentFactory, SchedulerFactory, eventually, scaled

if TYPE_CHECKING:
    from tests.conftest import RedisServer

FAST = ("--latency-median", "0.02", "--latency-p99", "0.05", "--heartbeat-interval", "0.25")
TTL = "1.0"  # --instance-ttl: a killed instance is gone, and its node free, after a second


async def node_row(server: Any, node_id: str) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = await server.get_json("/api/v1/nodes")
    return next((row for row in rows if row["node_id"] == node_id), None)


@pytest.mark.redis
async def test_a_node_moves_to_the_next_url_when_its_instance_dies(
    scheduler_factory: SchedulerFactory,
    agent_process: AgentFactory,
    redis_server: RedisServer,
    namespace: str,
) -> None:
    on_redis = ("--redis-url", redis_server.url, "--redis-namespace", namespace)
    a = await scheduler_factory(*on_redis, "--instance-id", "a", "--instance-ttl", TTL)
    b = await scheduler_factory(*on_redis, "--instance-id", "b", "--instance-ttl", TTL)
    agent = agent_process(
        a.ws_url, "--url", b.ws_url, "--node-id", "mover", "--reconnect-max", "0.5", *FAST
    )
    await agent.wait_registered()
    assert agent.matches[0].string.endswith(f"registered with {a.ws_url}")
    await b.wait_node_status("mover", "ready")  # B sees it too, held by A

    a.kill()  # SIGKILL: no goodbye; B still counts the node as A's until A's presence expires
    await agent.wait_registered(count=2)
    assert agent.matches[-1].string.endswith(f"registered with {b.ws_url}")

    async def held_by_b() -> bool:
        row = await node_row(b, "mover")
        return row is not None and row["instance_id"] == "b" and row["status"] == "ready"

    await eventually(held_by_b, "the node on B, ready")
    async with Session.connect(b.url, src_lang="en", tgt_lang="de") as session:
        result = await session.translate(sine_pcm16(0.2))
    assert result.node_id == "mover"


def test_urls_from_flags_env_and_file_are_one_list() -> None:
    assert split_urls(["ws://a", "ws://b,ws://c", " ws://d  ws://a "]) == (
        "ws://a",
        "ws://b",
        "ws://c",
        "ws://d",
    )
    config = AgentConfig(url="ws://a", more_urls=("ws://b",))
    assert config.urls == ("ws://a", "ws://b")
    with pytest.raises(ValueError):
        AgentConfig(url="ws://a", more_urls=("ftp://b",))


@pytest.mark.parametrize("source", ["file", "environment"])
async def test_the_url_list_comes_from_the_file_or_the_environment(
    source: str, scheduler_factory: SchedulerFactory, tmp_path: Path
) -> None:
    """A first URL nobody listens on, then the live scheduler: the node registers with the
    second, whether the list comes from ``--config`` or SWITCHBOARD_NODE_URL."""
    live = await scheduler_factory()
    dead = f"ws://127.0.0.1:{free_port()}"
    flags = ["--reconnect-max", "0.5", *FAST]
    env = child_env()
    if source == "file":
        config = tmp_path / "node.toml"
        config.write_text(f'url = ["{dead}", "{live.ws_url}"]\nnode_id = "from-list"\n')
        flags += ["--config", str(config)]
    else:
        env |= {
            "SWITCHBOARD_NODE_URL": f"{dead} {live.ws_url}",
            "SWITCHBOARD_NODE_NODE_ID": "from-list",
        }
    agent = AgentProcess(flags, log_path=tmp_path / "agent.log", env=env)
    try:
        match = await asyncio.to_thread(agent.start, scaled(10))
        assert match is not None and match["node_id"] == "from-list"
        assert match.string.endswith(f"registered with {live.ws_url}")
    finally:
        agent.kill()
