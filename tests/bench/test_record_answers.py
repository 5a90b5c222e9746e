"""The session recorder counts every kind of answer (lingua-parity §4 adds missing_result)."""

from __future__ import annotations

import json
from pathlib import Path

from switchboard.bench import trace
from switchboard.bench.record import SessionRecorder
from switchboard.protocol.messages import SessionInit
from switchboard.runtime.snapshot import SnapshotHolder


def test_missing_result_is_recorded_as_the_utterances_result(tmp_path: Path) -> None:
    """A missing_result is the utterance's one answer: recorded as a result with its job."""
    path = tmp_path / "trace.jsonl"
    recorder = SessionRecorder(str(path), snapshots=SnapshotHolder())
    recorder.opened("s-1", SessionInit("1", "test", "en", "de"))
    missing = {
        "type": "missing_result",
        "session_id": "s-1",
        "utterance_index": 4,
        "reason": "silence_detected",
        "created_at_ms": 1,
        "trace_id": "t",
        "job_id": "job-1",
        "node_id": "n-1",
    }
    recorder.pushed("s-1", json.dumps(missing).encode())
    recorder.close()
    (answer,) = [e for e in trace.read_trace(path) if isinstance(e, trace.Answered)]
    assert (answer.kind, answer.job_id, answer.index, answer.node_id) == (
        "result",
        "job-1",
        4,
        "n-1",
    )
