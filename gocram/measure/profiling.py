"""torch.profiler over a few training steps: chrome trace, TensorBoard trace dir, top-ops table."""

from __future__ import annotations

import shutil
from pathlib import Path

from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

TOP_OPS = 8  # operators kept in the result row (top_ops.txt has 25)


class ProfilerMonitor:
    """Profiles steps wait+1 .. wait+warmup+active of a run (skipping the first, noisy ones), then
    shuts the profiler down: left open, its hooks and buffers slowed the rest of a run by ~18% and
    doubled its peak memory (measured on the cpu-300 baseline)."""

    def __init__(self, out: Path, *, wait: int = 2, warmup: int = 2, active: int = 3):
        self.out = out
        self.schedule = schedule(wait=wait, warmup=warmup, active=active, repeat=1)
        self.window = wait + warmup + active  # steps until the trace is complete
        self.marked = 0
        self.prof: profile | None = None
        self._summary: dict | None = None

    def start(self, trainer) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        activities = [ProfilerActivity.CPU]
        if trainer.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.sort_key = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
        tb_handler = tensorboard_trace_handler(str(self.out / "tb_trace"))

        def on_trace_ready(prof):
            # Kineto saves a trace once: the TensorBoard handler writes it, trace.json is a copy.
            tb_handler(prof)
            traces = (self.out / "tb_trace").glob("*.pt.trace.json")  # the handler does not gzip
            shutil.copyfile(max(traces, key=lambda p: p.stat().st_mtime), self.out / "trace.json")

        self.prof = profile(activities=activities, schedule=self.schedule, record_shapes=True,
                            with_stack=False, on_trace_ready=on_trace_ready)
        self.prof.__enter__()
        trainer.step_hooks.append(self._on_step)

    def _on_step(self, frac: float) -> None:
        """Called at the start of each step: the first call marks step 0's start."""
        if self._summary is not None:
            return
        self.prof.step()
        self.marked += 1
        if self.marked > self.window:  # the last active step has ended: the trace is ready
            self.stop()

    def stop(self) -> dict:
        if self._summary is None and self.prof is not None:
            self.prof.__exit__(None, None, None)
            try:
                averages = self.prof.key_averages()
                table = averages.table(sort_by=self.sort_key, row_limit=25)
            except (AssertionError, RuntimeError):  # nothing was recorded (run too short)
                averages, table = None, "no profiled steps: the run ended before the profiler's active window"
            (self.out / "top_ops.txt").write_text(table + "\n")
            self._summary = {"profile_dir": str(self.out),
                             "profile_top_ops": top_ops(averages, self.sort_key) if averages else None}
        return self._summary or {}


def top_ops(averages, sort_key: str, n: int = TOP_OPS) -> list[dict]:
    """The n operators with the most self time in the profiled steps, with their share of all
    self time there (self times do not overlap, so the shares add up to at most 1)."""
    # microseconds; FunctionEventAvg names CUDA time "device" time
    attribute = "self_device_time_total" if "cuda" in sort_key else "self_cpu_time_total"
    times = [(event.key, getattr(event, attribute), event.count) for event in averages]
    total = sum(t for _, t, _ in times)
    if total <= 0:
        return []
    times.sort(key=lambda item: item[1], reverse=True)
    return [{"op": key, "self_ms": round(t / 1000, 3), "share": round(t / total, 4), "calls": count}
            for key, t, count in times[:n]]

