"""What a node reports about its machine: hardware at registration, usage in heartbeats.

CPU and memory come from psutil (contract §1 ``hardware`` and ``resource_usage``).  CPU usage
is system-wide and measured between two heartbeats, which is what an operator comparing nodes
wants; the first reading is primed at start-up so the first heartbeat is not a meaningless 0.

GPUs come from NVIDIA's management library through ``nvidia-ml-py`` (``pynvml``), when the
library loads and sees at least one device.  Without one, the GPU fields are left out of the
frames altogether, never sent as zeros: a 0 % GPU reads as "idle GPU", which on a CPU-only
node is a lie an operator would act on.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psutil  # type: ignore[import-untyped, unused-ignore]

log = logging.getLogger("switchboard.agent")

_GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU as ``hardware.gpus[]`` lists it (Lingua's ``GpuInfo``: whole GiB)."""

    name: str
    memory_total: int  # bytes


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one moment."""

    util_percent: float
    memory_used: int  # bytes
    memory_total: int  # bytes


class GpuReader(Protocol):
    """Where GPU facts come from: NVML on a real node, a stand-in in tests."""

    def devices(self) -> Sequence[GpuDevice]: ...

    def read(self) -> Sequence[GpuReading]:
        """The devices now; raises :class:`GpuReadError` when they cannot be read."""
        ...


class GpuReadError(Exception):
    """The GPU library failed for this reading (a driver reset, a device gone)."""


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_percent: float
    mem_percent: float
    # None: no GPU, or this reading failed; the heartbeat then leaves the field out.
    gpu_percent: float | None = None
    gpu_mem_percent: float | None = None


def gpu_usage(readings: Sequence[GpuReading]) -> tuple[float, float] | None:
    """``(gpu_percent, gpu_mem_percent)`` across all devices: mean utilisation, and memory
    used over memory present (so one full card of two reads 50 %); None with no device."""
    if not readings:
        return None
    util = sum(r.util_percent for r in readings) / len(readings)
    total = sum(r.memory_total for r in readings)
    used = sum(r.memory_used for r in readings)
    return util, (100.0 * used / total if total > 0 else 0.0)


class NvmlReader:
    """:class:`GpuReader` over ``pynvml``; made by :func:`nvml_reader` only when it works."""

    def __init__(self, nvml: Any, handles: Sequence[Any]) -> None:
        self._nvml = nvml
        self._handles = tuple(handles)

    def devices(self) -> list[GpuDevice]:
        """The cards for ``hardware.gpus``; empty if NVML fails here (registration goes on:
        the list is information, and the heartbeats say whether reading works)."""
        nvml = self._nvml
        found = []
        try:
            for handle in self._handles:
                name = nvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else str(name)
                found.append(GpuDevice(name, int(nvml.nvmlDeviceGetMemoryInfo(handle).total)))
        except nvml.NVMLError as exc:
            log.warning("cannot list the GPUs for registration: %s", exc)
            return []
        return found

    def read(self) -> list[GpuReading]:
        nvml = self._nvml
        try:
            readings = []
            for handle in self._handles:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                readings.append(GpuReading(float(util.gpu), int(memory.used), int(memory.total)))
        except nvml.NVMLError as exc:
            raise GpuReadError(str(exc)) from None
        return readings


def nvml_reader() -> NvmlReader | None:
    """NVML when ``pynvml`` imports, the driver's library loads and there is a device; else
    None (a CPU-only machine, or the agent installed without its extra's ``nvidia-ml-py``)."""
    try:
        import pynvml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # no driver here: the normal case on a CPU node
        log.debug("no GPU telemetry: %s", exc)
        return None
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    except pynvml.NVMLError as exc:
        log.warning("GPU telemetry off: NVML loaded but cannot list devices: %s", exc)
        handles = []
    if not handles:
        pynvml.nvmlShutdown()
        return None
    return NvmlReader(pynvml, handles)


def hardware(gpu: GpuReader | None = None) -> dict[str, object]:
    """``hardware{cpu_cores, memory_gb, gpus}``; ``gpus`` lists ``{name, memory_gb}`` of each
    device ``gpu`` sees (empty with no reader)."""
    cores = psutil.cpu_count(logical=True) or 1
    memory_gb = round(float(psutil.virtual_memory().total) / _GIB, 1)
    gpus = [
        {"name": d.name, "memory_gb": round(d.memory_total / _GIB)}
        for d in (gpu.devices() if gpu is not None else ())
    ]
    return {"cpu_cores": int(cores), "memory_gb": memory_gb, "gpus": gpus}


def platform_name() -> str:
    """``linux-x86_64``-style, as Lingua nodes report it."""
    return f"{platform.system().lower()}-{platform.machine().lower()}"


class ResourceSampler:
    """System CPU and memory usage, CPU averaged since the previous sample, and GPU use and
    memory when ``gpu`` reads any device."""

    def __init__(self, gpu: GpuReader | None = None) -> None:
        self.gpu = gpu
        self._gpu_failing = False
        psutil.cpu_percent(interval=None)  # primes the counter; this first value is discarded

    def sample(self) -> Usage:
        cpu = float(psutil.cpu_percent(interval=None))
        mem = float(psutil.virtual_memory().percent)
        gpu = self._gpu()
        if gpu is None:
            return Usage(cpu_percent=cpu, mem_percent=mem)
        return Usage(cpu_percent=cpu, mem_percent=mem, gpu_percent=gpu[0], gpu_mem_percent=gpu[1])

    def _gpu(self) -> tuple[float, float] | None:
        if self.gpu is None:
            return None
        try:
            usage = gpu_usage(self.gpu.read())
        except GpuReadError as exc:
            # Once per failing spell: a heartbeat every few seconds must not flood the log.
            if not self._gpu_failing:
                log.warning("GPU reading failed, GPU fields left out until it works: %s", exc)
            self._gpu_failing = True
            return None
        if self._gpu_failing:
            log.info("GPU reading works again")
        self._gpu_failing = False
        return usage
