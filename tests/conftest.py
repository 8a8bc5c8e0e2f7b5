"""Shared fixtures: a small Go corpus cut from the embedded sample, and a fast model config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent

# Tiny models on a shared 2-core machine run 10-70x slower with torch's default thread pool than
# with one thread (spinning OpenMP workers also starve Triton's single-threaded interpreter); the
# CLI subprocesses inherit this through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
SAMPLE = REPO / "corpus" / "sample" / "chunk-00000.parquet"


@pytest.fixture(scope="session")
def go_corpus(tmp_path_factory) -> Path:
    """~40 packages of real Go (about 300 KB) as a plain directory tree."""
    root = tmp_path_factory.mktemp("go_corpus")
    table = pq.read_table(SAMPLE, columns=["content", "max_stars_repo_name", "max_stars_repo_path"])
    rows = table.slice(0, 1500).to_pylist()
    per_dir: dict[str, int] = {}
    for row in rows:
        directory = f"{row['max_stars_repo_name']}/{os.path.dirname(row['max_stars_repo_path'])}"
        if per_dir.get(directory, 0) >= 3 or len(per_dir) >= 40 and directory not in per_dir:
            continue
        per_dir[directory] = per_dir.get(directory, 0) + 1
        path = root / directory / os.path.basename(row["max_stars_repo_path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(row["content"][:20_000])
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gocram_cache")


SMALL_MODEL = ["model.n_layer=2", "model.n_head=2", "model.d_model=64", "model.seq_len=64",
               "model.vocab_size=512"]


# The suite's tolerances and step counts were set on AdamW with the full-logits loss; Muon (tiny's
# optimizer since it became the record), the chunked loss and the AdamW kernels have their own
# tests, which name them.
ADAMW_RECIPE = ["train.optimizer=adamw", "impl.loss=torch", "impl.optimizer_kernel=auto"]


def small_overrides_for(go_corpus: Path, cache_dir: Path) -> list[str]:
    """A 2-layer, d=64, T=64 model on the small corpus: a training step takes milliseconds."""
    return [
        *SMALL_MODEL, "train.micro_batch=4", "impl.progress_every_s=1000",
        f"data.corpus={go_corpus}", f"data.cache_dir={cache_dir}", "data.val_frac=0.2",
        "eval.max_bytes=20000", "impl.eval_every_s=0",
        # auto would pick bf16 on a CPU with native bf16: keep the suite's numbers machine-independent
        "train.precision=fp32", *ADAMW_RECIPE,
    ]


@pytest.fixture
def small_overrides(go_corpus, cache_dir) -> list[str]:
    return small_overrides_for(go_corpus, cache_dir)


def run_gocram(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "gocram", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
