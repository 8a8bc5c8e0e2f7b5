"""Score every .go file under a directory with a saved run: each file is its own document."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gocram.config import config_from_dict
from gocram.core.env import pick_device
from gocram.core.errors import GocramError
from gocram.data.tokenizer import eos_id, load_tokenizer, token_byte_lengths
from gocram.data.windows import eval_chunks
from gocram.eval.bpb import score_chunks
from gocram.models.gpt import GPT
from gocram.train.checkpoint import latest_checkpoint, load_checkpoint


def load_run(checkpoint: str | Path, device: str = "auto"):
    """(model in eval mode, tokenizer, config) from a run directory or a checkpoint file."""
    path = Path(checkpoint)
    run_dir = path.parent.parent if path.is_file() else path
    ckpt = path if path.is_file() else latest_checkpoint(path / "checkpoint")
    if ckpt is None or not ckpt.is_file():
        raise GocramError(f"no checkpoint found at {checkpoint}")
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise GocramError(f"{tok_path}: tokenizer missing beside the checkpoint")
    state = load_checkpoint(ckpt)
    cfg = config_from_dict(state["config"])
    model = GPT(cfg.model)
    model.load_state_dict(state["model"])
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
