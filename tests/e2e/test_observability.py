"""Logs and metrics of a real scheduler process (protocol.md §7 "Logs", docs/metrics.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from switchboard.tools import fakenode
from switchboard.tools.prom import samples
from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import NodeBehaviour, ServerProcess, eventually

SILENT = NodeBehaviour(mode="none")
BASE_KEYS = ("ts", "level", "logger", "msg")


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line of the server's log, each parsed (a line that is not JSON fails the test)."""
    lines = server.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def steps_of(lines: list[dict[str, Any]], trace_id: str) -> list[str]:
    """The job steps logged for ``trace_id``, in order (``"job reserved"`` → ``reserved``)."""
    return [
        line["msg"].removeprefix("job ").partition(" (")[0]
        for line in lines
        if line.get("trace_id") == trace_id
    ]


@MEMORY_ONLY
@pytest.mark.server(
    log_format="json", log_jobs=True, job_timeout=0.5, pending_timeout=5.0, max_attempts=1
)
async def test_json_log_finds_every_step_of_a_job_by_its_trace_id(
    server: ServerProcess, peers: Peers
) -> None:
    """With --log-format json --log-jobs every line is one JSON object with ts, level,
    logger and msg, to the last one after SIGTERM; grepping a job's trace_id finds each step
    of its life, with its session, job and node ids: one job answered (ack, result), one that
    waited for the slot and then timed out (timeout, failover, cancel, its error answer)."""
    node = await peers.node(server, behaviour=SILENT, max_concurrency=1)
    session = await peers.session(server)
    await session.utter(0, trace_id="trace-served")
    first = await node.wait_assign()
    await node.send(fakenode.ack_message(first, node.node_id))
    await session.utter(1, trace_id="trace-timed-out")  # the one slot is taken: it waits

    async def waiting() -> bool:
        return "waiting" in steps_of(json_lines(server), "trace-timed-out")

    await eventually(waiting, "the second utterance waiting for the slot")
    await node.answer(first)
    assert (await session.wait_answer(0))["type"] == "translation_result"
    assert (await session.wait_answer(1))["code"] == "JOB_TIMEOUT"

    lines = json_lines(server)
    assert lines and all(all(key in line for key in BASE_KEYS) for line in lines)
    served = steps_of(lines, "trace-served")
    assert served == ["accepted", "reserved", "assigned", "acked", "result", "released", "answered"]
    timed_out = steps_of(lines, "trace-timed-out")
    for step in ("accepted", "waiting", "reserved", "assigned", "timeout", "failover"):
        assert step in timed_out, (step, timed_out)
    for step in ("cancel", "released", "answered"):
        assert step in timed_out, (step, timed_out)
    job_lines = [line for line in lines if line.get("trace_id") == "trace-served"]
    assert {line["session_id"] for line in job_lines} == {session.session_id}
    assert {line["job_id"] for line in job_lines} == {first["job_id"]}
    assigned = next(line for line in job_lines if line["msg"] == "job assigned")
    assert assigned["node_id"] == node.node_id
    assert assigned["level"] == "debug" and assigned["logger"] == "switchboard.jobs"
    access = [line for line in lines if line["logger"] == "switchboard.access"]
    assert any(line.get("path") == "/ws/session" and line["status"] == 101 for line in access)
    await asyncio.to_thread(server.terminate)
    stopped = json_lines(server)  # to the last line: shutdown, and the WebSockets' ends
    assert stopped[-1]["msg"] == "switchboard stopped"
    assert any(line["msg"].startswith("websocket closed") for line in stopped)


@MEMORY_ONLY
@pytest.mark.server(log_format="json")
async def test_job_steps_are_off_by_default(server: ServerProcess, peers: Peers) -> None:
    """Without --log-jobs (at the default level) no job step is logged, but HTTP requests
    are, with their path and status (the access log)."""
    await peers.node(server)
    session = await peers.session(server)
    await session.utter(0, trace_id="trace-quiet")
    await session.wait_answer(0)
    await server.http("GET", "/health")
    lines = json_lines(server)
    assert not [line for line in lines if line.get("trace_id") == "trace-quiet"]
    assert any(line.get("path") == "/health" and line.get("status") == 200 for line in lines)


def _series(text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name → the label sets it has on the page."""
    found: dict[str, list[dict[str, str]]] = {}
    for sample in samples(text):
        found.setdefault(sample.name, []).append(dict(sample.labels))
    return found


def _value(text: str, name: str, **labels: str) -> float:
    for sample in samples(text):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise AssertionError(f"{name}{labels} not on the page")


async def _metrics(server: ServerProcess) -> tuple[str, str]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as resp:
        assert resp.status == 200
        return resp.headers["Content-Type"], await resp.text()


async def test_metrics_after_real_traffic(server: ServerProcess, peers: Peers) -> None:
    """/metrics is served with Prometheus' content type; after an answered utterance and a
    refused one it has the utterance latency by outcome, the node's job time, rejections by
    code, nodes by status, ready nodes per pair, GPU use, process metrics and build info; once
    the node leaves, its node_id series are gone."""
    node = await peers.node(server)
    session = await peers.session(server)
    await session.utter(0)
    await session.wait_answer(0)
    await session.utter(1, session_id="not-this-session")  # refused: INVALID_SESSION
    await session.wait_answer(1)

    content_type, text = await _metrics(server)
    assert content_type == CONTENT_TYPE_LATEST
    assert _value(text, "switchboard_utterance_latency_seconds_count", outcome="result") == 1
    assert _value(text, "switchboard_node_job_seconds_count", node_id=str(node.node_id)) == 1
    assert _value(text, "switchboard_rejections_total", code="INVALID_SESSION") == 1
    assert _value(text, "switchboard_answers_total", kind="result") == 1
    assert _value(text, "switchboard_reservations_total", outcome="reserved") == 1
    assert _value(text, "switchboard_dispatch_latency_seconds_count") == 1
    assert _value(text, "switchboard_nodes_by_status", status="ready") == 1
    assert _value(text, "switchboard_pair_ready_nodes", src="en", tgt="de") == 1
    assert _value(text, "switchboard_node_gpu_percent", node_id=str(node.node_id)) == 30
    assert _value(text, "switchboard_store_up") == 1
    assert _value(text, "switchboard_jobs_in_flight") == 0
    assert _value(text, "process_cpu_seconds_total") > 0
    build = _series(text)["switchboard_build_info"]
    assert build[0]["version"] and build[0]["python"].startswith("3.")

    await node.close()
    await server.wait_stats(lambda stats: stats["nodes"]["total"] == 0, "the node gone")
    _, text = await _metrics(server)
    series = _series(text)
    for name in ("switchboard_node_job_seconds_count", "switchboard_node_gpu_percent"):
        assert not [labels for labels in series.get(name, []) if "node_id" in labels], name
    assert _value(text, "switchboard_nodes_by_status", status="ready") == 0


@MEMORY_ONLY
@pytest.mark.server(session_token="s3cret", max_frames_per_second=5, frame_burst=5)
async def test_refused_connections_are_counted_by_code(server: ServerProcess) -> None:
    """Connections refused at the handshake (a wrong token, a bad first frame) and one cut for
    its frame rate are counted by code."""
    url = server.ws_url + "/ws/session"
    init = {"type": "session_init", "client_version": "1", "platform": "t"}
    init |= {"src_lang": "en", "tgt_lang": "de"}
    async with aiohttp.ClientSession() as http:
        for first in ({**init, "token": "wrong"}, {"type": "client_heartbeat"}):
            async with http.ws_connect(url) as ws:
                await ws.send_str(json.dumps(first))
                refusal = await ws.receive_json()
                assert refusal["type"] == "error", refusal
        async with http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({**init, "token": "s3cret"}))
            ack = await ws.receive_json()
            beat = {"type": "client_heartbeat", "session_id": ack["session_id"], "timestamp": 1}
            for _ in range(20):  # far over 5 frames a second, burst 5
                await ws.send_str(json.dumps(beat))
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break

    _, text = await _metrics(server)
    assert _value(text, "switchboard_refused_connections_total", code="UNAUTHORIZED") == 1
    assert _value(text, "switchboard_refused_connections_total", code="INVALID_MESSAGE") == 1
    assert _value(text, "switchboard_refused_connections_total", code="RATE_LIMITED") == 1
