"""The operator HTTP API end to end (protocol.md §4, §5 pools)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import NodeBehaviour, ServerProcess, is_error

SILENT = NodeBehaviour(mode="none")


def histogram_count(metrics: str, name: str) -> float:
    match = re.search(rf"^{name}_count(?:\{{[^}}]*\}})? (\S+)$", metrics, re.MULTILINE)
    assert match, f"{name}_count not in /metrics"
    return float(match[1])


@MEMORY_ONLY
async def test_health_and_metrics(server: ServerProcess, peers: Peers) -> None:
    """/health is 200 {"status":"ok"}; /metrics is Prometheus text whose
    switchboard_dispatch_latency_seconds histogram counts each dispatched utterance."""
    status, body = await server.http("GET", "/health")
    assert (status, body) == (200, {"status": "ok"})
    status, text = await server.http("GET", "/metrics")
    assert status == 200
    assert "# TYPE switchboard_dispatch_latency_seconds histogram" in text
    assert histogram_count(text, "switchboard_dispatch_latency_seconds") == 0
    await peers.node(server)
    session = await peers.session(server)
    await session.utter(0)
    await session.wait_answer(0)
    _, text = await server.http("GET", "/metrics")
    assert histogram_count(text, "switchboard_dispatch_latency_seconds") == 1


@pytest.mark.server(pending_timeout=0.3)
async def test_stats_counts_and_idle_reservations(server: ServerProcess, peers: Peers) -> None:
    """/api/v1/stats counts nodes by status, sessions, pools, jobs in flight, slots held (from
    the store), dispatched and failed utterances; reservations_held is 0 when idle again."""
    ready = await peers.node(server, behaviour=SILENT)
    await peers.node(server, ready=False)  # registering
    await peers.node(server, services={"asr": False, "nmt": False, "tts": False})  # degraded
    drained = await peers.node(server, pairs=[("fr", "it")])
    status, _ = await server.http("POST", f"/api/v1/nodes/{drained.node_id}/drain")
    assert status == 200
    session = await peers.session(server)
    await session.utter(0)
    running = await ready.wait_assign()
    busy = await server.stats()
    assert busy["jobs_in_flight"] == 1
    assert busy["reservations_held"] == 1
    await ready.answer(running)
    await session.utter(1, src_lang="xx", tgt_lang="yy")  # nobody serves it
    await session.wait_answers(2)

    stats = await server.wait_idle()
    assert stats["nodes"] == {
        "total": 4,
        "ready": 1,
        "registering": 1,
        "degraded": 1,
        "draining": 1,
    }
    assert stats["sessions"] == 1
    status, pools = await server.http("GET", "/api/v1/pools")
    assert stats["pools"] == len(pools) >= 2
    assert stats["dispatched_total"] == 1
    assert stats["failed_total"] == 1
    assert stats["jobs_in_flight"] == 0 and stats["reservations_held"] == 0


async def test_nodes_listing(server: ServerProcess, peers: Peers) -> None:
    """/api/v1/nodes lists node_id, status, pools, language_pairs (from
    language_capabilities, else from nmt models), max_concurrency and reserved slots; an
    offline node is not listed."""
    declared = await peers.node(
        server,
        node_id="declared",
        pairs=[("en", "de"), ("de", "en")],
        max_concurrency=3,
        behaviour=SILENT,
    )
    await peers.node(server, node_id="from-models", pairs=[("ja", "en")], pairs_from_models=True)
    leaving = await peers.node(server, node_id="leaving")
    session = await peers.session(server)
    await session.utter(0)
    running = await declared.wait_assign()

    nodes = await server.nodes()
    entry = nodes["declared"]
    assert entry["status"] == "ready"
    assert entry["max_concurrency"] == 3
    assert entry["reserved"] == 1
    pairs = {(p["src"], p["tgt"]) for p in entry["language_pairs"]}
    assert pairs == {("en", "de"), ("de", "en")}
    assert isinstance(entry["pools"], list) and entry["pools"]
    models = nodes["from-models"]
    assert [(p["src"], p["tgt"]) for p in models["language_pairs"]] == [("ja", "en")]
    assert models["max_concurrency"] == 4  # --default-max-concurrency
    assert models["reserved"] == 0

    await leaving.close()
    await server.wait_node_status("leaving", None)
    await declared.answer(running)
    await server.wait_idle()
    assert (await server.nodes())["declared"]["reserved"] == 0


@MEMORY_ONLY
async def test_generated_pools(server: ServerProcess, peers: Peers) -> None:
    """Without configured pools there is one pool per distinct language set, named by its
    sorted codes joined with '-', each node a member of its own set's pool; a pool's id stays
    the same while its set exists."""
    a = await peers.node(server, node_id="a", pairs=[("en", "de"), ("de", "en")])
    (first,) = await server.get_json("/api/v1/pools")
    b = await peers.node(server, node_id="b", pairs=[("zh_CN", "en")])
    c = await peers.node(server, node_id="c", pairs=[("de", "en")])
    pools = {p["name"]: p for p in await server.get_json("/api/v1/pools")}
    assert pools["de-en"]["pool_id"] == first["pool_id"], "pool id changed while its set lived"
    assert set(pools) == {"de-en", "en-zh-cn"}
    assert sorted(pools["de-en"]["members"]) == [a.node_id, c.node_id]
    assert pools["en-zh-cn"]["members"] == [b.node_id]
    assert sorted(pools["en-zh-cn"]["languages"]) == ["en", "zh-cn"]
    for pool in pools.values():
        assert isinstance(pool["pool_id"], int)
        assert pool["required_services"] == []
    nodes = await server.nodes()
    assert nodes["a"]["pools"] == [pools["de-en"]["pool_id"]]
    assert nodes["b"]["pools"] == [pools["en-zh-cn"]["pool_id"]]


CONFIGURED: dict[str, Any] = {
    "pools": [
        {"pool_id": 10, "name": "euro", "languages": ["en", "DE"], "required_services": ["asr"]},
        {"pool_id": 11, "name": "cjk", "languages": ["zh_CN", "en"], "required_services": []},
        {"pool_id": 12, "name": "diar", "languages": ["en"], "required_services": ["diarize"]},
    ]
}


INVALID_POOLS: dict[str, bytes] = {
    "bad-json": b"{not json",
    "not-a-list": b'{"pools": {"pool_id": 1}}',
    "no-languages": b'{"pools": [{"pool_id": 1, "name": "x"}]}',
    "duplicate-id": b'{"pools": [{"pool_id": 1, "name": "x", "languages": ["en"]},'
    b' {"pool_id": 1, "name": "y", "languages": ["de"]}]}',
    "id-not-int": b'{"pools": [{"pool_id": "one", "name": "x", "languages": ["en"]}]}',
}


@MEMORY_ONLY
async def test_put_pools_rejects_invalid_bodies(server: ServerProcess, peers: Peers) -> None:
    """PUT /api/v1/pools with an invalid body is 400 with a reason and changes nothing."""
    await peers.node(server, pairs=[("en", "de")])
    before = await server.get_json("/api/v1/pools")
    for case, body in INVALID_POOLS.items():
        status, reply = await server.http("PUT", "/api/v1/pools", data=body)
        assert status == 400, case
        assert isinstance(reply, dict) and reply.get("message"), (case, reply)
    assert await server.get_json("/api/v1/pools") == before


@MEMORY_ONLY
async def test_configured_pools_replace_generated_ones(server: ServerProcess, peers: Peers) -> None:
    """PUT /api/v1/pools sets configured pools (membership: all pool languages among the
    node's, required services ready) and dispatch follows them; an empty list returns to
    generated pools."""
    a = await peers.node(server, node_id="a", pairs=[("en", "de"), ("de", "en")])
    b = await peers.node(
        server, node_id="b", pairs=[("zh-cn", "en")], services={"asr": False, "nmt": True}
    )
    status, reply = await server.http("PUT", "/api/v1/pools", json_body=CONFIGURED)
    assert status == 200, reply
    assert reply == await server.get_json("/api/v1/pools")
    pools = {p["pool_id"]: p for p in reply}
    assert set(pools) == {10, 11, 12}
    assert pools[10]["name"] == "euro"
    assert sorted(pools[10]["languages"]) == ["de", "en"]
    assert pools[10]["required_services"] == ["asr"]
    assert pools[10]["members"] == [a.node_id]
    assert pools[11]["members"] == [b.node_id]
    assert pools[12]["members"] == []
    assert (await server.nodes())["b"]["pools"] == [11]

    session = await peers.session(server)
    await session.utter(0)
    answer = await session.wait_answer(0)
    assert answer["type"] == "translation_result" and answer["node_id"] == a.node_id

    status, reply = await server.http("PUT", "/api/v1/pools", json_body={"pools": []})
    assert status == 200
    assert {p["name"] for p in reply} == {"de-en", "en-zh-cn"}


async def test_simulate_is_a_dry_run(server: ServerProcess, peers: Peers) -> None:
    """/api/v1/simulate lists the pools, the candidate nodes and why others are excluded,
    without reserving anything."""
    serving = await peers.node(server, node_id="serving", behaviour=SILENT, max_concurrency=2)
    await peers.node(server, node_id="registering", ready=False)
    await peers.node(server, node_id="private", accept_public_jobs=False)
    await peers.node(server, node_id="elsewhere", pairs=[("fr", "it")])
    session = await peers.session(server)
    await session.utter(0)
    running = await serving.wait_assign()

    for _ in range(3):
        status, sim = await server.http("GET", "/api/v1/simulate?src_lang=EN&tgt_lang=de")
        assert status == 200, sim
    assert sim["candidates"] == ["serving"]
    assert isinstance(sim["pools"], list) and sim["pools"]
    assert all(isinstance(p, int) for p in sim["pools"])
    assert set(sim["excluded"]) == {"registering", "private", "elsewhere"}
    assert all(isinstance(reason, str) and reason for reason in sim["excluded"].values())
    stats = await server.stats()
    assert stats["reservations_held"] == 1
    assert (await server.nodes())["serving"]["reserved"] == 1
    await serving.answer(running)
    await session.wait_answer(0)
    await server.wait_idle()


@MEMORY_ONLY
async def test_drain_unknown_node_is_404(server: ServerProcess, peers: Peers) -> None:
    """POST /api/v1/nodes/{id}/drain for an unknown node is 404, and drains nothing else."""
    node = await peers.node(server)
    status, _ = await server.http("POST", "/api/v1/nodes/no-such-node/drain")
    assert status == 404
    assert (await server.nodes())[str(node.node_id)]["status"] == "ready"
    session = await peers.session(server)
    await session.utter(0)
    answer = await session.wait_answer(0)
    assert not is_error()(answer)
