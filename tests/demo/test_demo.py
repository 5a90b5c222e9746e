"""`switchboard demo` end to end: real scheduler and node processes, SDK sessions, non-TTY."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.agent.support import scaled
from tests.e2e.harness import clean_env

SUMMARY = re.compile(
    r"summary: sent (?P<sent>\d+), answered (?P<answered>\d+) \(results (?P<results>\d+),"
    r" errors (?P<errors>\d+)\), lost (?P<lost>\d+); (?P<rate>[\d.]+) answers/s over [\d.]+ s;"
    r" round trip p50 (?P<rtt50>[\d.]+) ms p90 [\d.]+ ms p99 (?P<rtt99>[\d.]+) ms;"
    r" scheduling p50 (?P<s50>[\d.]+) ms p90 [\d.]+ ms p99 (?P<s99>[\d.]+) ms"
)
ROOT = Path(__file__).resolve().parents[2]
CHILD = re.compile(r"^demo: (?:scheduler|node \S+) pid (?P<pid>\d+)", re.MULTILINE)


def _demo(*args: str, script: bool = False) -> subprocess.Popen[str]:
    """The demo as a process: ``script`` runs it through the README's ./scripts/demo (set-up
    included), otherwise ``python -m switchboard demo``."""
    command = (
        ["bash", str(ROOT / "scripts/demo")]
        if script
        else [sys.executable, "-m", "switchboard", "demo"]
    )
    return subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )


def _assert_gone(pids: list[int]) -> None:
    """Nothing the demo started is still running (zombies would mean it never reaped them)."""
    alive = []
    for pid in pids:
        try:
            status = psutil.Process(pid).status()
        except psutil.NoSuchProcess:
            continue
        alive.append((pid, status))
    assert alive == [], f"children left behind: {alive}"


async def test_demo_runs_and_answers_every_utterance() -> None:
    """./scripts/demo (the Quick start) for 3 s, 2 nodes, 5 sessions, output not a terminal:
    periodic plain lines, a summary with every utterance answered and none lost, exit 0,
    every child process gone."""
    proc = _demo("--duration", "3", "--nodes", "2", "--sessions", "5", script=True)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=scaled(120))
    assert proc.returncode == 0, out
    pids = [int(m["pid"]) for m in CHILD.finditer(out)]
    assert len(pids) == 3, out
    _assert_gone(pids)
    assert "\x1b[" not in out, "no terminal escapes when stdout is not a terminal"
    assert len(re.findall(r"^t=\d", out, re.MULTILINE)) >= 3, out
    match = SUMMARY.search(out)
    assert match is not None, out
    sent, answered = int(match["sent"]), int(match["answered"])
    assert sent > 0 and answered == sent == int(match["results"]), out
    assert match["errors"] == "0" and match["lost"] == "0"
    assert float(match["rtt50"]) > 0 and float(match["s50"]) > 0
    assert "errors by code: none" in out
    assert "exit statuses: scheduler=0, node-1=0, node-2=0" in out


async def test_demo_in_rooms_delivers_every_utterance_to_every_listener() -> None:
    """--rooms: 5 sessions in a room of three and one of two, each utterance fanned out to the
    other members' languages; every delivery made, none lost, none out of order, exit 0."""
    proc = _demo("--rooms", "--duration", "3", "--nodes", "2", "--sessions", "5")
    out, _ = await asyncio.to_thread(proc.communicate, timeout=scaled(120))
    assert proc.returncode == 0, out
    assert "counts are per listener" in out
    match = SUMMARY.search(out)
    assert match is not None, out
    sent, answered = int(match["sent"]), int(match["answered"])
    assert sent > 0 and answered == sent == int(match["results"]), out
    assert match["lost"] == "0" and "answers out of order: 0" in out


async def test_saturated_demo_sheds_and_still_answers_every_utterance() -> None:
    """--saturate: more speech than one node serves; the scheduler sheds (OVERLOADED, counted
    in the view), the SDK resends, and still every utterance is answered, in order, none lost,
    exit 0."""
    proc = _demo("--saturate", "--duration", "3", "--nodes", "1", "--sessions", "20")
    out, _ = await asyncio.to_thread(proc.communicate, timeout=scaled(120))
    assert proc.returncode == 0, out
    match = SUMMARY.search(out)
    assert match is not None, out
    assert int(match["sent"]) > 0 and match["lost"] == "0", out
    assert "answers out of order: 0" in out
    shed = re.search(r"shed by the scheduler \(OVERLOADED, resent by the SDK\): (\d+)", out)
    assert shed is not None and int(shed[1]) > 0, out
    errors = re.search(r"errors by code: (.*)", out)
    assert errors is not None and re.fullmatch(r"none|OVERLOADED=\d+", errors[1]), out


async def test_ctrl_c_ends_the_demo_cleanly() -> None:
    """SIGINT mid-run: sessions stop, nodes and scheduler are stopped, the summary is
    printed, nothing lost, nothing left running."""
    proc = _demo("--duration", "60", "--nodes", "1", "--sessions", "3")
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:  # wait until load is flowing
        line = await asyncio.to_thread(proc.stdout.readline)
        lines.append(line)
        if re.search(r"answered=[1-9]", line) or not line:
            break
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    rest, _ = await asyncio.to_thread(proc.communicate, timeout=scaled(30))
    out = "".join(lines) + rest
    assert time.monotonic() - started < scaled(15), out
    assert proc.returncode == 0, out
    match = SUMMARY.search(out)
    assert match is not None and match["lost"] == "0" and int(match["sent"]) > 0, out
    _assert_gone([int(m["pid"]) for m in CHILD.finditer(out)])


async def test_streaming_demo_answers_every_streamed_utterance() -> None:
    """--streaming: the sessions stream their segments as audio_chunk frames; every segment
    is cut, answered, in order, none lost, exit 0."""
    proc = _demo("--duration", "3", "--nodes", "1", "--sessions", "3", "--streaming")
    out, _ = await asyncio.to_thread(proc.communicate, timeout=scaled(120))
    assert proc.returncode == 0, out
    match = SUMMARY.search(out)
    assert match is not None, out
    sent, answered = int(match["sent"]), int(match["answered"])
    assert sent > 0 and answered == sent == int(match["results"]), out
    assert match["lost"] == "0" and "errors by code: none" in out
    _assert_gone([int(m["pid"]) for m in CHILD.finditer(out)])
