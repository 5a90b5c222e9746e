"""`switchboard status | nodes | drain | undrain` as processes against a real server, with and
without an admin token (client/ops.py)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import ServerProcess
from tests.e2e.test_pool_config import switchboard

TOKEN = "cli-s3cret"


@MEMORY_ONLY
async def test_status_and_nodes(server: ServerProcess, peers: Peers) -> None:
    """`status` and `nodes` print a table, or the API's JSON with --json; the scheduler comes
    from --url or SWITCHBOARD_URL."""
    await peers.node(server, node_id="gpu-a", pairs=[("en", "de")])
    await peers.node(server, node_id="fresh", ready=False)
    await server.wait_node_status("fresh", "registering")

    table = await switchboard("nodes", "--url", server.url)
    assert table.status == 0, table
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        *("NODE_ID", "STATUS", "HEARTBEAT", "LOAD", "CPU", "MEM", "GPU", "GPU_MEM"),
        *("POOLS", "PAIRS"),
    ]
    by_id = {row.split()[0]: row.split() for row in rows}
    gpu_a = by_id["gpu-a"]
    assert gpu_a[1] == "ready" and gpu_a[3] == "0/4"
    assert gpu_a[4:8] == ["12.5%", "40.0%", "30.0%", "-"]  # no GPU memory reported: "-"
    assert gpu_a[-1] == "en>de"
    assert by_id["fresh"][1] == "registering" and by_id["fresh"][4:8] == ["-"] * 4

    listed = await switchboard("nodes", "--json", SWITCHBOARD_URL=server.url)
    assert listed.status == 0, listed
    assert {n["node_id"] for n in json.loads(listed.stdout)} == {"gpu-a", "fresh"}

    status = await switchboard("status", "--url", server.url)
    assert status.status == 0, status
    lines = {line.split("  ")[0]: line for line in status.stdout.splitlines()}
    assert "2 (1 ready, 1 registering, 0 degraded, 0 draining)" in lines["nodes"]
    assert "memory (up)" in lines["store"]
    as_json = await switchboard("status", "--json", "--url", server.url)
    stats = json.loads(as_json.stdout)
    assert stats["nodes"]["total"] == 2 and stats["latency"]["count"] == 0


@MEMORY_ONLY
async def test_drain_and_undrain(server: ServerProcess, peers: Peers) -> None:
    """`drain NODE` and `undrain NODE` change the node and print its status (exit 0); an
    unknown node is exit status 3 with a sentence naming it; an unreachable scheduler is 1."""
    await peers.node(server, node_id="gpu-a")
    drained = await switchboard("drain", "gpu-a", "--url", server.url)
    assert drained.status == 0, drained
    assert drained.stdout.splitlines()[1].split() == ["gpu-a", "draining"]
    assert (await server.nodes())["gpu-a"]["status"] == "draining"

    undrained = await switchboard("undrain", "gpu-a", "--json", "--url", server.url)
    assert undrained.status == 0, undrained
    assert json.loads(undrained.stdout) == {"node_id": "gpu-a", "status": "ready"}
    assert (await server.nodes())["gpu-a"]["status"] == "ready"

    for command in ("drain", "undrain"):
        missing = await switchboard(command, "no/such node", "--url", server.url)
        assert missing.status == 3, missing
        assert "no node 'no/such node'" in missing.stderr
        assert "Traceback" not in missing.stderr

    away = await switchboard("status", "--url", "http://127.0.0.1:1")
    assert away.status == 1 and "cannot reach" in away.stderr


@MEMORY_ONLY
@pytest.mark.server(admin_token=TOKEN)
async def test_commands_with_an_admin_token(server: ServerProcess, peers: Peers) -> None:
    """With --admin-token, the token comes from SWITCHBOARD_ADMIN_TOKEN (or --token); without
    it, or with a wrong one, each command fails with exit status 1 and HTTP 401, and changes
    nothing."""
    await peers.node(server, node_id="gpu-a")
    auth = {"SWITCHBOARD_ADMIN_TOKEN": TOKEN, "SWITCHBOARD_URL": server.url}
    for argv in (("status",), ("nodes",), ("drain", "gpu-a"), ("undrain", "gpu-a")):
        refused = await switchboard(*argv, "--url", server.url)
        assert refused.status == 1, (argv, refused)
        assert "HTTP 401" in refused.stderr and "Traceback" not in refused.stderr
        wrong = await switchboard(*argv, "--token", "not-it", "--url", server.url)
        assert wrong.status == 1 and "HTTP 401" in wrong.stderr
        if argv[0] == "undrain":
            assert (await server.nodes())["gpu-a"]["status"] == "draining"
        done = await switchboard(*argv, "--json", **auth)
        assert done.status == 0, (argv, done)
        assert TOKEN not in done.stdout + done.stderr
        if argv[0] == "drain":
            assert (await server.nodes())["gpu-a"]["status"] == "draining"
    assert (await server.nodes())["gpu-a"]["status"] == "ready"
