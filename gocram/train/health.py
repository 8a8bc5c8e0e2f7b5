"""Guards that keep a long run alive: bad steps, rollbacks, checkpoint faults, slow steps.

`HealthGuard` decides; the trainer acts at a few call sites:
- before each optimizer update, `check()` returns why the step must be skipped (NaN/Inf loss or
  gradient norm, or a loss spike), or None;
- after `max_bad_steps` skipped steps in a row, `roll_back(trainer)` restores the newest good
  checkpoint and scales the LR by `rollback_lr_factor`; past `max_rollbacks` the run stops with an
  error (GocramError), because a run that keeps diverging needs a person, not a fourth retry;
- a failed checkpoint write (disk full, unwritable directory) is logged and counted and the run
  goes on with the previous checkpoint intact, unless the run has no checkpoint at all and
  `require_checkpoints` is set, in which case it stops before wasting the budget;
- `watch_step()` accounts the data-loader wait and reports steps slower than `stall_factor` x the
  running median, with the loader's queue depth at that moment.

Every event becomes a log.jsonl line ({"event": ..., "step": ..., "elapsed_s": ..., "time": ...})
and a count in result.json (`health_events`). Counts, the LR scale and the loader-wait totals are
saved in checkpoints, so they survive a resume; a rollback keeps the in-memory ones (time spent
and events seen stay spent and seen).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from gocram.config import HealthConfig
from gocram.core.errors import GocramError
from gocram.train.status import json_number

EVENT_KINDS = ("nonfinite_steps", "spike_steps", "rollbacks", "ckpt_failures", "slow_steps")
WATCHDOG_MIN_STEPS = 10  # the median of fewer step times (compile, warm-up) means little
WATCHDOG_WINDOW = 100
SPIKE_STD_FLOOR = 0.01  # nats: a flat window must not turn ordinary noise into a "spike"
NO_QUEUE = "the sampler has no prefetch queue (batches are cut in the training thread)"


def queue_depth(sampler) -> tuple[int | None, str | None]:
    """(batches waiting in the loader's queue, None) or (None, why there is no number)."""
    probe = getattr(sampler, "queue_depth", None)
    if probe is None:
        return None, NO_QUEUE
    depth = probe()
    return depth, None if depth is not None else "the loader has not started its workers yet"


class HealthGuard:
    def __init__(self, cfg: HealthConfig, *, log_event: Callable[[dict], None],
                 warn: Callable[[str], None]):
        self.cfg, self.log_event, self.warn = cfg, log_event, warn
        self.counts = dict.fromkeys(EVENT_KINDS, 0)
        self.lr_scale = 1.0
        self.bad_in_a_row = 0
        self.loader_wait_s = 0.0  # summed over steps, like step_s_total: their ratio is reported
        self.step_s_total = 0.0
        self.losses: deque[float] = deque(maxlen=cfg.spike_window)  # losses of admitted steps
        self.step_times: deque[float] = deque(maxlen=WATCHDOG_WINDOW)
        self.recent: deque[dict] = deque(maxlen=5)  # for status.json

    # -- events ----------------------------------------------------------------------------------
    def event(self, kind: str, **fields) -> dict:
        record = {"event": kind, **fields, "time": round(time.time(), 3)}
        self.log_event(record)
        self.recent.append(record)
        return record

    # -- bad steps -------------------------------------------------------------------------------
    def check(self, *, step: int, elapsed_s: float, loss: float, grad_norm: float) -> str | None:
        """Why the step about to be applied must be skipped ("nonfinite", "spike"), or None."""
        values = {"step": step, "elapsed_s": round(elapsed_s, 3), "loss": json_number(loss),
                  "grad_norm": json_number(grad_norm)}
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            kind = "nonfinite"
        elif (z := self._zscore(loss)) is not None and z > self.cfg.spike_zscore:
            kind = "spike"
            values.update(zscore=round(z, 2), window_mean=statistics.fmean(self.losses))
        else:
            self.bad_in_a_row = 0
            self.losses.append(loss)
            return None
        self.bad_in_a_row += 1
        self.counts[f"{kind}_steps"] += 1
        self.event(kind, **values, in_a_row=self.bad_in_a_row, action="skipped")
        self.warn(f"[health] step {step}: {kind} (loss {loss:.4g}, grad norm {grad_norm:.4g}); "
                  f"update skipped ({self.bad_in_a_row}/{self.cfg.max_bad_steps} in a row)")
        return kind

    def _zscore(self, loss: float) -> float | None:
        if not self.cfg.spike_zscore or len(self.losses) < self.cfg.spike_window:
            return None
        std = max(statistics.pstdev(self.losses), SPIKE_STD_FLOOR)
        return (loss - statistics.fmean(self.losses)) / std

    @property
    def rollback_due(self) -> bool:
        return self.bad_in_a_row >= self.cfg.max_bad_steps

    def roll_back(self, trainer, *, step: int, elapsed_s: float) -> Path:
        """Restore the newest good checkpoint into `trainer`, LR scaled down; keeps the clock."""
        if self.counts["rollbacks"] >= self.cfg.max_rollbacks:
            self.event("gave_up", step=step, elapsed_s=round(elapsed_s, 3),
                       rollbacks=self.counts["rollbacks"], lr_scale=self.lr_scale)
            raise GocramError(
                f"training diverged: {self.bad_in_a_row} bad steps in a row at step {step} after "
                f"{self.counts['rollbacks']} rollback(s) (LR scale {self.lr_scale:g}); lower train.lr "
                f"or raise health.max_rollbacks (events in {trainer.out / 'log.jsonl'})")
        # the engine picks: under torchrun rank 0 chooses and every rank restores the same one
        found = trainer.engine.latest(trainer.out / "checkpoint", warn=self.warn, at_most=step)
        if found is None:
            raise GocramError(f"training diverged at step {step} and there is no good checkpoint "
                              f"under {trainer.out / 'checkpoint'} to roll back to")
        mine = self.state_dict()
        trainer.restore(found, keep_spent=True)  # loads the checkpoint's health state too: put ours back
        self.load_state_dict(mine)
        self.counts["rollbacks"] += 1
        self.lr_scale *= self.cfg.rollback_lr_factor
        self.bad_in_a_row = 0
        self.losses.clear()  # earlier losses are higher: refill the window before judging spikes
        self.event("rollback", step=step, elapsed_s=round(elapsed_s, 3), to_step=trainer.progress.step,
                   checkpoint=found.name, lr_scale=self.lr_scale, rollbacks=self.counts["rollbacks"])
        self.warn(f"[health] rolled back from step {step} to {found.name}; LR scale now "
                  f"{self.lr_scale:g} (rollback {self.counts['rollbacks']}/{self.cfg.max_rollbacks})")
        return found

    # -- checkpoint faults -----------------------------------------------------------------------
    def save_failed(self, err: OSError, *, step: int, elapsed_s: float, have_checkpoint: bool,
                    directory: Path) -> None:
        self.counts["ckpt_failures"] += 1
        self.event("ckpt_failed", step=step, elapsed_s=round(elapsed_s, 3), errno=err.errno,
                   error=str(err))
        if not have_checkpoint and self.cfg.require_checkpoints:
            raise GocramError(f"cannot write a checkpoint to {directory} ({err}) and the run has none "
                              f"to resume from; fix the directory or set "
                              f"health.require_checkpoints=false to train without") from err
        self.warn(f"[health] WARNING: checkpoint at step {step} NOT written ({err}); the previous "
                  f"checkpoint is intact and training goes on ({self.counts['ckpt_failures']} "
                  f"failed so far)")

    # -- the watchdog ------------------------------------------------------------------------------
    def watch_step(self, *, step: int, elapsed_s: float, step_s: float, wait_s: float,
                   sampler) -> None:
        self.loader_wait_s += wait_s
        self.step_s_total += step_s
        factor = self.cfg.stall_factor
        if factor and len(self.step_times) >= WATCHDOG_MIN_STEPS:
            median = statistics.median(self.step_times)
            if step_s > factor * median:
                depth, note = queue_depth(sampler)
                self.counts["slow_steps"] += 1
                self.event("slow_step", step=step, elapsed_s=round(elapsed_s, 3),
                           step_s=round(step_s, 4), median_s=round(median, 4),
                           ratio=round(step_s / median, 1), loader_wait_s=round(wait_s, 4),
                           queue_depth=depth, queue_note=note)
                self.warn(f"[health] step {step} took {step_s:.3f}s, {step_s / median:.0f}x the "
                          f"median; {wait_s:.3f}s waiting for data, loader queue depth "
                          f"{depth if depth is not None else 'n/a (' + note + ')'}")
        self.step_times.append(step_s)

    @property
    def loader_wait_frac(self) -> float | None:
        return self.loader_wait_s / self.step_s_total if self.step_s_total else None

    # -- persistence and results -----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"counts": dict(self.counts), "lr_scale": self.lr_scale,
                "loader_wait_s": self.loader_wait_s, "step_s_total": self.step_s_total}

    def load_state_dict(self, state: dict | None) -> None:
        if not state:  # a checkpoint from before the guards existed
            return
        self.counts = {**dict.fromkeys(EVENT_KINDS, 0), **state["counts"]}
        self.lr_scale = state["lr_scale"]
        self.loader_wait_s, self.step_s_total = state["loader_wait_s"], state["step_s_total"]

    def summary(self) -> dict:
        return {"loader_wait_frac": self.loader_wait_frac, "health_events": dict(self.counts),
                "lr_scale": self.lr_scale}
