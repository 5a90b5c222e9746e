"""The tools' fake node: its frames and conduct (pure), and its options against a real
scheduler process (a bare job_result, partials, failures, counts)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.agent.pseudo import LatencyModel
from switchboard.tools.fakenode import (
    Conduct,
    FakeNode,
    heartbeat_message,
    register_message,
    result_message,
)
from tests.e2e.harness import FakeSession, ServerProcess, of_type, scaled

ASSIGN = {"job_id": "j1", "attempt_id": 2, "session_id": "s1", "utterance_index": 4}
ASSIGN |= {"trace_id": "t1"}


def test_failed_result_names_the_attempt_and_defaults_to_asr_failed() -> None:
    """success:false carries the attempt's identity and ASR_FAILED unless told otherwise."""
    failed = result_message(ASSIGN, "n1", success=False)
    assert failed["error"] == {"code": "ASR_FAILED"}
    assert {k: failed[k] for k in ("job_id", "attempt_id", "utterance_index")} == {
        "job_id": "j1",
        "attempt_id": 2,
        "utterance_index": 4,
    }
    assert "text_asr" not in failed
    ok = result_message(ASSIGN, "n1", text_translated="hallo", processing_time_ms=3)
    assert ok["success"] and ok["text_translated"] == "hallo" and ok["processing_time_ms"] == 3


def test_register_leaves_pairs_to_the_models_when_asked() -> None:
    """pairs_from_models drops language_capabilities; otherwise the pairs are listed."""
    listed = register_message("n1", [("en", "de")], version="x", max_concurrency=2)
    assert listed["language_capabilities"]["supported_language_pairs"] == [
        {"src": "en", "tgt": "de"}
    ]
    assert listed["max_concurrency"] == 2 and "token" not in listed
    derived = register_message(None, [("en", "de")], version="x", pairs_from_models=True)
    assert "language_capabilities" not in derived and "node_id" not in derived


def test_heartbeat_reports_running_jobs_and_readiness() -> None:
    beat = heartbeat_message("n1", running_jobs=3, services={"asr": False})
    assert beat["resource_usage"]["running_jobs"] == 3
    assert beat["capability_by_type"] == [{"type": "asr", "ready": False}]


def test_conduct_delay_lateness_model_and_jitter() -> None:
    """late_by wins over everything; a model draws as the stand-in backend does; otherwise
    latency × U[1 − jitter, 1 + jitter)."""
    assert Conduct(latency=0.2, late_by=1.5).delay(random.Random(0)) == 1.5
    model = LatencyModel(0.1, 0.4)
    assert Conduct(model=model).delay(random.Random(7)) == model.draw(random.Random(7))
    assert Conduct(latency=0.2, jitter=0).delay(random.Random(0)) == pytest.approx(0.2)
    rng = random.Random(1)
    draws = [Conduct(latency=0.2, jitter=0.5).delay(rng) for _ in range(200)]
    assert all(0.1 <= d < 0.3 for d in draws) and max(draws) - min(draws) > 0.1


def test_no_failure_rate_draws_nothing() -> None:
    """A healthy node leaves the random sequence alone (seeded runs stay reproducible)."""
    rng = random.Random(3)
    assert not Conduct().fails(rng)
    assert rng.random() == random.Random(3).random()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    args = ["--store", "memory", "--heartbeat-interval", str(scaled(1.0))]
    process = ServerProcess(args, log_path=tmp_path / "serve.log")
    await asyncio.to_thread(process.start)
    yield process
    await asyncio.to_thread(process.terminate)


async def _one_answer(server: ServerProcess, conduct: Conduct) -> tuple[FakeNode, FakeSession]:
    node = FakeNode(
        server.ws_url,
        "fake-1",
        pairs=[("en", "de")],
        capacity=2,
        heartbeat_every=scaled(0.3),
        conduct=conduct,
    )
    node.start()
    async with asyncio.timeout(scaled(5)):
        await node.registered.wait()
    await server.wait_stats(lambda s: s["nodes"]["ready"] == 1, "node ready")
    session = FakeSession(server.ws_url + "/ws/session")
    await session.connect()
    await session.init()
    await session.utter(0)
    await session.wait_answers(1)
    return node, session


async def test_bare_result_with_partials_is_relayed(server: ServerProcess) -> None:
    """No job_ack, two partials, then the result: the session gets both partials and the
    translation, and the node counts what it got and sent."""
    conduct = Conduct(acks=False, partials=("hel", "hello"), latency=0.01, jitter=0)
    node, session = await _one_answer(server, conduct)
    try:
        assert [f["text"] for f in session.matching(of_type("asr_partial"))] == ["hel", "hello"]
        assert session.answers[0]["type"] == "translation_result"
        assert session.answers[0]["text_translated"] == "fake-1"
        counts = node.counts
        assert (counts.answers, counts.partials, counts.failures) == (1, 2, 0)
        assert counts.received["job_assign"] == 1 and counts.peak_running == 1
    finally:
        await session.close()
        await node.stop()


async def test_failing_node_answers_with_its_error(server: ServerProcess) -> None:
    """failure_rate 1: the session gets the node's error code; the node counts a failure."""
    conduct = Conduct(failure_rate=1.0, error={"code": "MT_FAILED", "message": "no model"})
    node, session = await _one_answer(server, conduct)
    try:
        answer = session.answers[0]
        assert answer["type"] == "error" and answer["code"] == "MT_FAILED", answer
        assert (node.counts.answers, node.counts.failures) == (0, 1)
    finally:
        await session.close()
        await node.stop()
