"""Engines on CPU with 2 gloo processes: same parameters as one process on the same global batch,
checkpoint/resume under each engine, and SIGKILL-and-resume under DDP.

The reference is one process with micro_batch 8; every engine runs 2 processes with micro_batch 4
and train.batch_tokens = 8 * 64, so both take the same 8 random windows per step (windows.py draws
the global batch and each rank keeps its slice). DeepSpeed's first CPU run JIT-builds its
shared-memory comm op (about 90 s on 2 cores, cached in ~/.cache/torch_extensions afterwards).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from gocram.config import load_config
from gocram.core.errors import ConfigError, GocramError
from gocram.train.checkpoint import latest_checkpoint, load_checkpoint
from gocram.train.trainer import Trainer
from tests.conftest import ADAMW_RECIPE, REPO, run_gocram

# Exact engines differ from one process only by the order of fp32 reductions (measured: max
# |delta param| ~1e-6 after 8 steps); FSDP and ZeRO-3 also reduce-scatter and regather shards.
TOLERANCE = {"ddp": 1e-5, "zero1": 1e-5, "zero2": 1e-5, "fsdp": 1e-4, "zero3": 1e-4}
needs_deepspeed = pytest.mark.skipif(find_spec("deepspeed") is None, reason="deepspeed not installed")
ENGINE_PARAMS = [pytest.param(e, marks=needs_deepspeed) if e.startswith("zero") else e for e in TOLERANCE]


@pytest.fixture(scope="module")
def base_args(go_corpus, cache_dir) -> list[str]:
    return [
        "--config", "tiny", "model.n_layer=2", "model.n_head=2", "model.d_model=64",
        "model.seq_len=64", "model.vocab_size=512", "impl.progress_every_s=1000",
        f"data.corpus={go_corpus}", f"data.cache_dir={cache_dir}", "data.val_frac=0.2",
        "eval.max_bytes=20000", "impl.eval_every_s=0", "train.clock=steps", "impl.ckpt_every_s=0",
        "impl.log_every_steps=1", "train.batch_tokens=512",
        "train.precision=fp32",  # auto is bf16 on a CPU with native bf16; the tolerances are fp32's
        # ZeRO and FSDP cannot run Muon (the plan rejects it); Muon under DDP is in test_optimizers
        *ADAMW_RECIPE,
    ]


SHORT = ["train.max_steps=8", "impl.ckpt_every_steps=4"]


def torchrun(*args: str, timeout: float = 600, popen: bool = False):
    env = {**os.environ, "PYTHONPATH": str(REPO), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gocram", "train", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def descendants(pid: int) -> list[int]:
    """Every process below pid: torchrun starts each worker in a session of its own, so killing
    the launcher's process group would leave the workers running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def read_log(run_dir) -> list[dict]:
    text = (run_dir / "log.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(run_dir) if "loss" in r}


def final_params(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(run_dir / "checkpoint"))["model"]


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, base_args):
    out = tmp_path_factory.mktemp("single") / "run"
    done = run_gocram("train", *base_args, *SHORT, "train.micro_batch=8", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_engine_matches_one_process_and_resumes(engine, tmp_path, single_run, base_args):
    out = tmp_path / engine
    torchrun(*base_args, *SHORT, "train.micro_batch=4", "--engine", engine, "--out", str(out))
    result = json.loads((out / "result.json").read_text())
    reference = json.loads((single_run / "result.json").read_text())
    assert result["world_size"] == 2 and result["engine"] == engine
    assert result["tokens"] == reference["tokens"]
    # validation split over the ranks: every val byte scored once, the same score
    assert (result["val_bytes"], result["val_tokens"]) == (reference["val_bytes"], reference["val_tokens"])
    assert result["val_bpb"] == pytest.approx(reference["val_bpb"], rel=1e-5)
    ref = losses(single_run)
    assert losses(out) == pytest.approx(ref, rel=1e-5)
    assert max_diff(final_params(out), final_params(single_run)) < TOLERANCE[engine]

    # Resume from the step-4 checkpoint: steps 5-8 again, ending where the uninterrupted run did.
    resumed = tmp_path / f"{engine}-resumed"
    shutil.copytree(out, resumed)
    for path in (resumed / "checkpoint").glob("ckpt-00000008*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (resumed / "result.json").unlink()
    torchrun(*base_args, *SHORT, "train.micro_batch=4", "--engine", engine, "--out", str(resumed),
             "--resume")
    records = read_log(resumed)
    assert next(r["step"] for r in records if r.get("event") == "resume") == 4
    assert max_diff(final_params(resumed), final_params(out)) == 0.0
    assert losses(resumed) == losses(out)  # the last value per step is the resumed one


def test_sigkill_under_ddp_then_resume_reproduces_the_losses(tmp_path, base_args):
    args = [*base_args, "train.micro_batch=4", "train.max_steps=200", "impl.ckpt_every_steps=25",
            "--engine", "ddp"]
    reference = tmp_path / "reference"
    torchrun(*args, "--out", str(reference))

    killed = tmp_path / "killed"
    proc = torchrun(*args, "--out", str(killed), popen=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (killed / "log.jsonl").exists() and any(
                r.get("step", 0) >= 60 for r in read_log(killed) if "loss" in r):
            break
        time.sleep(0.01)
    for pid in [*descendants(proc.pid), proc.pid]:  # both workers and the launcher, mid-run
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists(), "the run finished before it could be killed"

    torchrun(*args, "--out", str(killed), "--resume")
    records = read_log(killed)
    resumed_at = next(r["step"] for r in records if r.get("event") == "resume")
    assert 50 <= resumed_at < 200 and resumed_at % 25 == 0
    ref_losses = losses(reference)
    for r in records:
        if "loss" in r:  # before the kill and after the resume
            assert r["loss"] == ref_losses[r["step"]], r["step"]
    assert json.loads((killed / "result.json").read_text())["val_bpb"] == \
        json.loads((reference / "result.json").read_text())["val_bpb"]



def worker_with_rank(launcher: int, rank: int) -> int:
    for pid in descendants(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"LOCAL_RANK=" + str(rank).encode() in environ:
            return pid
    raise AssertionError(f"no worker with RANK={rank} under {launcher}")


def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step_with_a_checkpoint(tmp_path, base_args):
    """A signal that reaches one worker only (a preemption notice, an operator's kill) is agreed
    on at the next step: both ranks leave the loop together and write one checkpoint, no hang."""
    args = [*base_args, "train.micro_batch=4", "train.max_steps=400", "--engine", "ddp"]
    out = tmp_path / "run"
    proc = torchrun(*args, "--out", str(out), popen=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "log.jsonl").exists() and any(
            r.get("step", 0) >= 5 for r in read_log(out) if "loss" in r)):
        time.sleep(0.01)
    os.kill(worker_with_rank(proc.pid, 1), signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    records = read_log(out)
    stopped = next(r for r in records if r.get("event") == "stopped")
    assert 5 <= stopped["step"] < 400 and not (out / "result.json").exists()
    assert load_checkpoint(latest_checkpoint(out / "checkpoint"))["progress"]["step"] == stopped["step"]
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"

    torchrun(*args, "--out", str(out), "--resume")
    assert next(r["step"] for r in read_log(out) if r.get("event") == "resume") == stopped["step"]
    assert json.loads((out / "result.json").read_text())["steps"] == 400

# -- fast checks, no process group -----------------------------------------------------------------

def test_engine_settings_are_checked_when_the_config_is_built():
    with pytest.raises(ConfigError, match="impl.engine: .*'zero4'"):
        load_config("tiny", ["impl.engine=zero4"])
    with pytest.raises(ConfigError, match="impl.engine='zero3' cannot run with impl.compile"):
        load_config("tiny", ["impl.engine=zero3", "impl.compile=true", "train.optimizer=adamw"])
    with pytest.raises(ConfigError, match="impl.engine='fsdp' cannot run with train.precision=fp16"):
        load_config("tiny", ["impl.engine=fsdp", "train.precision=fp16", "train.optimizer=adamw"])
    assert load_config("tiny", ["impl.engine=ddp", "impl.compile=true"]).impl.engine == "ddp"


def test_a_multi_process_engine_outside_torchrun_says_how_to_launch(tmp_path, small_overrides,
                                                                     monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    cfg = load_config("tiny", small_overrides + ["impl.engine=ddp"])
    with pytest.raises(GocramError, match="torchrun --nproc_per_node"):
        Trainer(cfg, tmp_path)


def test_the_resume_line_keeps_the_engine_and_the_launcher(monkeypatch):
    from argparse import Namespace

    from gocram.train.cli import resume_command

    args = Namespace(config="tiny", budget=60.0, engine="ddp", out="runs/x", overrides=["train.lr=1e-3"])
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert resume_command(args) == ("torchrun --nproc_per_node 2 -m gocram train --config tiny --budget 60.0 "
                                    "--engine ddp --out runs/x --resume train.lr=1e-3")
    monkeypatch.setenv("WORLD_SIZE", "1")
    single = Namespace(**{**vars(args), "engine": None})
    assert resume_command(single).startswith("gocram train --config tiny")


def test_random_windows_split_the_global_batch_across_ranks():
    import numpy as np

    from gocram.data.batching.windows import RandomWindows

    tokens = np.arange(5000, dtype=np.int64)
    whole = RandomWindows(tokens, seq_len=16, batch=8, seed=3, slot=(0, 1))
    parts = [RandomWindows(tokens, seq_len=16, batch=4, seed=3, slot=(r, 2)) for r in range(2)]
    for _ in range(3):
        assert torch.equal(whole.next_batch().x, torch.cat([p.next_batch().x for p in parts]))
    with pytest.raises(ValueError, match="saved by reader"):
        parts[1].load_state_dict(parts[0].state_dict())
