"""Saturation (issue 14 items 1, 2, 5; protocol.md §3 ``OVERLOADED``), on both stores.

The server is forced into overload with a tiny bound: ``--overload-queue-age`` of a fraction of
a second, while a node with one slot holds a job and another waits.  Behaviour only: a new
utterance is refused at once with ``OVERLOADED`` and a retry hint, accepted ones are answered
once each and in order, and the client SDK's back-off resend gets the refused one through.
"""

from __future__ import annotations

import asyncio

import pytest

from switchboard.client import Overloaded, Session
from tests.e2e.conftest import Peers
from tests.e2e.harness import NodeBehaviour, ServerProcess, eventually, is_error, of_type

QUEUE_AGE = 0.2  # seconds: the bound this suite forces (not scaled: it is what is tested)
WAIT = 0.3  # longer than QUEUE_AGE: the waiting line's oldest job is past it


@pytest.mark.server(pending_timeout=10, overload_queue_age=QUEUE_AGE)
async def test_overloaded_refuses_new_utterances_at_once_and_answers_the_accepted(
    server: ServerProcess, peers: Peers
) -> None:
    node = await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(mode="none"))
    session = await peers.session(server)
    await session.utter(0)
    first = await node.wait_assign()
    await session.utter(1)  # waits for the one slot
    await server.wait_stats(lambda s: s["jobs_in_flight"] == 2, "the second one to wait")
    await asyncio.sleep(WAIT)
    await session.utter(2)
    refusal = await session.wait_for(is_error("OVERLOADED", utterance_index=2))
    details = refusal["details"]
    assert details["reason"] == "queue_age"
    assert isinstance(details["retry_after_ms"], int) and details["retry_after_ms"] >= 1
    assert "job_id" not in details  # refused, never accepted: outside the ordered stream
    await node.answer(first)
    second = await node.wait_assign(utterance_index=1)
    await node.answer(second)
    await session.utter(2)  # the line is empty again: accepted
    third = await node.wait_assign(utterance_index=2)
    await node.answer(third)
    await session.wait_for(of_type("translation_result", utterance_index=2))
    await session.sync()
    answered = [a for a in session.answers if a["type"] == "translation_result"]
    assert [a["utterance_index"] for a in answered] == [0, 1, 2]  # one each, in order
    assert [a for a in session.answers if a["type"] == "error"] == [refusal]
    assert [a["utterance_index"] for a in node.assigns] == [0, 1, 2]
    status, metrics = await server.http("GET", "/metrics")
    assert status == 200
    assert 'switchboard_shed_total{reason="queue_age"} 1.0' in metrics

    async def nothing_owed() -> bool:  # the store-call count comes back to zero when idle
        _, page = await server.http("GET", "/metrics")
        return "\nswitchboard_store_calls_owed 0.0\n" in page

    await eventually(nothing_owed, "no store call owed")


@pytest.mark.server(pending_timeout=10, overload_queue_age=QUEUE_AGE)
async def test_the_sdk_backs_off_and_resends_an_overloaded_utterance(
    server: ServerProcess, peers: Peers
) -> None:
    """The SDK resends the refused utterance after retry_after_ms (with jitter) and its
    handle resolves with the result; with no retries left, it raises Overloaded."""
    await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(delay=1.0))
    async with Session.connect(
        server.ws_url, src_lang="en", tgt_lang="de", overload_retries=8
    ) as session:
        running = await session.send(b"\0\0" * 160)
        waiting = await session.send(b"\0\0" * 160)
        await asyncio.sleep(WAIT)
        refused_then_resent = await session.send(b"\0\0" * 160)
        results = [await running, await waiting, await refused_then_resent]
        assert [r.utterance_index for r in results] == [0, 1, 2]
    async with Session.connect(
        server.ws_url, src_lang="en", tgt_lang="de", overload_retries=0
    ) as session:
        running = await session.send(b"\0\0" * 160)
        waiting = await session.send(b"\0\0" * 160)
        await asyncio.sleep(WAIT)
        with pytest.raises(Overloaded) as caught:
            await (await session.send(b"\0\0" * 160))
        assert caught.value.retry_after_ms is not None and caught.value.retry_after_ms >= 1
        assert caught.value.reason == "queue_age"
        await running
        await waiting
