"""Tenants and priority classes end to end (protocol.md §7 "Tenants", "Priorities"): a real
scheduler, one node with one slot answering only when the test says, so slots are scarce and
the order of ``job_assign`` frames is the waiting line's serving order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MEMORY_ONLY, Peers, ServerFactory, _without_namespace
from tests.e2e.harness import FakeNode, FakeSession, NodeBehaviour, ServerProcess, of_type

BY_HAND = NodeBehaviour(mode="none")


async def _scarce_node(server: ServerProcess, peers: Peers) -> FakeNode:
    return await peers.node(server, max_concurrency=1, behaviour=BY_HAND)


async def _open(server: ServerProcess, peers: Peers, **init: Any) -> FakeSession:
    """A session whose session_init carries ``init`` (tenant_id, features, token)."""
    session = await peers.raw_session(server)
    await session.init(**init)
    return session


async def _flood(session: FakeSession, count: int, **extra: Any) -> None:
    for index in range(count):
        await session.utter(index, **extra)
    await session.sync()  # every utterance is accepted (and waiting) before we go on


async def _serve_in_turn(node: FakeNode, sessions: dict[str, str], total: int) -> list[str]:
    """Answer the node's jobs one at a time, ``total`` of them; who each went to, in order."""
    order: list[str] = []
    for n in range(total):
        assign = (await node.wait_count(of_type("job_assign"), n + 1))[n]
        order.append(sessions[assign["session_id"]])
        await node.answer(assign)
    return order


@pytest.mark.server(pending_timeout=20)
async def test_a_flooding_tenant_does_not_starve_a_small_one(
    server: ServerProcess, peers: Peers
) -> None:
    """Tenant big queues eight utterances on a one-slot node, then tenant small two: the
    small tenant's are served alternately with big's, not after the flood, and every
    utterance of both is answered in its session's order."""
    node = await _scarce_node(server, peers)
    big = await _open(server, peers, tenant_id="big")
    small = await _open(server, peers, tenant_id="small")
    await _flood(big, 8)
    await node.wait_assign()
    await _flood(small, 2)
    order = await _serve_in_turn(node, {big.session_id: "big", small.session_id: "small"}, 10)
    assert order[:5] == ["big", "big", "small", "big", "small"]
    assert order[5:] == ["big"] * 5
    for session, count in ((big, 8), (small, 2)):
        answers = await session.wait_answers(count)
        assert [a["utterance_index"] for a in answers] == list(range(count))
        assert {a["type"] for a in answers} == {"translation_result"}


@pytest.mark.server(pending_timeout=20, priority_aging=0)
async def test_a_higher_priority_class_goes_first(server: ServerProcess, peers: Peers) -> None:
    """features.priority: with strict priority, a high session's utterances overtake a low
    session's waiting ones; everything is still answered."""
    node = await _scarce_node(server, peers)
    low = await _open(server, peers, features={"priority": "low"})
    high = await _open(server, peers, features={"priority": 1})
    await _flood(low, 4)
    await node.wait_assign()
    await _flood(high, 2)
    order = await _serve_in_turn(node, {low.session_id: "low", high.session_id: "high"}, 6)
    assert order == ["low", "high", "high", "low", "low", "low"]
    assert len(await low.wait_answers(4)) == 4 and len(await high.wait_answers(2)) == 2


def _config(tmp_path: Path) -> str:
    path = tmp_path / "tenants.toml"
    path.write_text(
        'session_token = "plain-token"\n'
        "[tenants.gold]\n"
        'weight = 2\ntoken = "gold-token"\n'
        "[tenants.bulk]\n"
        'token = "bulk-token"\npriority = "low"\nmax_priority = "low"\n'
    )
    return str(path)


async def test_a_tenant_token_makes_a_weighted_tenant(
    server_factory: ServerFactory, store_flags: list[str], peers: Peers, tmp_path: Path
) -> None:
    """[tenants.gold] weight 2 with its token: gold's sessions get two slots for every one of
    a weight-1 tenant's while both wait, whatever tenant_id gold's session names."""
    server = await server_factory(
        *_without_namespace(store_flags), config=_config(tmp_path), pending_timeout=20
    )
    node = await _scarce_node(server, peers)
    gold = await _open(server, peers, token="gold-token", tenant_id="other")
    other = await _open(server, peers, token="plain-token", tenant_id="other")
    await _flood(gold, 9)
    await node.wait_assign()
    await _flood(other, 9)
    order = await _serve_in_turn(node, {gold.session_id: "gold", other.session_id: "other"}, 10)
    assert Counter(order) == {"gold": 7, "other": 3}  # the first, then 2:1


@MEMORY_ONLY
async def test_tenant_tokens_and_bad_priorities_are_refused(
    server_factory: ServerFactory, store_flags: list[str], peers: Peers, tmp_path: Path
) -> None:
    """A session naming a tenant that has a token, without it, gets UNAUTHORIZED (and no
    token is ever echoed); a bad features.priority gets INVALID_MESSAGE; both then close."""
    server = await server_factory(*store_flags, config=_config(tmp_path))
    cases = [
        ({"token": "plain-token", "tenant_id": "gold"}, "UNAUTHORIZED"),
        ({"tenant_id": "bulk"}, "UNAUTHORIZED"),
        ({"token": "gold-token", "features": {"priority": "urgent"}}, "INVALID_MESSAGE"),
        ({"token": "gold-token", "features": {"priority": 10}}, "INVALID_MESSAGE"),
    ]
    for extra, code in cases:
        session = await peers.raw_session(server)
        await session.send(session.init_message(**extra))
        assert await session.wait_closed() == 1008, extra
        (error,) = session.frames
        assert (error["type"], error["code"]) == ("error", code), (extra, error)
        assert not any(t in error.raw for t in ("plain-token", "gold-token", "bulk-token"))
    await _open(server, peers, token="bulk-token", features={"priority": "high"})
    assert (await server.stats())["sessions"] == 1
