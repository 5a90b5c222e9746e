"""Process and machine facts for the benchmark: limits, event loop, CPU, memory, the machine.

Linux only (``/proc``), like the figures it serves; no third-party dependency.  Starting
processes (and a free port) is ``switchboard.tools.procs``'s.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def raise_open_files_limit() -> int:
    """Lift the soft ``RLIMIT_NOFILE`` to the hard one (10,000 sessions need as many
    descriptors); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def yield_to_the_scheduler() -> bool:
    """Put this process (a load generator) in ``SCHED_BATCH``.

    On this two-core machine the generator shares the CPUs with the scheduler it measures;
    in production its sessions and nodes are other machines.  Every frame the scheduler
    writes wakes a generator, and a woken ``SCHED_OTHER`` process may preempt the writer at
    once, so the scheduler's own latency would include the generator's run.  A
    ``SCHED_BATCH`` process never preempts on wake-up (it still gets its share of CPU), which
    is what a remote peer would cost.  Returns whether the policy was set (Linux only).
    """
    set_policy = getattr(os, "sched_setscheduler", None)
    if set_policy is None:  # pragma: no cover - not Linux
        return False
    try:
        set_policy(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:  # pragma: no cover - a seccomp'd container may refuse it
        return False
    return True


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``/proc/PID/statm``)."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    """What docs/benchmarks.md states about the machine a run used."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load_average()],
    }
