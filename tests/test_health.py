"""Run health: bad-step guards and rollbacks, checkpoint faults, the watchdog, graceful stops.

Faults go in through explicit seams: `Trainer.grad_hooks` (poisoned gradients, corrupted weights),
`Trainer.ckpt_dump` (a full disk), a wrapped `Trainer.sampler` (a stalled loader), real signals.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from gocram.config import load_config
from gocram.core.errors import ConfigError, GocramError
from gocram.data.batching.loader import ShardDataset, ShardLoader
from gocram.train.checkpoint import (
    checkpoint_problem,
    latest_good_checkpoint,
    list_checkpoints,
    save_checkpoint,
)
from gocram.train.health import NO_QUEUE, queue_depth
from gocram.train.signals import GracefulStop
from gocram.train.trainer import Trainer, train
from tests.conftest import REPO
from tests.test_data_loader import shard_files  # noqa: F401 - a fixture
from tests.test_trainer import read_log

STEPS = ["train.clock=steps", "impl.ckpt_every_s=0", "impl.log_every_steps=1"]


def make_trainer(tmp_path, small_overrides, *extra: str, name: str = "run") -> Trainer:
    cfg = load_config("tiny", small_overrides + STEPS + list(extra))
    return Trainer(cfg, tmp_path / name)


def events(run_dir, kind: str) -> list[dict]:
    return [r for r in read_log(run_dir) if r.get("event") == kind]


class PoisonGrads:
    """A grad hook that makes every gradient NaN on calls [start, start + count)."""

    def __init__(self, start: int, count: int = 1):
        self.start, self.count, self.calls = start, count, 0

    def __call__(self, trainer) -> None:
        self.calls += 1
        if self.start <= self.calls < self.start + self.count:
            for q in trainer.model.parameters():
                q.grad.fill_(float("nan"))


def test_health_config_is_validated_and_left_out_of_the_hash(small_overrides):
    with pytest.raises(ConfigError, match="health.max_bad_steps"):
        load_config("tiny", ["health.max_bad_steps=0"])
    with pytest.raises(ConfigError, match="health.rollback_lr_factor"):
        load_config("tiny", ["health.rollback_lr_factor=1.5"])
    with pytest.raises(ConfigError, match="health.stall_factor"):
        load_config("tiny", ["health.stall_factor=0.5"])
    with pytest.raises(ConfigError, match="did you mean 'health.spike_zscore'"):
        load_config("tiny", ["health.spike_zcore=3"])
    guarded = load_config("tiny", ["health.spike_zscore=6", "health.max_rollbacks=9"])
    assert guarded.hash() == load_config("tiny").hash()  # guards do not change what a run computes
    assert guarded.flat()["health.spike_zscore"] == 6.0


def test_a_nan_gradient_step_is_skipped_and_counted(tmp_path, small_overrides):
    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=12")
    snapshots = {}

    def snapshot(t):  # runs after the poison hook: the weights as they were before this update
        snapshots[t.progress.step + 1] = [q.detach().clone() for q in t.model.parameters()]

    trainer.grad_hooks += [PoisonGrads(start=5), snapshot]
    result = trainer.run()
    (bad,) = events(trainer.out, "nonfinite")
    assert bad["step"] == 5 and bad["loss"] != "nan" and bad["grad_norm"] == "nan"
    assert bad["action"] == "skipped" and bad["in_a_row"] == 1 and bad["elapsed_s"] >= 0
    assert all(torch.equal(a, b) for a, b in zip(snapshots[5], snapshots[6], strict=True)), \
        "the skipped step changed the weights"
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[6], snapshots[7], strict=True))
    assert result["health_events"]["nonfinite_steps"] == 1 and result["health_events"]["rollbacks"] == 0
    assert result["steps"] == 12 and result["lr_scale"] == 1.0
    assert 5 not in {r["step"] for r in read_log(trainer.out) if "loss" in r and "event" not in r}


def test_bad_steps_in_a_row_roll_back_with_a_lower_lr(tmp_path, small_overrides):
    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=30", "impl.ckpt_every_steps=5",
                           "train.schedule=constant", "train.warmup_frac=0", "train.lr=0.004",
                           "health.max_bad_steps=3", "health.rollback_lr_factor=0.25")
    trainer.grad_hooks.append(PoisonGrads(start=12, count=3))  # steps 12, 13, 14
    result = trainer.run()
    assert [e["step"] for e in events(trainer.out, "nonfinite")] == [12, 13, 14]
    (back,) = events(trainer.out, "rollback")
    assert back["step"] == 14 and back["to_step"] == 10 and back["checkpoint"] == "ckpt-00000010.pt"
    assert back["lr_scale"] == 0.25
    lrs = [(r["step"], r["lr"]) for r in read_log(trainer.out) if "lr" in r and "event" not in r]
    before = [lr for step, lr in lrs[:11]]
    after = [lr for step, lr in lrs[11:]]
    assert set(before) == {0.004} and after and all(lr == pytest.approx(0.001) for lr in after)
    assert [step for step, _ in lrs[11:]] == list(range(11, 31))  # steps 11-30 redone after step 10
    assert result["steps"] == 30 and result["lr_scale"] == 0.25
    assert result["health_events"] == {"nonfinite_steps": 3, "spike_steps": 0, "rollbacks": 1,
                                       "ckpt_failures": 0, "slow_steps": 0}


def test_too_many_rollbacks_stop_with_a_clear_error(tmp_path, small_overrides):
    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=40", "impl.ckpt_every_steps=5",
                           "health.max_bad_steps=2", "health.max_rollbacks=1")
    trainer.grad_hooks.append(PoisonGrads(start=7, count=10_000))  # diverged for good
    with pytest.raises(GocramError, match=r"diverged: 2 bad steps in a row at step 7 after 1 rollback"):
        trainer.run()
    assert len(events(trainer.out, "rollback")) == 1 and events(trainer.out, "gave_up")
    status = json.loads((trainer.out / "status.json").read_text())
    assert status["state"] == "failed" and "diverged" in status["message"]
    assert not (trainer.out / "result.json").exists()


def test_a_loss_spike_is_skipped_then_rolled_back(tmp_path, small_overrides):
    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=40", "impl.ckpt_every_steps=5",
                           "health.spike_zscore=6", "health.spike_window=10", "health.max_bad_steps=3")
    calls = []

    def corrupt_weights(t):  # a bad update lands at step 23: every later loss is far too high
        calls.append(1)
        if len(calls) == 23:
            with torch.no_grad():
                for q in t.model.parameters():
                    q.add_(torch.randn_like(q) * 3)

    trainer.grad_hooks.append(corrupt_weights)
    result = trainer.run()
    spikes = events(trainer.out, "spike")
    assert [e["step"] for e in spikes] == [24, 25, 26]
    assert all(e["zscore"] > 6 and e["loss"] > e["window_mean"] for e in spikes)
    (back,) = events(trainer.out, "rollback")
    assert back["to_step"] == 20 and back["lr_scale"] == 0.5  # step 25 fell in the bad run: no ckpt
    assert result["health_events"]["spike_steps"] == 3 and result["health_events"]["nonfinite_steps"] == 0
    losses = {r["step"]: r["loss"] for r in read_log(trainer.out) if "loss" in r and "event" not in r}
    assert losses[40] < spikes[0]["loss"] / 2  # recovered from the good checkpoint


def test_a_full_disk_keeps_the_previous_checkpoint_and_the_run_going(tmp_path, small_overrides):
    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=30", "impl.ckpt_every_steps=5")

    def full_after_step_10(state, handle):
        if state["progress"]["step"] > 10:
            handle.write(b"\0" * 4096)  # part of a checkpoint, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        torch.save(state, handle)

    trainer.ckpt_dump = full_after_step_10
    result = trainer.run()
    assert result["status"] == "ok" and result["steps"] == 30
    failed = events(trainer.out, "ckpt_failed")
    assert [e["step"] for e in failed] == [15, 20, 25, 30] and {e["errno"] for e in failed} == {28}
    assert result["health_events"]["ckpt_failures"] == 4
    ckpts = list_checkpoints(trainer.out / "checkpoint")
    assert [p.name for p in ckpts] == ["ckpt-00000005.pt", "ckpt-00000010.pt"]
    assert all(checkpoint_problem(p) is None for p in ckpts)
    assert not list((trainer.out / "checkpoint").glob("*.tmp"))


def test_an_unwritable_checkpoint_directory(tmp_path, small_overrides):
    # A file where the directory should be: unwritable even for root, unlike chmod.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint").write_text("not a directory")
    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=5")
    with pytest.raises(GocramError, match="cannot write a checkpoint .* has none to resume from"):
        trainer.run()  # found by the step-0 checkpoint, before any training time is spent
    beat = json.loads((tmp_path / "run" / "status.json").read_text())
    assert beat["state"] == "failed" and "cannot write a checkpoint" in beat["message"]
    assert not events(tmp_path / "run", "resume") and not any("loss" in r for r in read_log(tmp_path / "run")
                                                                 if "event" not in r)

    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=5", "health.require_checkpoints=false")
    result = trainer.run()
    assert result["status"] == "ok" and result["health_events"]["ckpt_failures"] == 2  # step 0, the end


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, small_overrides, capsys):
    args = ["train.max_steps=20", "impl.ckpt_every_steps=5", "impl.keep_checkpoints=3"]
    first = make_trainer(tmp_path, small_overrides, *args)
    first.run()
    original = {r["step"]: r["loss"] for r in read_log(first.out) if "loss" in r}
    newest = list_checkpoints(first.out / "checkpoint")[-1]
    assert newest.name == "ckpt-00000020.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a torn write on a dying disk
    capsys.readouterr()

    again = make_trainer(tmp_path, small_overrides, *args)
    again.run(resume=True)
    err = capsys.readouterr().err
    assert "ckpt-00000020.pt sha256" in err and "truncated or corrupt; trying the previous one" in err
    assert "resumed from" in err and "ckpt-00000015.pt" in err
    resumed = events(first.out, "resume")[-1]
    assert resumed == {"event": "resume", "step": 15, "checkpoint": "ckpt-00000015.pt"}
    records = read_log(first.out)
    redone = [r for r in records[records.index(resumed):] if "loss" in r and "event" not in r]
    assert [r["step"] for r in redone] == [16, 17, 18, 19, 20]
    assert all(r["loss"] == original[r["step"]] for r in redone)


class StallingSampler:
    """Wraps the real sampler; one batch arrives late, as from a starved loader."""

    def __init__(self, inner, *, stall_at: int, seconds: float):
        self.inner, self.stall_at, self.seconds, self.calls = inner, stall_at, seconds, 0

    def next_batch(self):
        self.calls += 1
        if self.calls == self.stall_at:
            time.sleep(self.seconds)
        return self.inner.next_batch()

    def queue_depth(self) -> int:
        return 0  # the queue ran dry: that is why the step waited

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def test_a_stalled_loader_is_reported_by_the_watchdog(tmp_path, small_overrides):
    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=25", "health.stall_factor=5")
    trainer.sampler = StallingSampler(trainer.sampler, stall_at=20, seconds=1.0)
    result = trainer.run()
    slow = {e["step"]: e for e in events(trainer.out, "slow_step")}
    assert 20 in slow, slow
    event = slow[20]
    assert event["loader_wait_s"] >= 1.0 and event["step_s"] >= 1.0 and event["ratio"] > 5
    assert event["queue_depth"] == 0 and event["queue_note"] is None
    assert result["health_events"]["slow_steps"] >= 1
    assert 0.3 < result["loader_wait_frac"] < 1.0  # the one stall dominates 25 millisecond steps
    step20 = next(r for r in read_log(trainer.out) if r.get("step") == 20 and "loss" in r)
    assert step20["loader_wait_s"] >= 1.0

    depth, note = queue_depth(trainer.sampler.inner)  # the in-memory samplers have no queue
    assert depth is None and note == NO_QUEUE


def test_status_of_a_finished_run(tmp_path, small_overrides, capsys):
    from gocram.cli import main

    trainer = make_trainer(tmp_path, small_overrides, "train.max_steps=8")
    trainer.grad_hooks.append(PoisonGrads(start=3))
    result = trainer.run()
    beat = json.loads((trainer.out / "status.json").read_text())
    assert beat["state"] == "finished" and beat["step"] == 8 and beat["pid"] == os.getpid()
    last = [r for r in read_log(trainer.out) if r.get("step") == 8 and "loss" in r][0]
    assert beat["loss"] == last["loss"] and beat["lr"] == last["lr"] and beat["device"]["cpu_util"] >= 0
    assert beat["health_events"]["nonfinite_steps"] == 1 and beat["recent_events"][0]["event"] == "nonfinite"

    assert main(["status", str(trainer.out)]) == 0
    text = capsys.readouterr().out
    assert f"run {trainer.out}: finished" in text
    assert "step 8 / 8" in text and f"best {result['val_bpb']:.4f}" in text
    assert "CPU util" in text and "nonfinite steps 1" in text and "data loader" in text
    assert main(["status", str(trainer.out), "--json"]) == 0
    machine = json.loads(capsys.readouterr().out)
    assert machine["state"] == "finished" and machine["step"] == 8
    assert machine["val_bpb_last"] == result["val_bpb"] and machine["result"]["status"] == "ok"
    assert machine["loader_wait_frac"] == result["loader_wait_frac"] and machine["eta_s"] is None

    assert main(["status", str(tmp_path / "nothing-here")]) == 2
    assert "no status.json or result.json" in capsys.readouterr().err


def heartbeat(run_dir, age_s: float) -> None:
    """A status.json as a live GPU run writes it, `age_s` seconds ago."""
    run_dir.mkdir()
    (run_dir / "status.json").write_text(json.dumps({
        "state": "running", "updated_at": time.time() - age_s, "started_at": time.time() - 4000,
        "pid": 4242, "host": "gpu-box", "heartbeat_every_s": 5.0, "step": 1200, "max_steps": None,
        "clock": "wall", "elapsed_s": 900.0, "budget_s": 3600.0, "fraction": 0.25, "eta_s": 2760.0,
        "tokens": 10_000_000, "tok_per_s": 11111.0, "tok_per_s_trend": [11000.0, 11200.0, 10900.0],
        "loss": 2.3456, "lr": 0.0015, "lr_scale": 0.5, "val_bpb_last": 1.25, "val_bpb_best": 1.21,
        "loader_wait_frac": 0.031, "loader_wait_frac_recent": 0.12,
        "device": {"cpu_util": 6.0, "rss_bytes": 2**31, "note": "NVML", "gpu_util": 97.0,
                   "gpu_mem_used": 40 * 2**30, "gpu_mem_total": 80 * 2**30, "gpu_name": "NVIDIA H100"},
        "health_events": {"nonfinite_steps": 3, "spike_steps": 0, "rollbacks": 1, "ckpt_failures": 0,
                          "slow_steps": 2},
        "recent_events": [{"event": "rollback", "step": 800, "to_step": 750, "lr_scale": 0.5,
                           "time": 1.0}],
    }))


def test_status_of_a_live_run_from_its_heartbeat_alone(tmp_path, capsys):
    from gocram.cli import main

    heartbeat(tmp_path / "live", age_s=3)
    assert main(["status", str(tmp_path / "live")]) == 0
    text = capsys.readouterr().out
    assert "running, heartbeat 3s ago, pid 4242 on gpu-box" in text and "STALE" not in text
    assert "train 900.0 / 3600 s (25.0%) | ETA 45m57s" in text  # the ETA ages with the heartbeat
    assert "NVIDIA H100: util 97% | mem 40.0 / 80.0 GiB" in text
    assert "last 1.2500 | best 1.2100" in text and "trend 11,000 11,200 10,900" in text
    assert "wait 3.1% of step time (recent 12.0%)" in text and "rollbacks 1" in text
    assert "LR scale 0.5" in text and "rollback" in text and "to_step=750" in text

    assert main(["status", str(tmp_path / "live"), "--json"]) == 0
    machine = json.loads(capsys.readouterr().out)
    assert machine["state"] == "running" and machine["stale"] is False and "result" not in machine

    heartbeat(tmp_path / "gone", age_s=3600)
    assert main(["status", str(tmp_path / "gone"), "--watch", "0.01"]) == 0  # stale: does not loop
    assert "STALE" in capsys.readouterr().out


def wait_for_step(run_dir, step: int, proc, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        log = run_dir / "log.jsonl"
        if log.exists() and any(r.get("step", 0) >= step for r in read_log(run_dir) if "loss" in r):
            return
        time.sleep(0.01)
    raise AssertionError(f"the run never reached step {step}")


def gocram_popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "gocram", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_checkpoints_exits_0_and_resumes_exactly(tmp_path, small_overrides):
    overrides = [*small_overrides, "model.dropout=0.1", "train.max_steps=150", "impl.ckpt_every_steps=50",
                 *STEPS]
    args = ["train", "--config", "tiny", *overrides]
    reference = tmp_path / "reference"
    train(load_config("tiny", overrides), reference)  # in-process: the same run, a few s sooner

    stopped = tmp_path / "stopped"
    proc = gocram_popen(*args, "--out", str(stopped))
    wait_for_step(stopped, 60, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM: finishing the current step" in err
    assert not (stopped / "result.json").exists(), "the run finished before it could be stopped"
    (line,) = [x for x in out.splitlines() if "resume with:" in x]
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:2] == ["gocram", "train"] and "--resume" in command and str(stopped) in command
    at = json.loads((stopped / "status.json").read_text())
    assert at["state"] == "stopped" and "SIGTERM" in at["message"]
    (event,) = events(stopped, "stopped")
    assert event["signal"] == "SIGTERM" and at["step"] == event["step"] < 150

    proc = gocram_popen(*command[1:])  # the printed command, run as printed
    assert proc.wait() == 0, proc.stderr.read()
    resumed = events(stopped, "resume")[0]
    assert resumed["step"] == event["step"]  # from the checkpoint the stop wrote, not ckpt 50
    ref_losses = {r["step"]: r["loss"] for r in read_log(reference) if "loss" in r}
    losses = [(r["step"], r["loss"]) for r in read_log(stopped) if "loss" in r]
    assert max(step for step, _ in losses) == 150
    assert all(loss == ref_losses[step] for step, loss in losses)  # bit-identical
    ref_result = json.loads((reference / "result.json").read_text())
    new_result = json.loads((stopped / "result.json").read_text())
    assert new_result["val_bpb"] == ref_result["val_bpb"] and new_result["tokens"] == ref_result["tokens"]


def test_a_second_signal_exits_at_once(tmp_path):
    exits = []
    with GracefulStop(exit_now=exits.append) as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM" and exits == []  # the first one only asks
        os.kill(os.getpid(), signal.SIGINT)
        assert exits == [128 + signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored after the run


def test_a_save_interrupted_by_a_hard_exit_leaves_the_checkpoints_usable(tmp_path):
    # What a second Ctrl-C mid-save leaves behind: a temp file, never a torn checkpoint.
    directory = tmp_path / "checkpoint"
    save_checkpoint({"w": torch.ones(3)}, directory, 10, 2)

    def killed_mid_write(state, handle):
        handle.write(b"\0" * 100)
        raise KeyboardInterrupt  # stands in for the process dying here

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"w": torch.zeros(3)}, directory, 20, 2, dump=killed_mid_write)
    (directory / "ckpt-00000020.pt.tmp").write_bytes(b"\0" * 100)  # os._exit skips the cleanup
    assert latest_good_checkpoint(directory) == directory / "ckpt-00000010.pt"
    save_checkpoint({"w": torch.zeros(3)}, directory, 30, 2)
    assert not list(directory.glob("*.tmp"))  # the next save sweeps stale temp files
    assert [p.name for p in list_checkpoints(directory)] == ["ckpt-00000010.pt", "ckpt-00000030.pt"]


def test_shard_loader_reports_its_queue_depth(shard_files):  # noqa: F811 - the imported fixture
    with_workers = ShardLoader(ShardDataset(shard_files, layout="packed", seq_len=16, batch=3, seed=1,
                                            rank=0, world_size=1), num_workers=2)
    assert with_workers.queue_depth() is None  # no workers yet
    with_workers.next_batch()
    assert 0 <= with_workers.queue_depth() <= 2 * 2  # workers x prefetch_factor
    in_process = ShardLoader(ShardDataset(shard_files, layout="packed", seq_len=16, batch=3, seed=1,
                                          rank=0, world_size=1))
    in_process.next_batch()
    assert in_process.queue_depth() == 0
    assert queue_depth(in_process) == (0, None)
