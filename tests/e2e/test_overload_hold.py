"""The SDK backs off as a whole session after ``OVERLOADED`` (issue 14 item 5; protocol.md §3
"Saturation", client.md "Back-off"), against the real server on both stores.

Overload is forced as in test_overload.py: a node with one slot that answers only by hand
holds one job while another waits past a tiny ``--overload-queue-age``.  Behaviour only: while
the session holds, nothing reaches the scheduler; the held utterances then go out in their
order, the refused one first; each handle resolves once.
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from switchboard.bench.fakes import FakeSession as BenchSession
from switchboard.bench.fakes import Tally, audio_b64
from switchboard.client import Overloaded, PendingTranslation, Session, SessionClosed
from tests.e2e.conftest import Peers
from tests.e2e.harness import FakeNode, NodeBehaviour, ServerProcess, eventually

QUEUE_AGE = 0.2  # seconds: the bound this suite forces (not scaled: it is what is tested)
WAIT = 0.3  # longer than QUEUE_AGE: the waiting line's oldest job is past it
AUDIO = b"\0\0" * 160


async def _overloaded(
    server: ServerProcess, peers: Peers, session: Session
) -> tuple[FakeNode, list[PendingTranslation]]:
    """Utterance 0 runs on the one slot, 1 waits past the bound: the scheduler sheds."""
    node = await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(mode="none"))
    handles = [await session.send(AUDIO)]
    await node.wait_assign(utterance_index=0)
    handles.append(await session.send(AUDIO))
    await server.wait_stats(lambda s: s["jobs_in_flight"] == 2, "the second one to wait")
    await asyncio.sleep(WAIT)
    return node, handles


async def _shed(server: ServerProcess) -> float:
    _, metrics = await server.http("GET", "/metrics")
    for line in metrics.splitlines():
        if line.startswith('switchboard_shed_total{reason="queue_age"}'):
            return float(line.split()[-1])
    return 0.0


async def _held(session: Session, count: int) -> None:
    async def probe() -> bool:
        return session.held == count

    await eventually(probe, f"{count} utterance(s) held")


@pytest.mark.server(pending_timeout=10, overload_queue_age=QUEUE_AGE)
async def test_a_refusal_holds_the_whole_session_and_the_held_go_out_in_order(
    server: ServerProcess, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused, utterance 2 is held, and 3 and 4, sent after it, are held too: the scheduler
    sees none of them (one refusal counted, two jobs in flight).  Once the line is empty and
    the back-off has passed, 2, 3, 4 reach the node in that order and every handle resolves
    once with its own answer."""
    caplog.set_level(logging.WARNING, logger="switchboard.client")
    async with Session.connect(
        server.ws_url, src_lang="en", tgt_lang="de", overload_retries=8
    ) as session:
        node, handles = await _overloaded(server, peers, session)
        refused = await session.send(AUDIO)
        await _held(session, 1)
        later = [await session.send(AUDIO) for _ in range(2)]
        assert session.held == 3 and session.pending == 5
        assert await _shed(server) == 1.0  # 3 and 4 were not sent: nothing else refused
        assert (await server.stats())["jobs_in_flight"] == 2
        for index in (0, 1, 2, 3, 4):
            await node.answer(await node.wait_assign(utterance_index=index))
        results = [await h for h in (*handles, refused, *later)]
        assert [r.utterance_index for r in results] == [0, 1, 2, 3, 4]
        assert [r.text_asr.split()[1] for r in results] == ["0", "1", "2", "3", "4"]
        assert [a["utterance_index"] for a in node.assigns] == [0, 1, 2, 3, 4]
        assert refused.resends >= 1 and session.held == 0 and session.pending == 0
    assert not [r for r in caplog.records if "unknown utterance" in r.getMessage()]


@pytest.mark.server(pending_timeout=10, overload_queue_age=QUEUE_AGE)
async def test_no_retries_means_no_hold(server: ServerProcess, peers: Peers) -> None:
    """With ``overload_retries=0`` a refused utterance raises at once and the next one is sent
    at once (and refused too, the scheduler still saturated): nothing is ever held."""
    async with Session.connect(
        server.ws_url, src_lang="en", tgt_lang="de", overload_retries=0
    ) as session:
        node, handles = await _overloaded(server, peers, session)
        for _ in range(2):
            handle = await session.send(AUDIO)
            assert session.held == 0
            with pytest.raises(Overloaded):
                await handle
        assert await _shed(server) == 2.0
        for index in (0, 1):
            await node.answer(await node.wait_assign(utterance_index=index))
        assert [(await h).utterance_index for h in handles] == [0, 1]


@pytest.mark.server(pending_timeout=10, overload_queue_age=QUEUE_AGE)
async def test_retries_used_up_raise_overloaded_in_order(
    server: ServerProcess, peers: Peers
) -> None:
    """The line never empties: the refused utterance and the one held behind it are each
    resent once (``overload_retries=1``), refused again, and raise ``Overloaded``, in order;
    the accepted ones are answered once the node answers."""
    async with Session.connect(
        server.ws_url, src_lang="en", tgt_lang="de", overload_retries=1
    ) as session:
        node, handles = await _overloaded(server, peers, session)
        refused = await session.send(AUDIO)
        await _held(session, 1)
        behind = await session.send(AUDIO)
        raised: list[int] = []
        for handle in (refused, behind):
            with pytest.raises(Overloaded):
                await handle
            raised.append(handle.utterance_index)
            assert handle.resends == 1
        assert raised == [2, 3]
        assert await _shed(server) == 4.0  # each sent twice, never while held
        for index in (0, 1):
            await node.answer(await node.wait_assign(utterance_index=index))
        assert [(await h).utterance_index for h in handles] == [0, 1]
        assert [a["utterance_index"] for a in node.assigns] == [0, 1]


@pytest.mark.server(pending_timeout=10, overload_queue_age=QUEUE_AGE)
async def test_closing_while_held_fails_each_held_handle_once(
    server: ServerProcess, peers: Peers
) -> None:
    """Closed during the back-off: the held utterances were never sent, and their handles
    raise ``SessionClosed`` like every other unanswered one."""
    session = await Session.connect(server.ws_url, src_lang="en", tgt_lang="de")
    _, handles = await _overloaded(server, peers, session)
    refused = await session.send(AUDIO)
    await _held(session, 1)
    behind = await session.send(AUDIO)
    await session.close()
    for handle in (*handles, refused, behind):
        assert handle.done()
        with pytest.raises(SessionClosed):
            await handle
    assert session.held == 0 and session.pending == 0
    assert await _shed(server) == 1.0


@pytest.mark.server(pending_timeout=10, overload_queue_age=QUEUE_AGE)
async def test_the_e5_bench_session_that_follows_the_hint_holds_and_keeps_order(
    server: ServerProcess, peers: Peers
) -> None:
    """The E5 bench's hint-following session (``--e5-clients hint``) backs off as the SDK
    does: refused, it writes nothing until the back-off has passed, then the refused utterance
    and the one asked for meanwhile, in order; each is answered once."""
    node = await peers.node(server, max_concurrency=1, behaviour=NodeBehaviour(mode="none"))
    tally = Tally()
    session = BenchSession(("en", "de"), tally=tally, audio=audio_b64(320), hint=random.Random(1))
    await session.connect(server.host, server.port)
    session.send()
    await node.wait_assign(utterance_index=0)
    session.send()
    await server.wait_stats(lambda s: s["jobs_in_flight"] == 2, "the second one to wait")
    await asyncio.sleep(WAIT)
    session.send()  # 2: refused

    async def refused() -> bool:
        return session.held == 1

    await eventually(refused, "utterance 2 held")
    session.send()  # 3: asked for while held
    assert session.held == 2 and session.owed == 4
    assert tally.deferred == 1 and tally.sent == 3 and tally.refusals == 1
    assert await _shed(server) == 1.0
    for index in (0, 1, 2, 3):
        await node.answer(await node.wait_assign(utterance_index=index))

    async def answered() -> bool:
        return session.owed == 0

    await eventually(answered, "every utterance answered")
    assert [a["utterance_index"] for a in node.assigns] == [0, 1, 2, 3]
    assert tally.results == 4 and tally.sent == 4 and tally.asked == 4
    assert tally.resends >= 1 and tally.refusals == tally.resends and tally.given_up == 0
    assert tally.sent_while_held == 0 and tally.stray == 0 and tally.out_of_order == 0
    assert len(tally.first_rtt) == 8  # one (first ask, wait) pair per accepted utterance
    session.abandon()
