"""Train a GPT for a fixed wall-clock budget and write one honest result row.

The budget clock runs only while training steps run (compilation included); validation and
checkpoint writes are timed separately. The LR follows the elapsed fraction of the budget. The run
stops at the first step boundary past the budget, validates, checkpoints and writes result.json.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

import torch

from gocram.config import RunConfig, config_from_dict
from gocram.core.env import device_name, git_sha, peak_memory, pick_device, versions
from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_json
from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.batches import LAYOUTS, layout_options
from gocram.data.batching.windows import eval_chunks, sliding_windows
from gocram.data.tokens.prepare import PreparedData, cache_root, prepare_data
from gocram.eval.bpb import Score, score_chunks
from gocram.measure.flops import KeptTokens, flops_per_token, matmul_params_of, mfu
from gocram.measure.peak import cpu_matmul_peak_tflops, run_matmul_shape
from gocram.models.gpt import GPT
from gocram.plan import PRECISION_DTYPES, Env, plan
from gocram.train.checkpoint import list_checkpoints
from gocram.train.clock import BudgetClock
from gocram.train.compile import CompileCacheWatch, compile_model
from gocram.train.engines import ENGINES
from gocram.train.health import HealthGuard
from gocram.train.muon import resolve_newton_schulz
from gocram.train.optimizers import OPTIMIZERS, resolve_adamw_kernel, set_lr_multiplier
from gocram.train.runlog import NullLog, RunLog
from gocram.train.schedule import ScheduleShape, lr_multiplier, ramp_accum
from gocram.train.signals import GracefulStop, StopState
from gocram.train.status import Heartbeat, NullHeartbeat


def autocast_for(precision: str, device: torch.device):
    """A zero-argument context factory: autocast for bf16/fp16, nothing for fp32."""
    if precision != "fp32":
        return partial(torch.autocast, device_type=device.type, dtype=PRECISION_DTYPES[precision])
    return nullcontext


# Steps whose [loss, lr] a row keeps (Progress.first_losses).
FIRST_LOSSES = 20


@dataclass
class Progress:
    """Everything about the run's position that a checkpoint must carry."""

    step: int = 0
    elapsed_s: float = 0.0
    tokens: int = 0
    bytes: int = 0
    eval_s: float = 0.0
    ckpt_s: float = 0.0
    next_eval_s: float = 0.0
    next_ckpt_s: float = 0.0
    step_times: list[float] = field(default_factory=list)
    val_curve: list[list[float]] = field(default_factory=list)  # [elapsed_s, val_bpb] pairs
    # [loss, lr] of the first FIRST_LOSSES steps (loss None on a skipped step): an exact toggle
    # promises the same losses per step as its base cell, and the report checks it from these
    first_losses: list[list[float | None]] = field(default_factory=list)

    # What a rollback keeps: time spent stays spent, and the eval and checkpoint cadence goes on.
    SPENT = ("elapsed_s", "eval_s", "ckpt_s", "next_eval_s", "next_ckpt_s", "step_times")

    def state_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "step_times": list(self.step_times), "val_curve": [list(p) for p in self.val_curve],
                "first_losses": [list(p) for p in self.first_losses]}

    def load_state_dict(self, state: dict, *, keep_spent: bool = False) -> None:
        """Take a checkpoint's position in place (the training loop holds this object); with
        `keep_spent`, a rollback's: the checkpoint's step, tokens and curve, this run's time."""
        loaded = Progress(**{**state, **({k: getattr(self, k) for k in self.SPENT} if keep_spent else {})})
        for f in fields(self):
            setattr(self, f.name, getattr(loaded, f.name))


class Trainer:
    """One budgeted run. `monitors` see the run from start to end: each has start(trainer), called
    once the budget clock exists, and stop() -> dict of metrics merged into the result row.
    `stop` (signals.GracefulStop) asks the run to checkpoint and return at the next step boundary."""

    def __init__(self, cfg: RunConfig, out: Path, *, data: PreparedData | None = None,
                 monitors: tuple = (), stop: GracefulStop | None = None):
        self.cfg, self.out = cfg, out
        self.monitors = list(monitors)
        # The engine first: it joins the process group, so the device and the sampler know the rank.
        self.engine = ENGINES.build(cfg.impl.engine, cfg)
        self.device = self.engine.device(pick_device(cfg.impl.device))
        self.stop = StopState(stop, world_size=self.engine.world_size)
        # What the guard, the heartbeat and the loop report through, before any of them exists;
        # only rank 0 writes (the log's files open when the run starts).
        main = self.engine.is_main
        self.log = RunLog(out, progress_every_s=cfg.impl.progress_every_s) if main else NullLog()
        self.heartbeat = (Heartbeat(out, cfg.health.heartbeat_every_s, self.device) if main
                          else NullHeartbeat())
        self.clock = BudgetClock(cfg.train.budget_s,
                                 sync=torch.cuda.synchronize if self.device.type == "cuda" else None)
        self.env = Env.for_device(self.device)
        self.plan = plan(cfg, self.env)
        self.plan.raise_if_blocked()  # before any data is prepared
        self.precision = self.plan.precision
        self.autocast = autocast_for(self.precision, self.device)
        # Before anything runs an op: the peak measured next and every step use this many threads.
        # Inter-op threads are left alone: torch allows setting them only once per process, before
        # any inter-op work, which a run inside a harness or test process cannot promise.
        if cfg.impl.threads:
            torch.set_num_threads(cfg.impl.threads)
        # The CPU MFU basis: measured now, before any loader thread, and again at the end (best kept).
        self.cpu_peak_tflops = self._measure_cpu_peak() if self.device.type == "cpu" else None
        if cfg.eval.stride > cfg.model.seq_len:
            raise GocramError(f"eval.stride={cfg.eval.stride} exceeds model.seq_len={cfg.model.seq_len}")
        self.val_sliding: Score | None = None  # the last sliding-window score when eval.stride > 0
        torch.manual_seed(cfg.train.seed)
        self.data = data or prepare_data(cfg.data, cfg.eval, cfg.model.vocab_size)
        self.model = GPT(cfg.model, cfg.impl).to(self.device)
        tc, impl = cfg.train, cfg.impl
        self.optimizer_recipe = OPTIMIZERS.get(tc.optimizer)
        self.n_params, self.n_matmul_params = self.model.num_params(), self.model.matmul_params()
        self.accum = self.engine.local_accum(cfg.grad_accum)  # micro-batches per rank per step
        self.step_model, self.optimizer = self.engine.wrap(
            self.model, self._make_optimizer, precision=self.precision, accum=self.accum)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.sampler = LAYOUTS.build(cfg.data.layout, self.data.train, seq_len=cfg.model.seq_len,
                                     batch=tc.micro_batch, seed=tc.seed,
                                     doc_offsets=self.data.train_offsets,
                                     **layout_options(cfg.data))
        # Called with the budget fraction before every step: schedules other than the LR
        # (e.g. a token-drop rate) hang here.
        self.step_hooks: list = [
            self.model.set_budget_fraction,
            lambda fraction: self.optimizer_recipe.set_budget_fraction(self.optimizer, fraction, tc)]
        # after the model's hook: what token dropping keeps each step, so FLOPs count the work done
        self.kept_tokens = KeptTokens(self.model.token_drop, cfg.model.seq_len)
        self.step_hooks.append(self.kept_tokens)
        # Called with the trainer after backward, before the health check and the update: the
        # seam for gradient surgery and for injecting faults in tests.
        self.grad_hooks: list = []
        self.ckpt_dump = torch.save  # the checkpoint serialiser; tests inject a full disk here
        self.guard = HealthGuard(cfg.health, log_event=self.log.event,
                                 warn=partial(self.log.progress, force=True))
        self.have_checkpoint = False  # written by this process, or resumed from
        self.last_skip: str | None = None  # why the last step was skipped, if it was
        self.last_wait_s = 0.0  # seconds the last step waited for batches
        self.progress = Progress(next_eval_s=impl.eval_every_s or float("inf"),
                                 next_ckpt_s=impl.ckpt_every_s or float("inf"))
        self.shape = ScheduleShape(warmup_frac=tc.warmup_frac, min_ratio=tc.min_lr_ratio,
                                   decay_frac=tc.decay_frac)
        self.compile_cache = CompileCacheWatch()
        if impl.compile:
            self.step_model = compile_model(self.step_model, impl.compile_mode, cache_root(cfg.data))

    def _measure_cpu_peak(self) -> float:
        return cpu_matmul_peak_tflops(PRECISION_DTYPES[self.precision],
                                      run_matmul_shape(self.cfg.model, self.cfg.train.micro_batch))

    def _make_optimizer(self, model) -> torch.optim.Optimizer:
        kernel = resolve_adamw_kernel(self.cfg.impl.optimizer_kernel, self.device.type)
        newton_schulz = resolve_newton_schulz(self.cfg.impl.newton_schulz,
                                              native_bf16=self.env.native_bf16)
        return self.optimizer_recipe.build(model.param_roles(), self.cfg.train, kernel=kernel,
                                           newton_schulz=newton_schulz)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {
            "model": self.engine.model_state(self.model),
            "optimizer": self.engine.optimizer_state(self.model, self.optimizer),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "progress": self.progress.state_dict(),
            "config": self.cfg.to_dict(),
            "meaning_hash": self.cfg.meaning_hash(),
            "health": self.guard.state_dict(),
        }

    def save(self) -> None:
        t0 = time.perf_counter()
        directory = self.out / "checkpoint"
        try:
            self.engine.save(self.checkpoint_state(), directory, self.progress.step,
                             self.cfg.impl.keep_checkpoints, dump=self.ckpt_dump)
            self.have_checkpoint = True
        except OSError as err:  # disk full, unwritable: the guard decides whether to go on
            self.guard.save_failed(err, step=self.progress.step, elapsed_s=self.progress.elapsed_s,
                                   have_checkpoint=self.have_checkpoint, directory=directory)
        self.progress.ckpt_s += time.perf_counter() - t0

    def restore(self, path: Path, *, keep_spent: bool = False) -> None:
        """Load the checkpoint at `path`; `keep_spent` (a rollback) keeps this run's time spent."""
        state = self.engine.load(path)  # this rank's sampler and RNG states
        # Only what is learned must match: a cadence or a speed setting may change on resume.
        saved = config_from_dict(state["config"])
        if saved.meaning_hash() != self.cfg.meaning_hash():
            saved_flat = saved.flat()
            differ = [k for k, v in self.cfg.flat().items()
                      if k.partition(".")[0] not in ("impl", "health") and saved_flat.get(k) != v]
            raise GocramError(f"{path}: written by a run with another config (differs in "
                              f"{', '.join(differ)}); resume with the same config")
        self.engine.load_weights(self.model, self.optimizer, state, path)
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"]:
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.progress.load_state_dict(state["progress"], keep_spent=keep_spent)
        self.guard.load_state_dict(state.get("health"))
        self.have_checkpoint = True

    # -- one optimizer step ----------------------------------------------------------------------
    def train_step(self, lr_multiplier: float, accum: int | None = None) -> tuple[float, int, int]:
        """Accumulate `accum` micro-batches (default: the full batch); returns (mean loss, tokens,
        bytes).

        Every parameter group runs at its own base LR (train/optimizers.py) x lr_multiplier."""
        set_lr_multiplier(self.optimizer, lr_multiplier)
        accum = accum or self.accum
        total_loss = torch.zeros((), device=self.device)
        tokens = n_bytes = 0
        wait_s = 0.0
        for i in range(accum):
            t0 = time.perf_counter()
            batch = self.sampler.next_batch()
            wait_s += time.perf_counter() - t0
            real = batch.y[batch.y != IGNORE_INDEX].numpy()  # padding is not work done
            n_bytes += int(self.data.token_bytes[real].sum())
            tokens += real.size
            batch = batch.to(self.device)
            with self.engine.accumulating(last=i == accum - 1):
                with self.autocast():
                    loss = self.step_model(batch.x, batch.y, positions=batch.positions,
                                           document_ids=batch.document_ids) / accum
                self.engine.backward(loss, self.scaler)
            total_loss += loss.detach()
        for hook in self.grad_hooks:
            hook(self)
        # unscale (the guard needs the true norm), clip; the norm is global, so is the mean loss:
        # every rank takes the same guard decision (engines/base.py)
        grad_norm = self.engine.grad_norm(self.model, self.optimizer, self.scaler,
                                          self.cfg.train.grad_clip)
        mean_loss = self.engine.mean_loss(total_loss.float())
        loss_value, norm = torch.stack([mean_loss, grad_norm.float().to(mean_loss.device)]).tolist()
        # fp16: an overflowed gradient is routine; the scaler skips that step and lowers its scale.
        self.last_skip = self.guard.check(
            step=self.progress.step + 1, elapsed_s=self.progress.elapsed_s, loss=loss_value,
            grad_norm=0.0 if self.scaler.is_enabled() else norm)
        self.engine.apply_step(self.optimizer, self.scaler, skip=self.last_skip is not None)
        self.last_wait_s = wait_s
        return loss_value, tokens, n_bytes

    # -- evaluation ------------------------------------------------------------------------------
    def validate(self) -> Score:
        t0 = time.perf_counter()
        # Each rank scores its share of the fixed val chunks; the sums are added across ranks.
        chunks = self.engine.shard_eval(eval_chunks(self.data.val, self.cfg.model.seq_len))
        score = self.engine.reduce_score(score_chunks(
            self.model, chunks, self.data.token_bytes, batch=self.cfg.impl.eval_micro_batch,
            device=self.device, autocast=self.autocast))
        sliding = {}
        if self.cfg.eval.stride:  # beside the chunked number, which stays the headline
            windows = self.engine.shard_eval(sliding_windows(self.data.val, self.cfg.model.seq_len,
                                                             self.cfg.eval.stride))
            self.val_sliding = self.engine.reduce_score(score_chunks(
                self.model, windows, self.data.token_bytes, batch=self.cfg.impl.eval_micro_batch,
                device=self.device, autocast=self.autocast))
            sliding = {"val_bpb_sliding": self.val_sliding.bpb}
        took = time.perf_counter() - t0
        self.progress.eval_s += took
        self.progress.val_curve.append([round(self.progress.elapsed_s, 3), score.bpb])
        self.log.event({"event": "eval", "step": self.progress.step,
                        "elapsed_s": round(self.progress.elapsed_s, 3), "val_loss": score.loss,
                        "val_bpb": score.bpb, **sliding, "eval_s": round(took, 3)})
        shown = f" sliding {self.val_sliding.bpb:.4f}" if sliding else ""
        self.log.progress(f"[eval] step {self.progress.step}: val_bpb {score.bpb:.4f}{shown} "
                          f"val_loss {score.loss:.4f} ({took:.1f}s, not counted in the budget)",
                          force=True)
        return score

    @property
    def fraction(self) -> float:
        """The budget spent: steps or training seconds, as train.clock says."""
        if self.cfg.train.clock == "steps":
            return self.progress.step / self.cfg.train.max_steps
        return self.clock.fraction

    def _done(self) -> bool:
        if self.cfg.train.clock == "steps":
            return self.progress.step >= self.cfg.train.max_steps
        step_cap = self.cfg.train.max_steps is not None and self.progress.step >= self.cfg.train.max_steps
        return self.clock.spent or step_cap

    def _due(self, p: Progress) -> tuple[bool, bool]:
        """(eval due, checkpoint due) after the step just taken."""
        impl = self.cfg.impl
        ckpt = p.elapsed_s >= p.next_ckpt_s or (impl.ckpt_every_steps and p.step % impl.ckpt_every_steps == 0)
        return p.elapsed_s >= p.next_eval_s, bool(ckpt)

    # -- the run ---------------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        main = self.engine.is_main  # only rank 0 writes files, logs and status.json
        if main:
            shutil.copyfile(self.data.tokenizer_path, self.out / "tokenizer.json")
            (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1))
        self.log.open()
        self.heartbeat.start()
        try:
            if resume:
                self._resume()
            else:  # a rollback target from the start, and an unwritable directory found now
                self.save()
        except BaseException as err:
            self.heartbeat.beat(self, state="failed", force=True, message=f"{type(err).__name__}: {err}")
            self.log.close()
            self.engine.close()
            raise
        p, tc, clock = self.progress, self.cfg.train, self.clock
        clock.elapsed_s = p.elapsed_s  # carried across a resume
        for monitor in self.monitors:
            monitor.start(self)
        monitored: dict = {}
        try:
            while not self._done() and not self.stop.due:
                frac = self.fraction
                multiplier = lr_multiplier(tc.schedule, frac, self.shape) * self.guard.lr_scale
                lr = tc.lr * multiplier  # the AdamW groups' LR, for the log
                for hook in self.step_hooks:
                    hook(frac)
                accum = ramp_accum(frac, self.accum, tc.batch_ramp_frac)  # the batch ramp, if on
                clock.start()
                loss, tokens, n_bytes = self.train_step(multiplier, accum)
                took = clock.stop()
                # global tokens and bytes, rank 0's clock, and whether any rank was asked to stop
                tokens, n_bytes, clock.elapsed_s, self.stop.agreed = self.engine.agree(
                    tokens, n_bytes, clock.elapsed_s, stop=self.stop.heard)
                p.step += 1
                p.elapsed_s, p.tokens, p.bytes = clock.elapsed_s, p.tokens + tokens, p.bytes + n_bytes
                p.step_times.append(took)
                if p.step <= FIRST_LOSSES:
                    p.first_losses.append([loss if self.last_skip is None else None, lr])
                self.guard.watch_step(step=p.step, elapsed_s=p.elapsed_s, step_s=took,
                                      wait_s=self.last_wait_s, sampler=self.sampler)
                if self.last_skip is None and (p.step % self.cfg.impl.log_every_steps == 0 or p.step == 1):
                    self.log.event({"step": p.step, "loss": loss, "lr": lr, "step_s": took,
                                    "elapsed_s": round(p.elapsed_s, 3), "tokens": p.tokens,
                                    "tok_per_s": p.tokens / p.elapsed_s,
                                    "loader_wait_s": round(self.last_wait_s, 6)})
                self.log.progress(
                    f"[train {p.elapsed_s:7.1f}/{tc.budget_s:.0f}s {100 * self.fraction:3.0f}%]"
                    f" step {p.step} loss {loss:.4f} lr {lr:.2e} {p.tokens / p.elapsed_s:,.0f} tok/s"
                    f" data wait {self.last_wait_s / took if took else 0:.0%}")
                if self.guard.rollback_due:  # restores progress in place; the clock keeps running
                    self.guard.roll_back(self, step=p.step, elapsed_s=p.elapsed_s)
                    continue
                eval_due, ckpt_due = self._due(p)
                if eval_due and not self._done():
                    self.validate()
                    while p.next_eval_s <= p.elapsed_s:
                        p.next_eval_s += self.cfg.impl.eval_every_s
                # Not inside a run of bad steps: their weights are what a rollback must escape
                # (a time-based checkpoint stays due until the next good step).
                if ckpt_due and not self._done() and not self.guard.bad_in_a_row:
                    self.save()
                    while p.next_ckpt_s <= p.elapsed_s:
                        p.next_ckpt_s += self.cfg.impl.ckpt_every_s or float("inf")
                self.heartbeat.beat(self, loss=loss, lr=lr)
            if self.stop.due:
                return self._checkpoint_and_stop()
            for monitor in self.monitors:
                monitored.update(monitor.stop())
            score = self.validate()
            self.save()
            result = {**self.result_row(score), **monitored, **self.guard.summary()}
        except BaseException as err:
            self.heartbeat.beat(self, state="failed", force=True, message=f"{type(err).__name__}: {err}")
            raise
        finally:
            for monitor in self.monitors:
                monitor.stop()  # idempotent: stops threads after a crash too
            self.log.close()
            self.engine.close()
        if not main:
            return result
        atomic_write_json(self.out / "result.json", result)
        self.heartbeat.beat(self, state="finished", force=True)
        return result

    # -- health: resume, graceful stop -----------------------------------------------------------
    def _resume(self) -> None:
        directory = self.out / "checkpoint"
        found = self.engine.latest(directory, warn=lambda line: self.log.progress(
            f"[train] --resume: {line}", force=True))
        if found is None:
            have = len(list_checkpoints(directory))
            raise GocramError(f"--resume: no checkpoint under {directory}" if not have else
                              f"--resume: none of the {have} checkpoints under {directory} is intact")
        self.restore(found)
        self.log.event({"event": "resume", "step": self.progress.step, "checkpoint": found.name})
        self.log.progress(f"[train] resumed from {found} at step {self.progress.step}", force=True)

    def _checkpoint_and_stop(self) -> dict:
        """A signal asked the run to stop: checkpoint now, no final validation, no result.json."""
        p = self.progress
        self.save()
        signal_name = self.stop.signal_name
        self.log.event({"event": "stopped", "signal": signal_name, "step": p.step,
                        "elapsed_s": round(p.elapsed_s, 3), "time": round(time.time(), 3)})
        message = f"stopped by {signal_name} at step {p.step}; continue with --resume"
        self.heartbeat.beat(self, state="stopped", force=True, message=message)
        return {"status": "stopped", "signal": signal_name, "steps": p.step,
                "world_size": self.engine.world_size,
                "elapsed_s": p.elapsed_s, "budget_s": self.cfg.train.budget_s,
                "checkpoint_written": self.have_checkpoint, **self.guard.summary()}

    def result_row(self, score: Score) -> dict:
        p, cfg = self.progress, self.cfg
        tokens_per_s = p.tokens / p.elapsed_s if p.elapsed_s else 0.0
        # Without compile the first step is warm-up noise; with it, it holds the compilation.
        steady = statistics.median(p.step_times[1:]) if len(p.step_times) > 2 else None
        compile_s = 0.0
        if cfg.impl.compile and p.step_times:
            # with no steady steps to subtract, the whole first step is the (upper-bound) estimate
            compile_s = max(p.step_times[0] - (steady or 0.0), 0.0)
        dropped = self.kept_tokens.work(matmul_params_of(self.model.blocks[0]))
        fpt = flops_per_token(cfg.model, self.n_matmul_params, dropped)  # counted before sharding
        name = device_name(self.device)
        # per device: tokens_per_s counts every rank, the peak is one device's
        cpu_peak = self.cpu_peak_tflops and max(self.cpu_peak_tflops, self._measure_cpu_peak())
        mfu_value, mfu_note = mfu(tokens_per_s / self.engine.world_size, fpt, self.device.type, name,
                                  measured_peak_tflops=cpu_peak)
        mem, mem_kind = peak_memory(self.device)
        return {
            "status": "ok",
            "val_bpb": score.bpb, "val_loss": score.loss,
            "val_bpb_sliding": self.val_sliding.bpb if self.val_sliding else None,
            "xz_bpb": self.data.meta["xz_bpb"], "val_bytes": score.bytes, "val_tokens": score.tokens,
            "tokens_per_s": tokens_per_s, "bytes_per_s": p.bytes / p.elapsed_s if p.elapsed_s else 0.0,
            "tokens_per_s_steady": p.tokens / p.step / steady if steady else None,
            "mfu": mfu_value, "mfu_note": mfu_note, "flops_per_token": fpt,
            "steps": p.step, "tokens": p.tokens, "bytes": p.bytes,
            "budget_s": cfg.train.budget_s, "elapsed_s": p.elapsed_s,
            "compile_s": compile_s,
            "compile_cache": self.compile_cache.verdict() if cfg.impl.compile else None,
            "eval_s": p.eval_s, "ckpt_s": p.ckpt_s,
            "peak_mem_bytes": mem, "peak_mem_kind": mem_kind,
            "n_params": self.n_params, "precision": self.precision,
            "engine": cfg.impl.engine, "world_size": self.engine.world_size,
            "optimizer": cfg.train.optimizer,
            "device": self.device.type, "device_name": name, "threads": torch.get_num_threads(),
            "val_curve": p.val_curve, "first_losses": p.first_losses,
            "config_hash": cfg.hash(), "meaning_hash": cfg.meaning_hash(), "impl_hash": cfg.impl_hash(),
            "git_sha": git_sha(), "versions": versions(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "data": {k: v for k, v in self.data.meta.items() if k != "val_set"},
            "config": cfg.flat(),
        }


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False) -> dict:
    """One run; the first SIGTERM/SIGINT checkpoints and returns {"status": "stopped", ...}."""
    with GracefulStop() as stop:
        return Trainer(cfg, Path(out), stop=stop).run(resume=resume)
