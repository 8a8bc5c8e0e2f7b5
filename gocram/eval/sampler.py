"""Completions for suite tasks from a model: n samples per task, decoded `batch` at a time."""

from __future__ import annotations

import zlib
from dataclasses import replace

from gocram.eval.generate import SamplingConfig, generate
from gocram.eval.suites import Task


def model_source(model, tokenizer, cfg: SamplingConfig, *, n: int, batch: int):
    """task -> [(completion, stop reason)] * n, with the task's own stop strings added."""

    def complete(task: Task) -> list[tuple[str, str]]:
        task_cfg = replace(cfg, stop_strings=(*cfg.stop_strings, *task.stop_strings))
        out = []
        for start in range(0, n, batch):
            # A seed per task and chunk: results do not depend on which tasks ran before.
            seed = (cfg.seed + zlib.crc32(task.task_id.encode()) + start) % 2**63
            chunk = generate(model, tokenizer, task.prompt, replace(task_cfg, seed=seed),
                             n=min(batch, n - start))
            out += [(c.text, c.stop_reason) for c in chunk]
        return out

    return complete
