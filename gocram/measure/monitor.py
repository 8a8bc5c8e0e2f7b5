"""Samplers that watch a run while its budget clock runs: NVML on GPUs, process CPU use otherwise.

A background thread wakes ~10 times a second and records a sample only inside training segments
(`trainer.clock.running`), so validation and checkpoint pauses do not dilute the averages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import ModuleType

import psutil


class SamplingMonitor:
    """Base: a thread calling `sample()` at `hz` while the clock runs; subclasses summarise."""

    def __init__(self, hz: float = 10.0):
        self.period = 1.0 / hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: Callable[[], bool] = lambda: False
        self._summary: dict | None = None

    def start(self, trainer) -> None:
        self._active = lambda: trainer.clock.running
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.period):
            now = time.perf_counter()
            if self._active():
                self.sample(now - last)
            last = now

    def stop(self) -> dict:
        if self._summary is None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._summary = self.summary()
        return self._summary

    def sample(self, dt: float) -> None:
        raise NotImplementedError

    def summary(self) -> dict:
        raise NotImplementedError


class CpuMonitor(SamplingMonitor):
    """Process CPU utilisation as a share of all cores (100 = every core busy)."""

    def __init__(self, hz: float = 10.0, reason_no_gpu: str = "no CUDA device"):
        super().__init__(hz)
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # prime: the first call always returns 0
        self.cores = psutil.cpu_count() or 1
        self.samples: list[float] = []
        self.reason_no_gpu = reason_no_gpu

    def sample(self, dt: float) -> None:
        self.samples.append(self.process.cpu_percent(None) / self.cores)

    def summary(self) -> dict:
        mean = sum(self.samples) / len(self.samples) if self.samples else None
        return {"mean_cpu_util": mean, "cpu_util_samples": len(self.samples),
                "mean_gpu_util": None, "energy_j": None,
                "gpu_monitor_note": f"NVML unavailable: {self.reason_no_gpu}"}


class NvmlMonitor(SamplingMonitor):
    """GPU utilisation %, memory used, power (W); energy integrates power over training segments."""

    def __init__(self, device_index: int = 0, hz: float = 10.0, *, nvml: ModuleType | None = None):
        """nvml: the pynvml module (imported when None); tests pass a fake with the same calls."""
        super().__init__(hz)
        self.nvml = nvml or _import_pynvml()
        self.nvml.nvmlInit()
        self.handle = self.nvml.nvmlDeviceGetHandleByIndex(device_index)
        self.util: list[float] = []
        self.power: list[float] = []
        self.mem_peak = 0
        self.energy_j = 0.0

    def sample(self, dt: float) -> None:
        n = self.nvml
        self.util.append(float(n.nvmlDeviceGetUtilizationRates(self.handle).gpu))
        self.mem_peak = max(self.mem_peak, n.nvmlDeviceGetMemoryInfo(self.handle).used)
        watts = n.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
        self.power.append(watts)
        self.energy_j += watts * dt

    def summary(self) -> dict:
        return {
            "mean_gpu_util": sum(self.util) / len(self.util) if self.util else None,
            "gpu_mem_used_peak_bytes": self.mem_peak,
            "mean_power_w": sum(self.power) / len(self.power) if self.power else None,
            "energy_j": self.energy_j, "gpu_util_samples": len(self.util),
        }


def _import_pynvml() -> ModuleType:
    import pynvml

    return pynvml


def nvml_unavailable_reason(device_type: str, nvml: ModuleType | None = None) -> str | None:
    if device_type != "cuda":
        return "the run is on the CPU"
    try:
        (nvml or _import_pynvml()).nvmlInit()
    except Exception as err:  # NVMLError subclasses, ImportError
        return f"NVML could not start ({err})"
    return None


def default_monitor(device_type: str, device_index: int = 0, *,
                    nvml: ModuleType | None = None) -> SamplingMonitor:
    reason = nvml_unavailable_reason(device_type, nvml)
    return NvmlMonitor(device_index, nvml=nvml) if reason is None else CpuMonitor(reason_no_gpu=reason)
