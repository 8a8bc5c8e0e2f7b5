"""The budget clock: counts only training time (compilation included, eval and checkpoints not)."""

from __future__ import annotations

import time
from collections.abc import Callable


class BudgetClock:
    def __init__(self, budget_s: float, elapsed_s: float = 0.0, sync: Callable[[], None] | None = None):
        self.budget_s = budget_s
        self.elapsed_s = elapsed_s  # carried across a resume
        self._sync = sync or (lambda: None)  # e.g. torch.cuda.synchronize, so GPU work is counted
        self._started: float | None = None

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> float:
        """End a training segment; returns its duration."""
        self._sync()
        took = time.perf_counter() - self._started
        self.elapsed_s += took
        self._started = None
        return took

    @property
    def running(self) -> bool:
        """True inside a training segment: monitors sample only then."""
        return self._started is not None

    @property
    def fraction(self) -> float:
        return min(self.elapsed_s / self.budget_s, 1.0)

    @property
    def spent(self) -> bool:
        return self.elapsed_s >= self.budget_s
