"""A seconds-long E4 run (issue 10) on real processes and sockets: the report's shape, and
every utterance answered in every run, the failover's included.  No figure is judged: these
runs are far too short, and the machine too shared, to measure anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import RedisServer

LOAD_RUNS = ["same", "cross", "max x1", "max x2"]


@pytest.mark.redis
def test_e4_quick_run_answers_everything_and_reports_each_figure(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    out, md = tmp_path / "e4.json", tmp_path / "e4.md"
    args = [sys.executable, "-m", "switchboard", "bench", "--quick", "--scenarios", "e4"]
    args += ["--redis-url", redis_server.url, "--json", str(out), "--markdown", str(md)]
    args += ["--workdir", str(tmp_path / "work")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads(out.read_text())["runs"]
    assert [r["phase"] for r in rows] == [*LOAD_RUNS, "failover", "sizing"]

    for row in rows[:4]:
        assert row["scenario"] == "E4" and row["store"] == "redis"
        assert row["sent"] > 0 and row["results"] == row["sent"], row  # no error, none lost
        assert row["unanswered"] == 0 and row["out_of_order"] == 0, row
        assert set(row["external_latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
        assert row["redis_commands_per_job"] > 0 and row["redis_top_commands_per_job"]
        assert row["run_cores"] > 0 and row["other_cores"] >= 0  # what held the cores
    assert [r["instances"] for r in rows[:4]] == [2, 2, 1, 2]
    assert all(r["jobs_per_s"] > 0 for r in rows[2:4])

    failover = rows[4]
    assert failover["unanswered"] == 0, failover
    assert failover["results"] + sum(failover["errors"].values()) == failover["sent"] > 0
    assert failover["in_flight_at_kill"] > 0
    for key in ("nodes_left_view", "nodes_reregistered", "first_answer"):
        assert failover[f"failover_{key}_s"] is not None, failover
    # Each agent registered on A, then (after the kill) on B.
    assert all(len(ids) == 2 for ids in failover["registrations"]), failover

    sizing = rows[5]
    assert sizing["jobs_per_s_needed"] == 33_333
    assert sizing["instances"] >= sizing["instances_by_sessions"] == 10
    assert sizing["redis_shards"] >= 1

    text = md.read_text()
    assert "### E4: instances on one Redis (issue 10)" in text
    assert "cross-instance outside p50 − same-instance p50" in text
    assert "on paper: 100,000 sessions" in text
