"""``JobSpans``: where a tracer may hear of each utterance's start and end (``--otel``).

The dispatch core calls a ``JobSpans`` only when one was handed to it; with none (the default)
each hook point costs one ``is None``.  ``server/otel.py`` is the OpenTelemetry one, imported
only when ``--otel`` is on, so a scheduler without it never imports OpenTelemetry at all.
"""

from __future__ import annotations

from typing import Protocol

from switchboard.dispatch.jobs import Job

DROPPED = "dropped"  # the session ended before the answer: no answer was sent


class JobSpans(Protocol):
    def started(self, job: Job) -> None:
        """``job`` was accepted (its utterance read at ``job.received_at``)."""

    def ended(self, job: Job, outcome: str) -> None:
        """``job`` was answered (``outcome``: ``result`` or the error code) or
        :data:`DROPPED`."""
