"""What a node reports about its machine: hardware at registration, usage in heartbeats.

Read from psutil (contract §1 ``hardware`` and ``resource_usage``).  CPU usage is system-wide
and measured between two heartbeats, which is what an operator comparing nodes wants; the
first reading is primed at start-up so the first heartbeat is not a meaningless 0.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped, unused-ignore]

_GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_percent: float
    mem_percent: float


def hardware() -> dict[str, object]:
    """``hardware{cpu_cores, memory_gb, gpus}``; GPUs are not probed (no vendor library is a
    dependency), so a GPU node's backend should add them itself if it wants them listed."""
    cores = psutil.cpu_count(logical=True) or 1
    memory_gb = round(float(psutil.virtual_memory().total) / _GIB, 1)
    return {"cpu_cores": int(cores), "memory_gb": memory_gb, "gpus": []}


def platform_name() -> str:
    """``linux-x86_64``-style, as Lingua nodes report it."""
    return f"{platform.system().lower()}-{platform.machine().lower()}"


class ResourceSampler:
    """System CPU and memory usage, CPU averaged since the previous sample."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # primes the counter; this first value is discarded

    def sample(self) -> Usage:
        return Usage(
            cpu_percent=float(psutil.cpu_percent(interval=None)),
            mem_percent=float(psutil.virtual_memory().percent),
        )
