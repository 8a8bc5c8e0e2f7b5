"""torch.profiler over a few training steps: chrome trace, TensorBoard trace dir, top-ops table."""

from __future__ import annotations

from pathlib import Path

from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler


class ProfilerMonitor:
    """Profiles steps wait+1 .. wait+warmup+active of a run (skipping the first, noisy ones)."""

    def __init__(self, out: Path, *, wait: int = 2, warmup: int = 2, active: int = 3):
        self.out = out
        self.schedule = schedule(wait=wait, warmup=warmup, active=active, repeat=1)
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
            tb_handler(prof)
            prof.export_chrome_trace(str(self.out / "trace.json"))

        self.prof = profile(activities=activities, schedule=self.schedule, record_shapes=True,
                            with_stack=False, on_trace_ready=on_trace_ready)
        self.prof.__enter__()
        # Steps are counted at the start of each step; the first call marks step 0's start.
        trainer.step_hooks.append(lambda frac: self.prof.step())

    def stop(self) -> dict:
        if self._summary is None and self.prof is not None:
            self.prof.__exit__(None, None, None)
            try:
                table = self.prof.key_averages().table(sort_by=self.sort_key, row_limit=25)
            except (AssertionError, RuntimeError):  # nothing was recorded (run too short)
                table = "no profiled steps: the run ended before the profiler's active window"
            (self.out / "top_ops.txt").write_text(table + "\n")
            self._summary = {"profile_dir": str(self.out)}
        return self._summary or {}

