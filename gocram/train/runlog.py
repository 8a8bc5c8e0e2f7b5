"""Run logs: one JSONL line per logged step or event, TensorBoard scalars, a live progress line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class RunLog:
    """Files open in `open()`, when the run starts: a trainer built and never run writes nothing."""

    def __init__(self, out: Path, *, progress_every_s: float, tensorboard: bool = True):
        self.out, self.tensorboard = out, tensorboard
        self.progress_every_s = progress_every_s
        self._last_progress = float("-inf")  # the first line always prints
        self.jsonl = self.tb = None

    def open(self) -> None:
        out = self.out
        self.jsonl = open(out / "log.jsonl", "a", buffering=1)  # line-buffered: tail -f works
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("[train] tensorboard not installed: no TensorBoard scalars", file=sys.stderr)
            else:
                self.tb = SummaryWriter(str(out / "tb"))

    def event(self, record: dict) -> None:
        if self.jsonl is None:
            raise RuntimeError("the run log is not open yet: Trainer.run() opens it")
        self.jsonl.write(json.dumps(record) + "\n")
        if self.tb is not None and "step" in record:
            event = record.get("event")
            # Step records are train/..., validations val/...; any other event (health guards,
            # resume) gets its own event/<name>/... so it never adds points to the training curves.
            group = "train" if event is None else "val" if event == "eval" else f"event/{event}"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "event"):
                    self.tb.add_scalar(f"{group}/{key}", value, record["step"])

    def progress(self, line: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= self.progress_every_s:
            self._last_progress = now
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


class NullLog:
    """What ranks other than 0 log to in a multi-process run: nothing (rank 0 speaks for all)."""

    def open(self) -> None:
        pass

    def event(self, record: dict) -> None:
        pass

    def progress(self, line: str, *, force: bool = False) -> None:
        pass

    def close(self) -> None:
        pass
