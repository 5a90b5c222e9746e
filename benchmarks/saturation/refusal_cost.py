"""What one refusal costs the scheduler against one accepted job (issue 14's floor).

A saturated scheduler must still read every new utterance and write its ``OVERLOADED`` answer,
so a refusal is not free: if it costs ``r`` times an accepted job (every job here: the
utterance read, ``job_assign`` written, the node's ``job_result`` read, the result written),
then with ``k`` × capacity offered by clients that do not back off, one core can serve at most
``(1 - k·r) / (1 - r)`` of its capacity (accepted jobs ``a`` and refusals ``k - a`` share the
core: ``a + r·(k - a) ≤ 1``).  This script measures ``r``.

One scheduler process (``switchboard serve``, embedded store) and one load process (this one:
``--nodes`` instant fake nodes, ``--sessions`` sessions, an open paced load of ``--rate``
utterances/s for ``--seconds``).  Mode ``accept``: the scheduler as it ships, shedding off, so
every utterance is placed.  Mode ``refuse``: the same scheduler with its saturation verdict
forced on (``Overload.overloaded`` always answers ``loop_lag``), so every utterance takes the
real refusal path (decode, admission, the ``OVERLOADED`` frame) and nothing else.  The figure
is the scheduler's CPU (``/proc/<pid>/stat``, user + system) over the load and its drain,
less its idle CPU, per utterance.

    .venv/bin/python benchmarks/saturation/refusal_cost.py --rates 2000,6000 --repeats 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time

from switchboard.agent.pseudo import LatencyModel
from switchboard.bench.fakes import FakeNode, FakeSession, Tally, audio_b64
from switchboard.tools.procs import free_port

_SERVE = """
import sys
from switchboard.dispatch import overload
from switchboard.protocol.codes import ShedReason
if sys.argv.pop(1) == "refuse":
    overload.Overload.overloaded = lambda self, now: ShedReason.LOOP_LAG
from switchboard.cli import main
sys.argv[0] = "switchboard"
main()
"""
PAIRS = [("zh", "en"), ("en", "zh")]


def _load() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def _start(mode: str, flags: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _SERVE, mode, *flags])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the scheduler did not start")


async def one_run(mode: str, rate: float, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    flags = ["serve", "--port", str(port), "--log-level", "warning"]
    flags += ["--max-connections-per-address", "0", "--max-frames-per-second", "0"]
    if mode == "accept":  # every utterance placed: no shedding, whatever the machine does
        flags += ["--overload-loop-lag", "0", "--overload-store-backlog", "0"]
    proc = _start(mode, flags)
    try:
        await _wait_port(port)
        tally = Tally()
        nodes = [
            FakeNode(
                f"node-{i}",
                PAIRS,
                max_concurrency=64,
                latency=LatencyModel(0.0, 0.0),
                tally=tally,
                rng=random.Random(i),
            )
            for i in range(args.nodes)
        ]
        for node in nodes:
            await node.connect("127.0.0.1", port)
        audio = audio_b64(args.audio_bytes)
        sessions = [FakeSession(PAIRS[0], tally=tally, audio=audio) for _ in range(args.sessions)]
        for session in sessions:
            await session.connect("127.0.0.1", port)
        await asyncio.sleep(1.0)
        idle0 = cpu_seconds(proc.pid)
        await asyncio.sleep(1.0)
        idle = cpu_seconds(proc.pid) - idle0  # per second
        total = int(rate * args.seconds)
        start_cpu, start = cpu_seconds(proc.pid), time.perf_counter()
        behind = 0.0
        for k in range(total):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
                if k % 32 == 0:
                    await asyncio.sleep(0)  # read answers between bursts
            sessions[k % len(sessions)].send()
        for _ in range(200):  # the drain: every answer in
            if tally.results + sum(tally.rejected.values()) + sum(tally.errors.values()) >= total:
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - start
        used = cpu_seconds(proc.pid) - start_cpu - idle * wall
        answered = tally.results + sum(tally.rejected.values()) + sum(tally.errors.values())
        return {
            "mode": mode,
            "rate": rate,
            "sent": tally.sent,
            "answered": answered,
            "results": tally.results,
            "refused": dict(tally.rejected),
            "errors": dict(tally.errors),
            "server_cpu_s": round(used, 3),
            "server_cpu_us_per_utterance": round(used / max(tally.sent, 1) * 1e6, 1),
            "generator_behind_ms": round(behind * 1e3, 1),
            "load": _load(),
        }
    finally:
        proc.terminate()
        proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="2000,6000", help="utterances/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--audio-bytes", type=int, default=1024)
    parser.add_argument("--json", default=None, help="write every run here")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        for rate in (float(r) for r in args.rates.split(",")):
            for mode in ("accept", "refuse"):
                row = await one_run(mode, rate, args)
                print(json.dumps(row), flush=True)
                runs.append(row)
    print(table(runs))
    if args.json:
        _write(args.json, runs)


def _write(path: str, runs: list[dict[str, object]]) -> None:
    with open(path, "w") as out:
        json.dump(runs, out, indent=1)


def table(runs: list[dict[str, object]]) -> str:
    """Per rate: the median CPU per utterance of each mode (min–max), and their ratio r."""
    lines = ["", "| rate /s | accepted: µs CPU / job | refused: µs CPU / refusal | r |"]
    lines.append("|---|---|---|---|")
    for rate in sorted({float(str(r["rate"])) for r in runs}):
        mine = [r for r in runs if r["rate"] == rate]
        acc = sorted(
            float(str(r["server_cpu_us_per_utterance"])) for r in mine if r["mode"] == "accept"
        )
        ref = sorted(
            float(str(r["server_cpu_us_per_utterance"])) for r in mine if r["mode"] == "refuse"
        )
        a, f = acc[len(acc) // 2], ref[len(ref) // 2]
        lines.append(
            f"| {rate:,.0f} | {a} ({acc[0]}–{acc[-1]}) | {f} ({ref[0]}–{ref[-1]}) | {f / a:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
