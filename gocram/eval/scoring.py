"""Scoring like a compressor: chunked, sliding-window, stream and score-first adaptive scoring.

A document is a token array [EOS, ids...]. Every mode scores every target token once:
- chunked (stride 0): non-overlapping T-token chunks per document (today's headline);
- sliding (stride S): windows every S tokens, each scoring only its last S targets, so a scored
  token after the first window sees at least T - S tokens before it;
- stream: the documents joined in a stated order into one token stream (EOS between them), so
  context crosses file boundaries as it does for a compressor reading the concatenation;
- adapt: windows in order, each scored first with the current weights and only then trained on.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gocram.core.errors import GocramError
from gocram.core.registry import Registry
from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.windows import eval_chunks, sliding_windows
from gocram.eval.bpb import Score, score_chunks

Window = tuple[np.ndarray, np.ndarray]


def windows_for(tokens: np.ndarray, seq_len: int, stride: int) -> list[Window]:
    """Chunked windows for stride 0, sliding ones otherwise."""
    if stride == 0:
        return eval_chunks(tokens, seq_len)
    if not 1 <= stride <= seq_len:
        raise GocramError(f"stride {stride} must be 0 (chunked) or between 1 and seq_len={seq_len}")
    return sliding_windows(tokens, seq_len, stride)


def document_windows(documents: list[np.ndarray], seq_len: int, *, stride: int = 0,
                     stream: bool = False) -> list[list[Window]]:
    """Windows per document, or one list for the stream of all documents joined in order."""
    if stream:
        joined = np.concatenate(documents) if documents else np.zeros(0, dtype=np.int64)
        return [windows_for(joined, seq_len, stride)]
    return [windows_for(doc, seq_len, stride) for doc in documents]


@torch.no_grad()
def token_nlls(model, windows: list[Window], *, device="cpu") -> np.ndarray:
    """NLL (nats) of every scored target, in target order: for tests and per-token analysis."""
    out = []
    for x, y in windows:
        logits = model(torch.from_numpy(x)[None].to(device)).float()[0]  # (T, V)
        nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).to(device),
                                                ignore_index=IGNORE_INDEX, reduction="none")
        out.append(nll[torch.from_numpy(y != IGNORE_INDEX).to(device)].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


# -- score-first online adaptation ---------------------------------------------------------------
ADAPT_OPTIMIZERS = Registry("adaptation optimizer")


@ADAPT_OPTIMIZERS.register("sgd")
def _sgd(params, lr: float):
    return torch.optim.SGD(params, lr=lr)


@ADAPT_OPTIMIZERS.register("adam")
def _adam(params, lr: float):
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))


@dataclass(frozen=True, kw_only=True)
class AdaptConfig:
    lr: float = 1e-4
    optimizer: str = "adam"
    steps: int = 1  # optimizer steps on each window after it is scored
    windows_per_step: int = 1  # windows scored together, then trained on together
    reset_per_file: bool = False  # start every document from the checkpoint's weights

    def __post_init__(self) -> None:
        if self.optimizer not in ADAPT_OPTIMIZERS:
            raise GocramError(f"adapt optimizer {self.optimizer!r} is not one of "
                              f"{ADAPT_OPTIMIZERS.names()}")
        if not self.lr > 0:
            raise GocramError(f"adapt lr must be > 0, got {self.lr}")
        if self.steps < 1 or self.windows_per_step < 1:
            raise GocramError("adapt steps and windows per step must be >= 1")


class OnlineAdapter:
    """A private copy of a model that scores a batch of windows, then takes steps on them.

    The copy stays in eval mode while learning (no dropout, no token drop): the only thing that
    changes between two scorings is the weights.
    """

    def __init__(self, model, cfg: AdaptConfig, *, device="cpu"):
        self.cfg, self.device = cfg, device
        self.model = copy.deepcopy(model).to(device).eval()
        self._initial = copy.deepcopy(self.model.state_dict())
        self.reset()

    def reset(self) -> None:
        self.model.load_state_dict(self._initial)
        self.optimizer = ADAPT_OPTIMIZERS.build(self.cfg.optimizer, self.model.parameters(),
                                                lr=self.cfg.lr)

    def _batch(self, windows: list[Window]):
        x = torch.from_numpy(np.stack([w[0] for w in windows])).to(self.device)
        y = torch.from_numpy(np.stack([w[1] for w in windows])).to(self.device)
        return x, y

    @torch.no_grad()
    def score(self, windows: list[Window]) -> float:
        x, y = self._batch(windows)
        return self.model(x, y, reduction="sum").item()

    def learn(self, windows: list[Window]) -> None:
        x, y = self._batch(windows)
        if not (y != IGNORE_INDEX).any():
            return
        with torch.enable_grad():
            for _ in range(self.cfg.steps):
                self.optimizer.zero_grad(set_to_none=True)
                self.model(x, y, reduction="mean").backward()
                self.optimizer.step()


def score_adaptive(model, documents: list[list[Window]], token_bytes: np.ndarray,
                   cfg: AdaptConfig, *, device="cpu") -> tuple[Score, list[float]]:
    """(total score, NLL of every group of windows in order): each group is scored, then learned."""
    adapter = OnlineAdapter(model, cfg, device=device)
    nll, tokens, n_bytes, per_group = 0.0, 0, 0, []
    for i, windows in enumerate(documents):
        if cfg.reset_per_file and i:
            adapter.reset()
        for start in range(0, len(windows), cfg.windows_per_step):
            group = windows[start:start + cfg.windows_per_step]
            group_nll = adapter.score(group)  # first: weights that have not seen these targets
            adapter.learn(group)  # only then
            per_group.append(group_nll)
            nll += group_nll
            real = np.concatenate([y[y != IGNORE_INDEX] for _, y in group])
            tokens += real.size
            n_bytes += int(token_bytes[real].sum())
    return Score(nll, tokens, n_bytes), per_group


def score_documents(model, documents: list[list[Window]], token_bytes: np.ndarray, *, batch: int,
                    device="cpu") -> Score:
    return score_chunks(model, [w for doc in documents for w in doc], token_bytes, batch=batch,
                        device=device)


# -- a directory of Go files ---------------------------------------------------------------------
@dataclass(frozen=True)
class GoFiles:
    """The readable, non-empty .go files under a directory, in the stream order."""

    paths: list[str]  # relative POSIX paths, sorted as strings: the stated stream order
    texts: list[str]
    skipped: int  # unreadable or not UTF-8

    @property
    def blobs(self) -> list[bytes]:
        return [t.encode("utf-8") for t in self.texts]

    def order_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.paths).encode()).hexdigest()


def read_go_files(directory: str | Path) -> GoFiles:
    root = Path(directory)
    if not root.is_dir():
        raise GocramError(f"directory not found: {root}")
    found = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.go") if p.is_file())
    paths, texts, skipped = [], [], 0
    for rel, path in found:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            skipped += 1
            continue
        if text:
            paths.append(rel)
            texts.append(text)
    if not paths:
        raise GocramError(f"{root}: no readable .go files to score")
    return GoFiles(paths, texts, skipped)


def encode_documents(tok, texts: list[str]) -> list[np.ndarray]:
    """[EOS, ids...] per text, as training and the validation set see documents."""
    from gocram.data.tokens.tokenizer import eos_id

    eos = eos_id(tok)
    return [np.asarray([eos, *enc.ids], dtype=np.int64)
            for enc in tok.encode_batch(texts, add_special_tokens=False)]


# -- `gocram eval bpb` ---------------------------------------------------------------------------
def score_directory(checkpoint: str | Path, directory: str | Path, *, stride: int = 0,
                    stream: bool = False, adapt: AdaptConfig | None = None, batch: int = 16,
                    device: str = "auto", comparators: bool = True) -> dict:
    """Chunked per-file bpb (the headline's mode), the asked-for mode beside it, comparators."""
    from gocram.data.tokens.tokenizer import token_byte_lengths
    from gocram.eval.comparators import compare
    from gocram.eval.tree import load_run

    if not Path(directory).is_dir():
        raise GocramError(f"directory not found: {directory}")
    model, tok, cfg = load_run(checkpoint, device)  # a bad checkpoint is named before the files
    files = read_go_files(directory)
    seq_len, dev = cfg.model.seq_len, next(model.parameters()).device
    windows_for(np.zeros(2, dtype=np.int64), seq_len, stride)  # a bad --stride fails before work
    docs = encode_documents(tok, files.texts)
    token_bytes = token_byte_lengths(tok)
    chunked = score_documents(model, document_windows(docs, seq_len), token_bytes, batch=batch,
                              device=dev)
    row = {"bpb": chunked.bpb, "loss": chunked.loss, "bytes": chunked.bytes,
           "tokens": chunked.tokens, "files": len(files.paths), "skipped_files": files.skipped,
           "seq_len": seq_len,
           "order": "relative paths sorted as strings", "order_sha256": files.order_sha256()}
    if stride or stream or adapt:
        windows = document_windows(docs, seq_len, stride=stride, stream=stream)
        if adapt:
            score, _ = score_adaptive(model, windows, token_bytes, adapt, device=dev)
        else:
            score = score_documents(model, windows, token_bytes, batch=batch, device=dev)
        row["mode"] = {"stride": stride, "stream": stream,
                       "adapt": None if adapt is None else dataclasses.asdict(adapt)}
        row["mode_bpb"], row["mode_loss"], row["mode_tokens"] = score.bpb, score.loss, score.tokens
    if comparators:
        row["comparators"] = compare(files.blobs)
    return row
