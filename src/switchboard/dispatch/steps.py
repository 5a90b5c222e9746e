"""One DEBUG line per step of a job's life, findable by its ``trace_id`` (docs/logging.md).

The steps: ``accepted``, ``waiting``, ``reserved``, ``assigned``, ``acked``, ``result``,
``answered``, ``failover``, ``timeout``, ``cancel``, ``released``.  They go to the
``switchboard.jobs`` logger, which ``--log-jobs`` (or ``--log-level debug``) turns on.

This is the hot path: callers test a flag they read once from :func:`enabled` when they were
built, so at the default level a step costs one attribute load and a branch, and the record,
its ``extra`` mapping and its message are never made.
"""

from __future__ import annotations

import logging

from switchboard.dispatch.jobs import Job

log = logging.getLogger("switchboard.jobs")


def enabled() -> bool:
    """Whether step lines are wanted; read once by the core and the driver at start-up."""
    return log.isEnabledFor(logging.DEBUG)


def step(job: Job, what: str, node_id: str | None = None, detail: str = "") -> None:
    """Log ``what`` happened to ``job``; the ids travel as record fields (``logs.py``)."""
    log.debug(
        "job %s%s",
        what,
        f" ({detail})" if detail else "",
        extra={
            "trace_id": job.trace_id,
            "session_id": job.session.session_id,
            "job_id": job.job_id,
            "node_id": node_id if node_id is not None else job.node_id,
            "utterance_index": job.utterance_index,
            "attempt": job.attempt,
        },
    )
