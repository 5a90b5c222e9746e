"""The scheduler as the benchmark runs it: ``switchboard serve`` plus an exact-latency tap.

``python -m switchboard.bench.serverproc --samples-out FILE [serve flags]`` runs
``switchboard serve`` itself (``server/runner.py``) with two hooks: its dispatch-latency
histogram also keeps every observation, with the time its utterance was read off the socket,
and writes them to ``FILE`` on SIGTERM as doubles ``(received_at, seconds)`` — the
histogram's buckets are too coarse for a p99.9 — and every garbage collection's pause is
logged.  The tap costs one list append per dispatch.  The environment's ``SWITCHBOARD_*``
settings are ignored: a run is described by its flags alone.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from switchboard.bench.hooks import tool_hooks
from switchboard.bench.sysutil import raise_open_files_limit
from switchboard.config import load_settings
from switchboard.metrics import FastHistogram
from switchboard.server.runner import ServeHooks, run
from switchboard.server.scheduler import Scheduler

log = logging.getLogger("switchboard.bench")


class LatencyTap:
    """Stands in for the dispatch-latency histogram: forwards, and keeps every sample."""

    def __init__(self, histogram: FastHistogram) -> None:
        self._histogram = histogram
        self.samples: array[float] = array("d")

    def observe(self, amount: float) -> None:
        self._histogram.observe(amount)
        self.samples.append(time.perf_counter() - amount)
        self.samples.append(amount)


class GcPauses:
    """``gc.callbacks`` hook: how long each collection stopped the event loop."""

    def __init__(self) -> None:
        self._start = 0.0
        self.count = [0, 0, 0]
        self.total_s = [0.0, 0.0, 0.0]
        self.longest: list[tuple[float, int, float]] = []  # (start, generation, seconds) ≥ 5 ms

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._start = now
            return
        gen, took = info["generation"], now - self._start
        self.count[gen] += 1
        self.total_s[gen] += took
        if took >= 0.005 and len(self.longest) < 1000:
            self.longest.append((self._start, gen, took))

    def summary(self) -> dict[str, object]:
        return {
            "collections": self.count,
            "total_ms": [round(t * 1e3, 1) for t in self.total_s],
            "pauses_over_5ms": [(round(t, 4), g, round(s * 1e3, 2)) for t, g, s in self.longest],
        }


def _counters(sched: Scheduler, pauses: GcPauses) -> dict[str, object]:
    """What explains the latencies beyond the samples (read by ``runs.py``)."""
    lock = getattr(sched.registry, "global_lock", None)  # the old design only
    return {
        "global_lock_waited_s": None if lock is None else round(lock.waited_s, 3),
        "gc": pauses.summary(),
    }


def parse_flags(argv: list[str]) -> tuple[Path, dict[str, object]]:
    """``--samples-out FILE`` and ``--key value`` pairs spelled like ``switchboard serve``."""
    flags: dict[str, object] = {}
    samples: Path | None = None
    it = iter(argv)
    for arg in it:
        if not arg.startswith("--"):
            raise SystemExit(f"serverproc: unexpected argument {arg!r}")
        value = next(it, None)
        if value is None:
            raise SystemExit(f"serverproc: {arg} needs a value")
        if arg == "--samples-out":
            samples = Path(value)
        else:
            flags[arg[2:].replace("-", "_")] = value
    if samples is None:
        raise SystemExit("serverproc: --samples-out is required")
    return samples, flags


def hooks(samples_out: Path) -> ServeHooks:
    """The tap and the GC log, added to ``switchboard serve``'s own start and stop."""
    pauses = GcPauses()
    taps: list[LatencyTap] = []

    def built(sched: Scheduler) -> None:
        tap = LatencyTap(sched.metrics.dispatch_latency)
        stats: Any = sched.metrics.dispatch  # the driver only ever calls .observe on it
        stats.dispatch_latency = tap
        taps.append(tap)
        gc.callbacks.append(pauses)

    def stopping(sched: Scheduler) -> None:
        with samples_out.open("wb") as out:
            taps[0].samples.tofile(out)
        samples_out.with_suffix(".json").write_text(json.dumps(_counters(sched, pauses)))

    return ServeHooks(built=built, stopping=stopping, backlog=4096, grace=0.5)


def main(argv: list[str] | None = None) -> int:
    raise_open_files_limit()
    samples_out, flags = parse_flags(sys.argv[1:] if argv is None else argv)
    settings = load_settings(flags, environ={})
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(settings.log_level.upper())
    return run(settings, tool_hooks(settings, hooks(samples_out)))


if __name__ == "__main__":
    sys.exit(main())
