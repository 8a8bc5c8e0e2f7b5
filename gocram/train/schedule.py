"""LR multipliers as functions of the elapsed fraction of the budget (Cramming's budget schedulers).

Each schedule maps frac in [0, 1] to a multiplier of the peak LR. `warmup` rises linearly from 0 to
1 over the first `warmup_frac`; what follows is the schedule's own shape, ending at `min_ratio`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gocram.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ScheduleShape:
    warmup_frac: float
    min_ratio: float
    decay_frac: float


def _after_warmup(frac: float, s: ScheduleShape) -> float:
    """Progress through the post-warm-up part, in [0, 1]."""
    return min(max((frac - s.warmup_frac) / max(1.0 - s.warmup_frac, 1e-12), 0.0), 1.0)


def cosine(frac: float, s: ScheduleShape) -> float:
    p = _after_warmup(frac, s)
    return s.min_ratio + (1.0 - s.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def linear(frac: float, s: ScheduleShape) -> float:
    return 1.0 - (1.0 - s.min_ratio) * _after_warmup(frac, s)


def constant(frac: float, s: ScheduleShape) -> float:
    return 1.0


def wsd(frac: float, s: ScheduleShape) -> float:
    """Warm-up, stable at the peak, then a linear decay over the final `decay_frac`."""
    decay_start = 1.0 - s.decay_frac
    if frac <= decay_start:
        return 1.0
    return 1.0 - (1.0 - s.min_ratio) * min((frac - decay_start) / s.decay_frac, 1.0)


def one_cycle(frac: float, s: ScheduleShape) -> float:
    """Cramming's triangular budget schedule: up over the first half, down over the second.

    Its own warm-up is the first half, so `warmup_frac` is not applied on top.
    """
    if frac <= 0.5:
        return s.min_ratio + (1.0 - s.min_ratio) * frac / 0.5
    return 1.0 - (1.0 - s.min_ratio) * min((frac - 0.5) / 0.5, 1.0)


SCHEDULES: dict[str, Callable[[float, ScheduleShape], float]] = {
    "cosine": cosine, "linear": linear, "constant": constant, "wsd": wsd, "one_cycle": one_cycle,
}
OWN_WARMUP = {"one_cycle"}


def lr_multiplier(name: str, frac: float, shape: ScheduleShape) -> float:
    if name not in SCHEDULES:
        raise ConfigError(f"train.schedule: unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    frac = min(max(frac, 0.0), 1.0)
    if name not in OWN_WARMUP and frac < shape.warmup_frac:
        return frac / shape.warmup_frac
    return SCHEDULES[name](frac, shape)


def ramp_accum(frac: float, full: int, ramp_frac: float) -> int:
    """Micro-batches for a step at this budget fraction under Cramming's batch ramp
    (train.batch_ramp_frac): 1 at the start, growing linearly to `full` at `ramp_frac`; `full`
    from there on, and always when the ramp is off (0)."""
    if ramp_frac <= 0 or frac >= ramp_frac:
        return full
    return min(full, 1 + math.floor((full - 1) * frac / ramp_frac))
