"""The demo's verdict and its rendering (pure): what makes a run fail, and what it prints."""

from __future__ import annotations

from collections import Counter

import pytest
from rich.console import Console

from switchboard.demo.app import _failed
from switchboard.demo.load import Tally
from switchboard.demo.monitor import NodeRow, Reading, shed_counts
from switchboard.demo.view import Frame, plain_line, render, summary_lines

READING = Reading(
    nodes=(NodeRow("demo-node-1", "ready", 3, 4, "en→de"),),
    dispatched_total=10,
    scheduling=(0.0002, 0.0004, 0.001),
    ok=True,
)


def _tally(**changes: object) -> Tally:
    tally = Tally(sent=4, results=4, round_trips=[0.1, 0.2, 0.3, 0.4])
    for key, value in changes.items():
        setattr(tally, key, value)
    return tally


@pytest.mark.parametrize(
    ("tally", "exits", "failed"),
    [
        (_tally(), {"scheduler": 0}, False),
        (_tally(sent=5), {"scheduler": 0}, True),  # one utterance never answered
        (_tally(results=3, errors=Counter({"INTERNAL_ERROR": 1})), {"scheduler": 0}, True),
        (_tally(out_of_order=1), {"scheduler": 0}, True),
        (_tally(session_failures=Counter({"ConnectFailed": 1})), {"scheduler": 0}, True),
        (_tally(), {"scheduler": 0, "node-1": -9}, True),  # a child had to be killed
    ],
)
def test_what_fails_a_run(tally: Tally, exits: dict[str, int], failed: bool) -> None:
    assert _failed(tally, exits) is failed


def test_summary_reports_counts_rates_and_percentiles() -> None:
    tally = _tally(sent=5, results=4, errors=Counter({"NO_AVAILABLE_NODE": 1}))
    lines = summary_lines(tally, seconds=2.0, scheduling=READING.scheduling, exits={"node-1": 0})
    assert lines[0] == (
        "summary: sent 5, answered 5 (results 4, errors 1), lost 0; 2.5 answers/s over 2.0 s;"
        " round trip p50 200.0 ms p90 400.0 ms p99 400.0 ms;"
        " scheduling p50 0.200 ms p90 0.400 ms p99 1.000 ms"
    )
    assert lines[1] == "errors by code: NO_AVAILABLE_NODE=1"
    assert lines[2] == "shed by the scheduler (OVERLOADED, resent by the SDK): none"
    assert lines[4] == "exit statuses: node-1=0"


def test_a_saturated_run_may_end_overloaded_but_nothing_else() -> None:
    """--saturate: an utterance whose resends were all refused OVERLOADED is the expected
    outcome, not a failure; any other error, a loss or a disorder still is."""
    overloaded = _tally(results=3, errors=Counter({"OVERLOADED": 1}))
    assert _failed(overloaded, {"scheduler": 0}, saturate=True) is False
    assert _failed(overloaded, {"scheduler": 0}) is True
    other = _tally(results=3, errors=Counter({"NO_AVAILABLE_NODE": 1}))
    assert _failed(other, {"scheduler": 0}, saturate=True) is True


def test_sheds_are_read_from_metrics_and_shown() -> None:
    metrics = (
        "# TYPE switchboard_shed_total counter\n"
        'switchboard_shed_total{reason="loop_lag"} 0.0\n'
        'switchboard_shed_total{reason="queue_age"} 12.0\n'
    )
    shed = shed_counts(metrics)
    assert shed == {"loop_lag": 0, "queue_age": 12}
    tally = _tally()
    lines = summary_lines(tally, seconds=1.0, scheduling=READING.scheduling, exits={}, shed=shed)
    assert lines[2] == "shed by the scheduler (OVERLOADED, resent by the SDK): 12 (queue_age 12)"
    reading = Reading(nodes=READING.nodes, shed=shed, ok=True)
    frame = Frame(elapsed=1, duration=2, reading=reading, rate=None, tally=tally, open_sessions=1)
    assert " shed=12 " in plain_line(frame)


def test_plain_line_and_live_view() -> None:
    frame = Frame(
        elapsed=1.5, duration=20, reading=READING, rate=12.5, tally=_tally(), open_sessions=3
    )
    line = plain_line(frame)
    assert line.startswith("t=1.5s nodes_ready=1/1 sessions=3 sent=4 answered=4 errors=0")
    assert "dispatch/s=12.5" in line and "sched_p50=0.20ms" in line and "\x1b" not in line
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render(frame))
    screen = console.export_text()
    assert "demo-node-1" in screen and "████████·· 3/4" in screen
    assert "0.20 ms / 0.40 ms / 1.00 ms" in screen
