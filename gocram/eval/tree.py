"""Score every .go file under a directory with a saved run: each file is its own document."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gocram.config import config_from_dict
from gocram.core.env import pick_device
from gocram.core.errors import GocramError
from gocram.data.batching.windows import eval_chunks
from gocram.data.tokens.tokenizer import eos_id, load_tokenizer, token_byte_lengths
from gocram.eval.bpb import score_chunks
from gocram.models.gpt import GPT
from gocram.train.checkpoint import (
    checkpoint_problem,
    latest_good_checkpoint,
    list_checkpoints,
    read_checkpoint,
)


def _warn(message: str) -> None:
    print(f"gocram: warning: {message}", file=sys.stderr, flush=True)


def pick_checkpoint(checkpoint: str | Path, warn: Callable[[str], None] = _warn) -> Path:
    """The checkpoint a command loads. A run directory: its newest intact checkpoint (sha256
    sidecar checked, as --resume does), each skipped one reported through warn. A named file: that
    file, verified, or a one-line GocramError naming it (the user asked for that one)."""
    path = Path(checkpoint)
    if path.is_file():
        problem = checkpoint_problem(path)
        if problem:
            raise GocramError(f"checkpoint {path} {problem}")
        return path
    directory = path / "checkpoint"
    if not path.is_dir() or not list_checkpoints(directory):
        raise GocramError(f"no checkpoint found at {checkpoint}")
    good = latest_good_checkpoint(directory, warn)
    if good is None:
        raise GocramError(f"{directory}: no intact checkpoint (every ckpt-*.pt failed its check)")
    return good


def load_run(checkpoint: str | Path, device: str = "auto"):
    """(model in eval mode, tokenizer, config) from a run directory or a checkpoint file."""
    ckpt = pick_checkpoint(checkpoint)
    run_dir = ckpt.parent.parent
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise GocramError(f"{tok_path}: tokenizer missing beside the checkpoint")
    state = read_checkpoint(ckpt)
    missing = [key for key in ("config", "model") if key not in state]
    if missing:
        raise GocramError(f"{ckpt}: not a gocram checkpoint (no {' or '.join(missing)})")
    try:
        cfg = config_from_dict(state["config"])
    except (GocramError, TypeError, AttributeError, KeyError, ValueError) as err:
        raise GocramError(f"{ckpt}: its config is invalid: {err}") from None
    model = GPT(cfg.model)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise GocramError(f"{ckpt}: its weights do not fit its config ({first[:200]})") from None
    model.to(pick_device(device)).eval()
    return model, load_tokenizer(tok_path), cfg


def score_tree(checkpoint: str | Path, directory: str | Path, *, batch: int = 16,
               device: str = "auto") -> dict:
    root = Path(directory)
    if not root.is_dir():
        raise GocramError(f"directory not found: {root}")
    model, tok, cfg = load_run(checkpoint, device)
    eos, token_bytes = eos_id(tok), token_byte_lengths(tok)
    chunks, files, skipped = [], 0, 0
    for path in sorted(root.rglob("*.go")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            skipped += 1
            continue
        if not text:
            continue
        ids = np.asarray([eos, *tok.encode(text, add_special_tokens=False).ids], dtype=np.int64)
        chunks += eval_chunks(ids, cfg.model.seq_len)
        files += 1
    if not files:
        raise GocramError(f"{root}: no readable .go files to score")
    score = score_chunks(model, chunks, token_bytes, batch=batch,
                         device=next(model.parameters()).device)
    return {"bpb": score.bpb, "loss": score.loss, "bytes": score.bytes, "tokens": score.tokens,
            "files": files, "skipped_files": skipped}
