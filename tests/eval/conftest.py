"""Fixtures for the eval tests: a tokenizer, runs with random weights, and one briefly trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gocram.config import load_config
from gocram.data.tokens.tokenizer import train_bpe
from gocram.models.gpt import GPT
from gocram.train.checkpoint import save_checkpoint
from gocram.train.trainer import train
from tests.conftest import SMALL_MODEL, small_overrides_for


@pytest.fixture(scope="session")
def go_tokenizer(go_corpus, tmp_path_factory):
    texts = [p.read_text() for p in sorted(go_corpus.rglob("*.go"))]
    tok = train_bpe(texts, 512)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def make_run(run_dir: Path, tokenizer_path: Path, overrides: list[str] = (), *, std: float = 0.3,
             seed: int = 0) -> Path:
    """A run directory holding a model with random (large, so logits differ) weights."""
    cfg = load_config("tiny", [*SMALL_MODEL, *overrides])
    torch.manual_seed(seed)
    model = GPT(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    run_dir.mkdir(parents=True)
    (run_dir / "tokenizer.json").write_bytes(Path(tokenizer_path).read_bytes())
    save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict()}, run_dir / "checkpoint", 1, 1)
    return run_dir


@pytest.fixture(scope="session")
def trained_run(go_corpus, cache_dir, tmp_path_factory) -> Path:
    """A tiny model trained for 3 seconds on the small corpus (the run dir)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    cfg = load_config("tiny", [*small_overrides_for(go_corpus, cache_dir), "train.budget_s=3"])
    train(cfg, out)
    return out

