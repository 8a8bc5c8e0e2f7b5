"""NvmlMonitor against a fake pynvml module handed in through its `nvml` parameter: what it
samples, how it summarises, and the CPU fallback when NVML cannot start."""

from __future__ import annotations

import time
from types import ModuleType, SimpleNamespace

import pytest

from gocram.measure.monitor import CpuMonitor, NvmlMonitor, default_monitor, nvml_unavailable_reason


class FakeNvmlError(Exception):
    pass


def fake_pynvml(*, utils=(50, 70), watts=(100.0, 300.0), used=(1 << 30, 3 << 30), fail_init=False):
    """A module with the five pynvml calls the monitor makes; readings cycle through the tuples."""
    nvml = ModuleType("pynvml")
    nvml.calls = []
    reads = {"util": 0, "mem": 0, "power": 0}

    def nth(values, key):
        value = values[reads[key] % len(values)]
        reads[key] += 1
        return value

    def init():
        nvml.calls.append("init")
        if fail_init:
            raise FakeNvmlError("Driver Not Loaded")

    nvml.nvmlInit = init
    nvml.nvmlDeviceGetHandleByIndex = lambda index: nvml.calls.append(("handle", index)) or f"gpu{index}"
    nvml.nvmlDeviceGetUtilizationRates = lambda handle: SimpleNamespace(gpu=nth(utils, "util"), memory=0)
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: SimpleNamespace(used=nth(used, "mem"))
    nvml.nvmlDeviceGetPowerUsage = lambda handle: int(nth(watts, "power") * 1000)  # milliwatts
    return nvml


def test_samples_are_summarised_and_energy_integrates_power():
    nvml = fake_pynvml()
    monitor = NvmlMonitor(device_index=1, nvml=nvml)
    assert nvml.calls == ["init", ("handle", 1)] and monitor.handle == "gpu1"
    monitor.sample(0.5)  # 50% busy, 1 GiB, 100 W for half a second
    monitor.sample(2.0)  # 70% busy, 3 GiB, 300 W for two seconds
    summary = monitor.summary()
    assert summary == {"mean_gpu_util": 60.0, "gpu_mem_used_peak_bytes": 3 << 30, "mean_power_w": 200.0,
                       "energy_j": pytest.approx(100.0 * 0.5 + 300.0 * 2.0), "gpu_util_samples": 2}


def test_without_samples_the_means_are_none():
    summary = NvmlMonitor(nvml=fake_pynvml()).summary()
    assert summary["mean_gpu_util"] is None and summary["mean_power_w"] is None
    assert summary["energy_j"] == 0.0 and summary["gpu_util_samples"] == 0


def test_the_thread_samples_only_while_the_clock_runs():
    clock = SimpleNamespace(running=False)
    monitor = NvmlMonitor(hz=200.0, nvml=fake_pynvml())
    monitor.start(SimpleNamespace(clock=clock))
    time.sleep(0.1)
    assert monitor.util == []  # validation, checkpoints: not sampled
    clock.running = True
    deadline = time.monotonic() + 10
    while len(monitor.util) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    summary = monitor.stop()
    assert summary["gpu_util_samples"] >= 3 and summary["energy_j"] > 0
    assert monitor.stop() is summary  # stopping twice returns the same summary


def test_default_monitor_picks_nvml_on_cuda_and_falls_back_with_the_reason():
    assert isinstance(default_monitor("cuda", nvml=fake_pynvml()), NvmlMonitor)
    broken = fake_pynvml(fail_init=True)
    assert nvml_unavailable_reason("cuda", broken) == "NVML could not start (Driver Not Loaded)"
    fallback = default_monitor("cuda", nvml=broken)
    assert isinstance(fallback, CpuMonitor)
    note = fallback.summary()["gpu_monitor_note"]
    assert note == "NVML unavailable: NVML could not start (Driver Not Loaded)"
    assert nvml_unavailable_reason("cpu", fake_pynvml()) == "the run is on the CPU"
