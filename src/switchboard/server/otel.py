"""One OpenTelemetry span per utterance, for ``--otel`` (docs/logging.md "Tracing").

Imported only when ``--otel`` is on (``runner._spans``): nothing else in the server imports
OpenTelemetry, so without the flag it is never loaded and costs nothing.  It needs the
``[otel]`` extra (``opentelemetry-sdk`` and the OTLP exporter); the exporter reads the standard
``OTEL_EXPORTER_OTLP_*`` variables and ``OTEL_SERVICE_NAME`` (default ``switchboard``).

A span runs from the utterance's acceptance to its answer (or the end of its session), is
named ``utterance`` and carries the job's ids as attributes; an answer that is an error marks
it as failed.  Spans are started and ended on the dispatch loop; the SDK's batch processor
exports them from its own thread.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace  # type: ignore[import-not-found, unused-ignore]

from switchboard.dispatch.jobs import Job
from switchboard.dispatch.spans import DROPPED


class OtelSpans:
    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        self._open: dict[str, Any] = {}  # job_id → its span, while the job lives

    @classmethod
    def from_environment(cls) -> OtelSpans:
        """An SDK tracer provider exporting over OTLP, configured by the ``OTEL_*`` variables."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # type: ignore[import-not-found, unused-ignore]
        from opentelemetry.sdk.trace import TracerProvider  # type: ignore[import-not-found, unused-ignore]
        from opentelemetry.sdk.trace.export import (  # type: ignore[import-not-found, unused-ignore]
            BatchSpanProcessor,
        )

        name = os.environ.get("OTEL_SERVICE_NAME", "switchboard")
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        return cls(trace.get_tracer("switchboard"))

    def started(self, job: Job) -> None:
        self._open[job.job_id] = self._tracer.start_span(
            "utterance",
            attributes={
                "switchboard.trace_id": job.trace_id,
                "switchboard.session_id": job.session.session_id,
                "switchboard.job_id": job.job_id,
                "switchboard.utterance_index": job.utterance_index,
                "switchboard.src_lang": job.src_lang,
                "switchboard.tgt_lang": job.tgt_lang,
            },
        )

    def ended(self, job: Job, outcome: str) -> None:
        span = self._open.pop(job.job_id, None)
        if span is None:
            return
        span.set_attribute("switchboard.outcome", outcome)
        span.set_attribute("switchboard.attempts", job.attempt)
        if outcome not in ("result", DROPPED):
            span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))
        span.end()
