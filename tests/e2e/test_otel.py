"""``serve --otel`` for real: the scheduler exports one OpenTelemetry span per utterance over
OTLP/HTTP, here to a collector the test runs on loopback (the ``[otel]`` extra is part of the
dev install; the seam itself and the flag's cost when off: tests/unit/test_otel.py)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from switchboard.tools.procs import child_env, free_port
from tests.e2e.conftest import Peers
from tests.e2e.harness import ServerProcess, scaled


class Collector:
    """An OTLP/HTTP trace receiver: every span it was sent, flattened."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "resource": resource,
                            "attributes": _attributes(span.attributes),
                            "status": span.status.code,
                        }
                    )
        self.arrived.set()
        return web.Response(body=b"", content_type="application/x-protobuf")


def _attributes(pairs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, kind) if kind else None
    return values


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    receiver = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield receiver, port
    await runner.cleanup()


async def test_one_span_per_utterance_reaches_an_otlp_collector(
    tmp_path: Path, peers: Peers, collector: tuple[Collector, int]
) -> None:
    receiver, port = collector
    env = child_env()
    env.update(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{port}/v1/traces",
        OTEL_BSP_SCHEDULE_DELAY="50",  # ms: export soon, not after the default 5 s
        OTEL_SERVICE_NAME="switchboard-under-test",
    )
    heartbeat = scaled(1.0)
    server = ServerProcess(
        ["--store", "memory", "--otel", "--heartbeat-interval", str(heartbeat)],
        log_path=tmp_path / "serve.log",
        heartbeat_interval=heartbeat,
        env=env,
    )
    await asyncio.to_thread(server.start)
    try:
        await peers.node(server)
        session = await peers.session(server)
        for index in (0, 1):
            await session.utter(index)
        answers = [await session.wait_answer(index) for index in (0, 1)]
        assert [a["type"] for a in answers] == ["translation_result"] * 2, answers

        async def both_spans() -> list[dict[str, Any]]:
            while True:
                spans = [s for s in receiver.spans if s["name"] == "utterance"]
                if len(spans) >= 2:
                    return spans
                receiver.arrived.clear()
                await receiver.arrived.wait()

        spans = await asyncio.wait_for(both_spans(), scaled(10.0))
    finally:
        await peers.close_all()
        await asyncio.to_thread(server.terminate)

    assert len(spans) == 2  # one per utterance, no more
    by_index = {s["attributes"]["switchboard.utterance_index"]: s for s in spans}
    for index, answer in enumerate(answers):
        span = by_index[index]
        assert span["resource"]["service.name"] == "switchboard-under-test"
        attributes = span["attributes"]
        assert attributes["switchboard.trace_id"] == answer["trace_id"]
        assert attributes["switchboard.job_id"] == answer["job_id"]
        assert attributes["switchboard.session_id"] == session.session_id
        assert attributes["switchboard.outcome"] == "result"
        assert (attributes["switchboard.src_lang"], attributes["switchboard.tgt_lang"]) == (
            "en",
            "de",
        )
