"""The agent's machine telemetry (agent/resources.py): GPU fields from NVML when there is a GPU,
left out (not zeros) when there is none."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from switchboard.agent import wire
from switchboard.agent.resources import (
    GpuDevice,
    GpuReadError,
    GpuReading,
    NvmlReader,
    ResourceSampler,
    gpu_usage,
    hardware,
    nvml_reader,
)

GIB = 1024**3
IDENT = wire.Identity(
    pairs=[("en", "de")],
    services=["asr", "nmt", "tts"],
    max_concurrency=2,
    backend_name="probe",
    streams_partials=False,
    hardware={"cpu_cores": 2, "memory_gb": 4.0, "gpus": []},
    platform="linux-x86_64",
)


class TwoCards:
    """A reader with two GPUs: one busy and full, one idle and empty; may be made to fail."""

    def __init__(self) -> None:
        self.failing = False

    def devices(self) -> Sequence[GpuDevice]:
        return [GpuDevice("Card A", 24 * GIB), GpuDevice("Card B", 8 * GIB)]

    def read(self) -> Sequence[GpuReading]:
        if self.failing:
            raise GpuReadError("GPU is lost")
        return [GpuReading(90.0, 24 * GIB, 24 * GIB), GpuReading(10.0, 0, 8 * GIB)]


def beat(sampler: ResourceSampler) -> dict[str, Any]:
    usage = sampler.sample()
    frame = wire.heartbeat(
        IDENT,
        node_id="n",
        cpu_percent=usage.cpu_percent,
        mem_percent=usage.mem_percent,
        gpu_percent=usage.gpu_percent,
        gpu_mem_percent=usage.gpu_mem_percent,
        running_jobs=0,
        ready=True,
    )
    resource_usage: dict[str, Any] = json.loads(frame)["resource_usage"]
    return resource_usage


def test_no_gpu_here_means_no_gpu_fields() -> None:
    """On a machine without an NVIDIA GPU (this one) NVML gives no reader, and the heartbeat
    carries CPU and memory but no GPU field at all, not zeros; hardware lists no GPU."""
    reader = nvml_reader()
    if reader is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    usage = beat(ResourceSampler(reader))
    assert set(usage) == {"cpu_percent", "mem_percent", "running_jobs"}
    assert hardware(reader)["gpus"] == []


def test_gpu_fields_come_from_the_reader() -> None:
    """With a GPU reader, the heartbeat has mean utilisation and memory used over memory
    present across the cards; hardware lists each card in whole GiB (Lingua's GpuInfo)."""
    reader = TwoCards()
    usage = beat(ResourceSampler(reader))
    assert usage["gpu_percent"] == 50.0
    assert usage["gpu_mem_percent"] == 75.0
    assert hardware(reader)["gpus"] == [
        {"name": "Card A", "memory_gb": 24},
        {"name": "Card B", "memory_gb": 8},
    ]


def test_a_failed_gpu_reading_leaves_the_fields_out_until_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reading that fails sends no GPU field (the last value would be stale, 0 a lie), logs
    one warning however long it lasts, and the fields come back when reading works again."""
    reader = TwoCards()
    sampler = ResourceSampler(reader)
    reader.failing = True
    for _ in range(3):
        assert "gpu_percent" not in beat(sampler)
    assert sum("GPU reading failed" in r.message for r in caplog.records) == 1
    reader.failing = False
    assert beat(sampler)["gpu_percent"] == 50.0


def test_gpu_usage_of_no_device_is_none() -> None:
    assert gpu_usage([]) is None
    assert gpu_usage([GpuReading(40.0, 0, 0)]) == (40.0, 0.0)


class NvmlError(Exception):
    pass


def fake_nvml(*, lost: bool = False) -> SimpleNamespace:
    """The few pynvml calls NvmlReader makes, as the library answers them."""

    def memory(handle: int) -> SimpleNamespace:
        if lost:
            raise NvmlError("GPU is lost")
        return SimpleNamespace(used=6 * GIB, total=16 * GIB)

    return SimpleNamespace(
        NVMLError=NvmlError,
        nvmlDeviceGetName=lambda handle: b"Tesla T4",
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetUtilizationRates=lambda handle: SimpleNamespace(gpu=35, memory=12),
    )


def test_nvml_reader_maps_the_library_calls() -> None:
    """NvmlReader turns NVML's answers into devices and readings, and NVML's error into
    GpuReadError."""
    reader = NvmlReader(fake_nvml(), [0])
    assert reader.devices() == [GpuDevice("Tesla T4", 16 * GIB)]
    assert reader.read() == [GpuReading(35.0, 6 * GIB, 16 * GIB)]
    lost = NvmlReader(fake_nvml(lost=True), [0])
    with pytest.raises(GpuReadError, match="lost"):
        lost.read()
    assert lost.devices() == []  # registration goes on without the list
