import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gocram.config import load_config
from gocram.core.errors import GocramError
from gocram.train.trainer import train
from tests.conftest import REPO, run_gocram

RESULT_KEYS = {
    "val_bpb", "val_loss", "tokens_per_s", "bytes_per_s", "mfu", "steps", "compile_s", "device",
    "config_hash", "git_sha", "versions", "xz_bpb", "eval_s", "peak_mem_bytes", "status",
}


def read_log(run_dir):
    """Complete lines only: a run being written (or killed) may leave a torn last line."""
    text = (run_dir / "log.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_budget_stops_at_first_step_boundary_past_it(tmp_path, small_overrides):
    cfg = load_config("tiny", small_overrides + ["train.budget_s=2", "impl.log_every_steps=1"])
    result = train(cfg, tmp_path / "run")
    steps = [r for r in read_log(tmp_path / "run") if "loss" in r]
    last = steps[-1]
    assert result["steps"] == last["step"] == len(steps)
    # The budget was crossed by the last step, not by an earlier one (every step is logged; the
    # log rounds elapsed_s to 1 ms, and a step's own step_s leaves out the loop's overhead).
    before_last = steps[-2]["elapsed_s"] if len(steps) > 1 else 0.0
    assert before_last <= 2.0 <= last["elapsed_s"] + 1e-3
    assert result["elapsed_s"] == pytest.approx(last["elapsed_s"], abs=1e-3)
    assert RESULT_KEYS <= set(result)
    assert result["eval_s"] > 0 and result["tokens"] == result["steps"] * 4 * 64


def test_lr_follows_the_budget_fraction(tmp_path, small_overrides):
    cfg = load_config("tiny", small_overrides + [
        "train.clock=steps", "train.max_steps=20", "impl.log_every_steps=1",
        "train.warmup_frac=0.1", "train.lr=0.01", "train.min_lr_ratio=0.1"])
    train(cfg, tmp_path / "run")
    lrs = {r["step"]: r["lr"] for r in read_log(tmp_path / "run") if "lr" in r}
    assert lrs[1] == 0.0 and lrs[2] == pytest.approx(0.005) and lrs[3] == pytest.approx(0.01)
    assert lrs[20] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5 * (1 + __import__("math").cos(
        __import__("math").pi * (19 / 20 - 0.1) / 0.9))))


def test_cli_train_then_eval_bpb(tmp_path, small_overrides, go_corpus):
    out = tmp_path / "run"
    done = run_gocram("train", "--config", "tiny", "--budget", "3", "--out", str(out),
                      *small_overrides, "impl.progress_every_s=0.5")
    assert done.returncode == 0, done.stderr
    assert "val bits per byte" in done.stdout and "xz -9e" in done.stdout
    assert "[train" in done.stderr  # live progress line
    result = json.loads((out / "result.json").read_text())
    assert RESULT_KEYS <= set(result) and result["status"] == "ok"
    # a CPU run's MFU is against the matmul peak measured in its own process
    assert 0 < result["mfu"] < 1 and "measured matmul peak" in result["mfu_note"]
    assert (out / "tokenizer.json").is_file() and list((out / "checkpoint").glob("ckpt-*.pt"))
    assert list((out / "tb").iterdir())  # TensorBoard scalars

    package = next(p for p in go_corpus.rglob("*.go")).parent
    done = run_gocram("eval", "bpb", "--checkpoint", str(out), "--dir", str(package))
    assert done.returncode == 0, done.stderr
    scored = json.loads(done.stdout)
    files = sorted(package.rglob("*.go"))
    assert scored["files"] == len(files)
    assert scored["bytes"] == sum(len(f.read_bytes()) for f in files)
    assert 0.5 < scored["bpb"] < 10


def test_resume_with_another_config_is_refused(tmp_path, small_overrides):
    base = small_overrides + ["train.clock=steps", "train.max_steps=3"]
    train(load_config("tiny", base), tmp_path / "run")
    with pytest.raises(GocramError, match="differs in model.n_layer"):
        train(load_config("tiny", base + ["model.n_layer=3"]), tmp_path / "run", resume=True)


def test_sigkill_then_resume_reproduces_the_uninterrupted_losses(tmp_path, small_overrides):
    args = ["train", "--config", "tiny", *small_overrides, "model.d_model=128",
            "model.dropout=0.1", "train.micro_batch=8", "train.clock=steps",
            "train.max_steps=300", "impl.ckpt_every_steps=25", "impl.ckpt_every_s=0",
            "impl.log_every_steps=1"]
    reference = tmp_path / "reference"
    assert run_gocram(*args, "--out", str(reference)).returncode == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "gocram", *args, "--out", str(killed)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        log = killed / "log.jsonl"
        if log.exists() and any(r.get("step", 0) >= 110 for r in read_log(killed) if "loss" in r):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists(), "the run finished before it could be killed"

    done = run_gocram(*args, "--out", str(killed), "--resume")
    assert done.returncode == 0, done.stderr
    ref_losses = {r["step"]: r["loss"] for r in read_log(reference) if "loss" in r}
    records = read_log(killed)
    resumed_at = next(r["step"] for r in records if r.get("event") == "resume")
    assert 100 <= resumed_at < 300 and resumed_at % 25 == 0
    for r in records:
        if "loss" in r:  # before the kill and after the resume: bit-identical
            assert r["loss"] == ref_losses[r["step"]], r["step"]
    assert max(r["step"] for r in records if "loss" in r) == 300
    ref_result = json.loads((reference / "result.json").read_text())
    new_result = json.loads((killed / "result.json").read_text())
    assert new_result["val_bpb"] == ref_result["val_bpb"]
    assert new_result["tokens"] == ref_result["tokens"]


def test_impl_threads_is_applied_at_run_start_and_validated(tmp_path, small_overrides):
    import torch

    from gocram.core.errors import ConfigError

    steps = [*small_overrides, "train.clock=steps", "train.max_steps=2", "impl.ckpt_every_s=0",
             "impl.log_every_steps=1"]
    before = torch.get_num_threads()
    try:
        result = train(load_config("tiny", [*steps, "impl.threads=2"]), tmp_path / "two")
        assert result["threads"] == torch.get_num_threads() == 2
        logged = [r["loss"] for r in read_log(tmp_path / "two") if "loss" in r]
        assert [loss for loss, _ in result["first_losses"]] == logged and len(logged) == 2
        torch.set_num_threads(before)
        result = train(load_config("tiny", [*steps, "impl.threads=0"]), tmp_path / "default")
        assert result["threads"] == torch.get_num_threads() == before  # 0 leaves it alone
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="impl.threads must be"):
        load_config("tiny", ["impl.threads=-1"])
