"""Where one training step's milliseconds go, part by part, in fp32 and in bf16 autocast.

    python -m gocram.bench.step_profile --config tiny --precision fp32 bf16 --steps 20 \\
        --out results/step-profile/
    python -m gocram.bench.step_profile --config tiny --precision fp32 \\
        --vary impl.newton_schulz=torch,bf16,fp32 --out results/muon-speed/

Builds the config's model and optimizer (no data: random token ids of the config's batch shape),
runs a few untimed warm-up steps, then times `--steps` steps. The forward is split by part with
timers on the modules (forward pre/post hooks): embeddings (token and position tables), attention
(qkv, the backend, the output projection), MLP, norms (every block's two and the final one), and
the loss (output head + cross-entropy, timed around the loss call); `forward other` is the rest of
the forward (residual adds, dropout). The backward and the optimizer (clipping, step, zero_grad)
are timed as wholes: autograd runs every part's backward interleaved in one engine call, so a
per-part backward would need the profiler's forward/backward sequence links, which this does not
follow. The model runs eagerly (compiled graphs have no module boundaries to time). Writes
step_profile.md (a table) and step_profile.json (one row per precision, naming the device, the
commit, the versions and the config hash). Shares are of the sum of the parts, so they sum to 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from gocram.config import RunConfig, load_config
from gocram.core.env import device_name, git_sha, pick_device, versions
from gocram.models.gpt import GPT
from gocram.plan import Env
from gocram.train.muon import resolve_newton_schulz
from gocram.train.optimizers import OPTIMIZERS, resolve_adamw_kernel
from gocram.train.trainer import autocast_for

FORWARD_PARTS = ("embeddings", "attention", "mlp", "norms")
PARTS = (*FORWARD_PARTS, "loss", "forward other", "backward", "optimizer")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _part_modules(model: GPT) -> dict[str, list[torch.nn.Module]]:
    norms = [m for block in model.blocks for m in (block.norm_attn, block.norm_mlp)] + [model.norm_f]
    return {
        "embeddings": [m for m in (model.wte, model.wpe) if m is not None],
        "attention": [block.attn for block in model.blocks],
        "mlp": [block.mlp for block in model.blocks],
        "norms": norms,
    }


class PartTimers:
    """Forward seconds per part, from hooks around the part's modules (none of them nest)."""

    def __init__(self, model: GPT, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.handles = []
        for part, modules in _part_modules(model).items():
            for module in modules:
                self.handles.append(module.register_forward_pre_hook(self._start))
                self.handles.append(module.register_forward_hook(self._stopper(part)))
        self._started: dict[int, float] = {}

    def _start(self, module, args) -> None:
        _sync(self.device)
        self._started[id(module)] = time.perf_counter()

    def _stopper(self, part: str):
        def stop(module, args, output) -> None:
            _sync(self.device)
            self.seconds[part] += time.perf_counter() - self._started.pop(id(module))
        return stop

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def step_setup(cfg: RunConfig):
    """(device, model, optimizer, idx (B, T), targets (B, T)): what one training step needs."""
    device = pick_device(cfg.impl.device)
    if cfg.impl.threads:
        torch.set_num_threads(cfg.impl.threads)
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model, cfg.impl).to(device).train()
    optimizer = OPTIMIZERS.get(cfg.train.optimizer).build(
        model.param_roles(), cfg.train, kernel=resolve_adamw_kernel(cfg.impl.optimizer_kernel, device.type),
        newton_schulz=resolve_newton_schulz(cfg.impl.newton_schulz,
                                            native_bf16=Env.for_device(device).native_bf16))
    B, T, V = cfg.train.micro_batch, cfg.model.seq_len, cfg.model.vocab_size
    idx = torch.randint(0, V, (B, T), device=device)  # (B, T)
    targets = torch.randint(0, V, (B, T), device=device)  # (B, T)
    return device, model, optimizer, idx, targets


def _update(model: GPT, optimizer, grad_clip: float) -> None:
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def training_step(cfg: RunConfig, precision: str):
    """A zero-argument callable running one whole step (forward, backward, update), synchronised."""
    device, model, optimizer, idx, targets = step_setup(cfg)
    autocast = autocast_for(precision, device)

    def step() -> None:
        with autocast():
            loss = model(idx, targets)
        loss.backward()
        _update(model, optimizer, cfg.train.grad_clip)
        _sync(device)

    return step


def profile_steps(cfg: RunConfig, precision: str, *, steps: int, warmup: int = 3) -> dict:
    """One row: mean ms per step and share of each part, over `steps` timed steps."""
    device, model, optimizer, idx, targets = step_setup(cfg)
    B, T = idx.shape
    autocast = autocast_for(precision, device)
    timers = PartTimers(model, device)
    totals: dict[str, float] = defaultdict(float)
    step_seconds = []
    try:
        for step in range(warmup + steps):
            timers.seconds.clear()
            _sync(device)
            t0 = time.perf_counter()
            with autocast():
                h = model.hidden_states(idx)  # (B, T, C)
                _sync(device)
                t1 = time.perf_counter()
                loss = model.loss_fn(h.reshape(B * T, -1), model.lm_head.weight, targets.reshape(B * T))
                _sync(device)
            t2 = time.perf_counter()
            loss.backward()
            _sync(device)
            t3 = time.perf_counter()
            _update(model, optimizer, cfg.train.grad_clip)
            _sync(device)
            t4 = time.perf_counter()
            if step < warmup:
                continue
            for part in FORWARD_PARTS:
                totals[part] += timers.seconds[part]
            totals["forward other"] += max((t1 - t0) - sum(timers.seconds.values()), 0.0)
            totals["loss"] += t2 - t1
            totals["backward"] += t3 - t2
            totals["optimizer"] += t4 - t3
            step_seconds.append(t4 - t0)
    finally:
        timers.remove()
    whole = sum(totals.values())
    return {
        "config_hash": cfg.hash(), "precision": precision, "device": device_name(device),
        "git_sha": git_sha(), "versions": versions(), "threads": torch.get_num_threads(),
        "steps": steps, "warmup": warmup, "micro_batch": B, "seq_len": T,
        "step_ms_median": 1e3 * statistics.median(step_seconds),
        "parts": {part: {"ms": 1e3 * totals[part] / steps, "share": totals[part] / whole if whole else 0.0}
                  for part in PARTS},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _label(row: dict) -> str:
    return f"{row['precision']}, {row['variant']}" if row.get("variant") else row["precision"]


def markdown(rows: list[dict], config: str) -> str:
    """Parts as rows, one 'ms (share)' column per precision (and --vary value)."""
    first = rows[0]
    hashes = ", ".join(dict.fromkeys(r["config_hash"] for r in rows))
    lines = [f"# Step profile: {config} (config {hashes}) on {first['device']}", "",
             f"commit {(first['git_sha'] or '?')[:12]}, torch {first['versions'].get('torch')}, "
             f"{first['threads']} threads, batch {first['micro_batch']} x {first['seq_len']}, "
             f"mean of {first['steps']} steps after {first['warmup']} warm-up", "",
             "| part | " + " | ".join(_label(r) for r in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for part in PARTS:
        cells = [f"{r['parts'][part]['ms']:.2f} ms ({r['parts'][part]['share']:.1%})" for r in rows]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| step (median) | " + " | ".join(f"{r['step_ms_median']:.2f} ms" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/step-profile"))
    parser.add_argument("--vary", metavar="KEY=V1,V2", default=None,
                        help="one setting over several values (e.g. impl.newton_schulz=torch,fp32): "
                             "a column per value and precision")
    parser.add_argument("overrides", nargs="*", help="section.key=value, as for gocram train")
    args = parser.parse_args(argv)
    variants: list[list[str]] = [[]]
    if args.vary:
        key, eq, values = args.vary.partition("=")
        if not eq or not key or not values.strip(","):
            parser.error(f"--vary {args.vary!r}: give KEY=V1,V2 (e.g. impl.newton_schulz=torch,fp32)")
        variants = [[f"{key}={v}"] for v in values.split(",") if v]
    rows = []
    for variant in variants:
        cfg = load_config(args.config, [*args.overrides, *variant])
        for precision in args.precision:
            rows.append({**profile_steps(cfg, precision, steps=args.steps, warmup=args.warmup),
                         "variant": " ".join(variant)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_profile.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows, args.config)
    (args.out / "step_profile.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
