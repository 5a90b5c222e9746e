"""E3 end to end: ``serve --record`` and ``switchboard replay`` on real processes.

The shipped sample trace is replayed against a real ``switchboard serve --record`` (each design);
the input, what the clients saw and what the server recorded are all checked.  The server's
recording is then replayed again with the CLI (zero violations), and a doctored copy with one
answer duplicated is refused (exit 1).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.bench import replay, trace

SAMPLE = Path(__file__).parents[2] / "bench" / "traces" / "sample.jsonl"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "switchboard", "replay", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("design", ["snapshot", "global_lock"])
def test_the_sample_trace_replays_without_violation(tmp_path: Path, design: str) -> None:
    report = replay.run_replay(SAMPLE, speed=60, workdir=tmp_path, server_flags={"design": design})
    assert report.input == [] and report.client == [] and report.server == []
    assert report.sessions == 48 and report.utterances == 440
    # Every utterance is answered but those of clients that vanish with answers outstanding
    # (how many of theirs were answered first depends on timing).
    events = trace.read_trace(SAMPLE)
    vanished = {e.session for e in events if isinstance(e, trace.Closed) and e.how == "disconnect"}
    theirs = sum(isinstance(e, trace.Accepted) and e.session in vanished for e in events)
    assert 0 < theirs < 30
    assert report.answered >= report.utterances - theirs
    assert not report.failures
    recorded = trace.read_trace(tmp_path / "replay-recorded.jsonl")
    assert sum(isinstance(e, trace.Opened) for e in recorded) == 48
    assert sum(isinstance(e, trace.Accepted) for e in recorded) == 440


def test_record_replay_round_trip_and_a_doctored_trace(tmp_path: Path) -> None:
    """Record a replay, replay the recording with the CLI, then catch a duplicated answer."""
    replay.run_replay(SAMPLE, speed=60, workdir=tmp_path)
    recorded = tmp_path / "replay-recorded.jsonl"
    done = run_cli(str(recorded), "--speed", "60")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "0 violation(s)" in done.stdout

    lines = recorded.read_text().splitlines(keepends=True)
    first_answer = next(i for i, line in enumerate(lines) if '"event":"answer"' in line)
    doctored = tmp_path / "doctored.jsonl"
    duplicated = [*lines[: first_answer + 1], lines[first_answer], *lines[first_answer + 1 :]]
    doctored.write_text("".join(duplicated))
    done = run_cli(str(doctored), "--check-only")
    assert done.returncode == 1
    assert "[one answer] second answer" in done.stdout


def test_a_broken_trace_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"event":"header","started_at":"x","source":"t"}\nnot json\n')
    done = run_cli(str(broken), "--check-only")
    assert done.returncode == 2 and "broken.jsonl:2" in done.stderr
