"""Fine-tune a run on a curated set: documented Go functions as (doc comment + signature) -> body.

The set is mined from the run's *train* split, decontaminated against every eval set (word
10-gram overlap with HumanEval-X, MultiPL-E HumanEval/MBPP and the held-out benchmark), and
trained with the loss on the body only (prompt targets are IGNORE_INDEX). With `fim_rate`, that
share of examples is in fill-in-the-middle (prefix, suffix, middle) form, loss on the middle.

Training is the regular Trainer (budget clock, LR schedule, checkpoints, validation, result
row) with `data.layout=finetune`, whose batch source serves these examples. Held-out bits per
byte and HumanEval-X pass@1 (greedy) are measured before and after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_json
from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.batches import Batch
from gocram.data.corpus.docs import read_corpus
from gocram.data.corpus.split import split_by_package
from gocram.data.tokens.prepare import prepare_data
from gocram.data.tokens.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, PAD, eos_id
from gocram.eval.bpb import score_stream
from gocram.eval.gofuncs import GoFunction, extract_functions
from gocram.eval.suites import SUITES, load_suite
from gocram.eval.tree import load_run

NGRAM = 10
MAX_BODY_CHARS = 2000


# -- decontamination -------------------------------------------------------------------------------
def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def eval_ngrams(heldout: list[GoFunction] = ()) -> set[tuple[str, ...]]:
    """Word n-grams of every eval set: prompts, canonical solutions, tests; held-out functions."""
    grams: set[tuple[str, ...]] = set()
    for name in SUITES.names():
        for task in load_suite(name):
            grams |= word_ngrams(task.prompt + "\n" + (task.canonical or "") + "\n" + task.tail)
    for fn in heldout:
        grams |= word_ngrams(fn.prompt + fn.body)
    return grams


def decontaminate(functions: list[GoFunction], grams: set) -> tuple[list[GoFunction], int]:
    """(kept, dropped count): a function sharing any word n-gram with an eval set is dropped."""
    kept = [f for f in functions if not (word_ngrams(f.prompt + f.body) & grams)]
    return kept, len(functions) - len(kept)


# -- examples and their batches --------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    ids: np.ndarray  # [EOS, ..., EOS]
    first_target: int  # ids[first_target:] are predicted; earlier positions are context


def plain_example(tok, fn: GoFunction) -> Example:
    eos = eos_id(tok)
    # Prompt and body are encoded apart, as at inference (prompt encoded, body generated).
    prompt = tok.encode(fn.prompt, add_special_tokens=False).ids
    body = tok.encode(fn.body + "\n", add_special_tokens=False).ids
    return Example(np.asarray([eos, *prompt, *body, eos], dtype=np.int64), 1 + len(prompt))


def fim_example(tok, fn: GoFunction, rng: np.random.Generator) -> Example:
    """PSM order: <prefix> doc+signature+body[:a] <suffix> body[b:] <middle> body[a:b] EOS."""
    eos = eos_id(tok)
    lines = fn.body.splitlines(keepends=True)
    a, b = sorted(rng.integers(0, len(lines) + 1, size=2))
    prefix = fn.prompt + "".join(lines[:a])
    middle, suffix = "".join(lines[a:b]), "".join(lines[b:]) + "\n"

    def enc(text):
        return tok.encode(text, add_special_tokens=False).ids

    head = [eos, tok.token_to_id(FIM_PREFIX), *enc(prefix), tok.token_to_id(FIM_SUFFIX), *enc(suffix),
            tok.token_to_id(FIM_MIDDLE)]
    return Example(np.asarray([*head, *enc(middle), eos], dtype=np.int64), len(head))


class FinetuneSet:
    """The curated examples, ready for the `finetune` layout (passed as PreparedData.train)."""

    def __init__(self, examples: list[Example], pad_id: int):
        if not examples:
            raise GocramError("the fine-tuning set is empty (no documented functions fit model.seq_len)")
        self.examples, self.pad_id = examples, pad_id

    def __len__(self) -> int:
        return len(self.examples)


class FinetuneBatches:
    """One example per row, padded; targets before `first_target` and padding are IGNORE_INDEX."""

    document_mask = False  # one example per row: nothing to keep apart

    def __init__(self, data, *, seq_len: int, batch: int, seed: int, doc_offsets=None):
        if not isinstance(data, FinetuneSet):
            raise GocramError("data.layout=finetune serves curated examples: use `gocram finetune`")
        self.data, self.seq_len, self.batch = data, seq_len, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.batches = 0

    def next_batch(self) -> Batch:
        T = self.seq_len
        picks = torch.randint(0, len(self.data), (self.batch,), generator=self.generator).tolist()
        x = torch.full((self.batch, T), self.data.pad_id, dtype=torch.long)  # (B, T)
        y = torch.full((self.batch, T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for row, index in enumerate(picks):
            ex = self.data.examples[index]
            ids = torch.from_numpy(ex.ids[:T + 1])
            n = len(ids) - 1
            x[row, :n] = ids[:-1]
            y[row, :n] = ids[1:]
            y[row, :ex.first_target - 1] = IGNORE_INDEX  # no loss on the prompt
        self.batches += 1
        return Batch(x=x, y=y)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.batches = state["batches"]


def build_set(tok, functions: list[GoFunction], *, seq_len: int, fim_rate: float, seed: int,
              max_examples: int | None) -> tuple[FinetuneSet, dict]:
    rng = np.random.default_rng(seed)
    examples, too_long = [], 0
    for fn in functions:
        fim = rng.random() < fim_rate
        ex = fim_example(tok, fn, rng) if fim else plain_example(tok, fn)
        if len(ex.ids) > seq_len + 1 or ex.first_target >= len(ex.ids):
            too_long += 1
            continue
        examples.append(ex)
        if max_examples and len(examples) >= max_examples:
            break
    fim_count = sum(int(ex.ids[1] == tok.token_to_id(FIM_PREFIX)) for ex in examples)
    pad = tok.token_to_id(PAD)
    return FinetuneSet(examples, pad if pad is not None else eos_id(tok)), {
        "examples": len(examples), "fim_examples": fim_count, "too_long_for_seq_len": too_long,
        "target_tokens": int(sum(len(ex.ids) - ex.first_target for ex in examples))}


# -- the fine-tuning run ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FinetuneOptions:
    budget_s: float = 60.0
    lr: float = 3e-4
    fim_rate: float = 0.0
    max_examples: int | None = None
    humaneval_limit: int = 0  # 0 = all tasks, -1 = skip pass@1
    jobs: int = 2
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fim_rate <= 1.0:
            raise GocramError(f"--fim-rate must be in [0, 1], got {self.fim_rate}")
        if self.budget_s <= 0 or self.lr <= 0:
            raise GocramError("--budget and --lr must be > 0")


def mine(corpus, data_cfg) -> tuple[list[GoFunction], dict]:
    """Documented functions of the train split, decontaminated; plus counts."""
    train_docs, val_docs = split_by_package(read_corpus(corpus), data_cfg.val_frac, data_cfg.split_salt)
    functions = [f for d in train_docs for f in extract_functions(d.text, f"{d.repo}/{d.path}")
                 if len(f.body) <= MAX_BODY_CHARS]
    heldout = [f for d in val_docs for f in extract_functions(d.text, f"{d.repo}/{d.path}")]
    kept, dropped = decontaminate(functions, eval_ngrams(heldout))
    return kept, {"mined": len(functions), "dropped_by_decontamination": dropped}


def _pass_at_1(model, tok, out: Path, limit: int, jobs: int) -> float | None:
    if limit < 0:
        return None
    from gocram.eval.generate import SamplingConfig
    from gocram.eval.harness import evaluate, select_tasks
    from gocram.eval.sampler import model_source

    tasks = select_tasks(load_suite("humaneval-x"), limit=limit or None)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=256)
    summary = evaluate(tasks, model_source(model, tok, greedy, n=1, batch=1), out,
                       suite="humaneval-x", jobs=jobs)
    return summary["pass@1"]


def finetune(checkpoint: str | Path, out: str | Path, opts: FinetuneOptions) -> dict:
    from gocram.train.trainer import Trainer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GocramError(f"--out {out}: exists and is not empty; choose a new run directory")
    model, tok, cfg = load_run(checkpoint, "cpu")
    run_dir = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent.parent
    ft_cfg = replace(
        cfg,
        train=replace(cfg.train, budget_s=opts.budget_s, lr=opts.lr, clock="wall", max_steps=None,
                      warmup_frac=0.1, schedule="cosine", seed=opts.seed),
        data=replace(cfg.data, layout="finetune", tokenizer=str((run_dir / "tokenizer.json").resolve())),
        impl=replace(cfg.impl, device=opts.device, ckpt_every_s=0.0, ckpt_every_steps=0, eval_every_s=0.0),
    )
    data = prepare_data(ft_cfg.data, ft_cfg.eval, cfg.model.vocab_size)
    functions, counts = mine(ft_cfg.data.corpus, ft_cfg.data)
    ft_set, set_counts = build_set(tok, functions, seq_len=cfg.model.seq_len, fim_rate=opts.fim_rate,
                                   seed=opts.seed, max_examples=opts.max_examples)
    counts.update(set_counts)

    trainer = Trainer(ft_cfg, out, data=replace(data, train=ft_set))
    trainer.model.load_state_dict(model.state_dict())
    before = score_stream(trainer.model, data.val, data.token_bytes, seq_len=cfg.model.seq_len,
                          batch=cfg.impl.eval_micro_batch, device=trainer.device)
    pass_before = _pass_at_1(trainer.model, tok, out / "humaneval-before", opts.humaneval_limit, opts.jobs)
    result = trainer.run()
    pass_after = _pass_at_1(trainer.model, tok, out / "humaneval-after", opts.humaneval_limit, opts.jobs)
    report = {
        "checkpoint": str(checkpoint), "set": counts, "fim_rate": opts.fim_rate,
        "steps": result["steps"], "budget_s": opts.budget_s,
        "before": {"val_bpb": before.bpb, "humaneval_pass@1": pass_before},
        "after": {"val_bpb": result["val_bpb"], "humaneval_pass@1": pass_after},
        "humaneval_tasks": None if opts.humaneval_limit < 0 else (opts.humaneval_limit or 164),
    }
    atomic_write_json(out / "finetune.json", report)
    return report


def format_report(report: dict) -> str:
    def fmt(value, pattern):
        return "not measured" if value is None else pattern.format(value)

    b, a = report["before"], report["after"]
    s = report["set"]
    return "\n".join([
        f"curated set: {s['examples']} examples ({s['fim_examples']} FIM) from {s['mined']} mined "
        f"functions, {s['dropped_by_decontamination']} dropped by decontamination, "
        f"{s['too_long_for_seq_len']} too long",
        "| metric | before | after |", "|---|---|---|",
        f"| held-out bits per byte | {b['val_bpb']:.4f} | {a['val_bpb']:.4f} |",
        f"| HumanEval-X pass@1 (greedy, {report['humaneval_tasks']} tasks) | "
        f"{fmt(b['humaneval_pass@1'], '{:.2%}')} | {fmt(a['humaneval_pass@1'], '{:.2%}')} |",
    ])
