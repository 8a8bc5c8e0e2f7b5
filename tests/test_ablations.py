"""The ablation harness: toggles validate and conflict, matrices expand, the runner records every
cell (ok, failed, unsupported) and resumes, and the report is derived from the rows alone."""

from __future__ import annotations

import json

import pytest
import yaml

from gocram.ablations.matrix import SHIPPED, load_matrix, matrix_from_dict
from gocram.ablations.report import write_reports
from gocram.ablations.results import load_rows
from gocram.ablations.runner import LabOptions, run_cell_process, run_matrix
from gocram.ablations.toggles import TOGGLES, apply_toggles, check_groups, parse_spec, unsupported_reason
from gocram.config import load_config
from gocram.core.errors import ConfigError
from gocram.plan import Env

CPU = Env(device_type="cpu", device_name="test-cpu", triton_interpret=True, native_bf16=False)


@pytest.fixture
def base(small_overrides):
    return load_config("tiny", [*small_overrides, "model.n_layer=3", "impl.attention=math",
                                "train.budget_s=2"])


# -- toggles ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "message"), [
    ("warp_drive", "unknown toggle 'warp_drive'"),
    ("attention", "needs a value"),
    ("compile=yes", "takes no value"),
])
def test_bad_toggle_specs_name_the_problem(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_values_are_yaml_typed():
    assert parse_spec("vocab=4096")[1] == 4096
    assert parse_spec("attention=flex")[1] == "flex"


def test_two_toggles_of_one_group_conflict():
    with pytest.raises(ConfigError, match="both set attention"):
        check_groups(("attention=sdpa", "attention=flex"))
    check_groups(("attention=sdpa", "compile", "vocab=4096"))  # different groups: fine


def test_every_toggle_applies_as_config_overrides(base):
    samples = {"attention": "sdpa_flash", "layout": "packed", "precision": "bf16", "vocab": 1024,
               "token_drop": 0.25, "tokenizer": "go,ws", "optimizer": "muon", "activation": "relu2",
               "softcap": 15, "value_embeddings": 1, "bigram": 64, "batch_ramp": 0.5,
               "adamw": "fused", "threads": 2, "compile_mode": "max-autotune", "size": "2x128",
               "batch_tokens": 512, "lr": 0.001, "matrix_lr": 0.01, "newton_schulz": "fp32",
               "schedule": "wsd", "decay_frac": 0.5, "context": 128}
    muon = apply_toggles(base, ("optimizer=muon",))
    for name, toggle in TOGGLES.items():
        if name == "engine":  # a launcher, covered by the engine tests
            continue
        spec = f"{name}={samples[name]}" if toggle.takes_value else name
        start = muon if name == "newton_schulz" else base  # Muon's setting needs Muon
        cfg = apply_toggles(start, (spec,))
        assert cfg.hash() != start.hash(), f"{spec} changed nothing"
    cfg = apply_toggles(base, ("compile", "attention=sdpa", "token_drop=0.25"))
    assert (cfg.impl.compile, cfg.impl.attention, cfg.model.token_drop_rate) == (True, "sdpa", 0.25)
    fused = apply_toggles(base, ("triton_bias_gelu",))
    assert (fused.model.activation, fused.impl.activation) == ("gelu", "triton")
    assert fused.meaning_hash() == base.meaning_hash()  # an exact toggle: same meaning
    with pytest.raises(ConfigError, match="tokenizer_tricks"):
        apply_toggles(base, ("tokenizer=go,warp",))


def test_illegal_results_are_rejected_when_the_cell_is_built(base):
    # packing needs a document mask, which plain sdpa (is_causal only) cannot apply
    with pytest.raises(ConfigError, match="needs a document mask"):
        apply_toggles(base, ("attention=sdpa", "layout=packed"))
    with pytest.raises(ConfigError, match="impl.attention"):
        apply_toggles(base, ("attention=no_such_backend",))
    relu = load_config("tiny", ["model.activation=relu"])
    with pytest.raises(ConfigError, match="activation 'relu' has no 'triton' implementation"):
        apply_toggles(relu, ("triton_bias_gelu",))


def test_gpu_only_toggles_say_why_on_cpu(base):
    for spec in ("triton_layernorm", "triton_bias_gelu", "fused_cross_entropy"):
        reason = unsupported_reason(CPU, apply_toggles(base, (spec,)))
        assert reason and "need CUDA" in reason, spec
    for spec in ("attention=flash_attn", "attention=xformers"):
        assert unsupported_reason(CPU, apply_toggles(base, (spec,))), spec
    assert unsupported_reason(CPU, apply_toggles(base, ("attention=sdpa",))) is None


# -- matrices --------------------------------------------------------------------------------------

def _matrix(**raw):
    return matrix_from_dict({"name": "m", **raw}, "test.yaml")


def test_modes_expand_baseline_first():
    toggles = ["attention=sdpa", "compile", "vocab=4096"]
    assert [c.toggles for c in _matrix(mode="one-on", toggles=toggles).expand()] == [
        (), ("attention=sdpa",), ("compile",), ("vocab=4096",)]
    held = _matrix(mode="hold-one-out", toggles=toggles).expand()
    assert [c.name for c in held] == ["baseline", "all", "all-attention=sdpa", "all-compile",
                                      "all-vocab=4096"]
    assert held[3].toggles == ("attention=sdpa", "vocab=4096")
    assert [c.toggles for c in _matrix(mode="cumulative", toggles=toggles).expand()][-1] == tuple(toggles)
    listed = _matrix(mode="list", cells=[{"name": "fast", "toggles": ["compile"]}, {"toggles": []}])
    assert [(c.name, c.toggles) for c in listed.expand()] == [("fast", ("compile",)), ("baseline", ())]


def test_grid_counts_and_refuses_large_grids_unless_forced():
    axes = {"attention": ["math", "sdpa"], "compile": [False, True], "vocab": [1024, 2048, 4096]}
    grid = _matrix(mode="grid", axes=axes, max_cells=10)
    with pytest.raises(ConfigError, match="12 cells, over max_cells=10"):
        grid.expand()
    cells = grid.expand(force=True)
    assert len(cells) == 12 and ("attention=sdpa", "compile", "vocab=1024") in [c.toggles for c in cells]


@pytest.mark.parametrize(("raw", "message"), [
    ({"mode": "sideways", "toggles": ["compile"]}, "mode must be one of"),
    ({"mode": "one-on"}, "needs a 'toggles' list"),
    ({"mode": "grid"}, "needs axes"),
    ({"mode": "grid", "axes": {"nope": [1]}}, "not a toggle"),
    ({"toggles": ["compile"], "budget": 3}, "unknown matrix keys"),
    ({"toggles": ["attention=sdpa", "attention=math"], "mode": "cumulative"}, "both set attention"),
])
def test_bad_matrices_name_the_problem(raw, message):
    with pytest.raises(ConfigError, match=message):
        _matrix(**raw).expand()


def test_missing_matrix_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped: .*cpu-quick"):
        load_matrix("no-such-matrix")


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_cell_builds_a_valid_config(path):
    matrix = load_matrix(str(path))
    base = load_config(matrix.base, list(matrix.overrides))
    for cell in matrix.expand():
        apply_toggles(base, cell.toggles)


def test_every_cpu_speed_cell_runs_on_cpu_and_is_exact():
    """cpu-speed is the CPU's speed matrix: no cell may be 'unsupported' there, and every cell
    but the base is exact (its loss per step is checked against the base cell's)."""
    matrix = load_matrix("cpu-speed")
    base = load_config(matrix.base, list(matrix.overrides))
    cells = matrix.expand()
    assert cells[0].name == "baseline" and len(cells) > 2
    for cell in cells:
        cfg = apply_toggles(base, cell.toggles)
        reason = unsupported_reason(CPU, cfg)
        if reason and "C compiler" in reason:
            pytest.skip(reason)
        assert reason is None, (cell.name, reason)
        assert all(parse_spec(t)[0].kind == "exact" for t in cell.toggles), cell.name
        assert cfg.meaning_hash() == base.meaning_hash(), cell.name


# -- runner and report -----------------------------------------------------------------------------

def test_a_matrix_records_every_cell_and_resumes(tmp_path, small_overrides, capsys):
    spec = {"name": "t", "base": "tiny", "overrides": [*small_overrides, "impl.attention=math"],
            "budget_s": 1.5, "mode": "list", "cells": [
                {"name": "baseline", "toggles": []},
                {"toggles": ["triton_layernorm"]},  # GPU-only: unsupported, with its reason
                {"toggles": ["layout=no_such_layout"]},  # fails at config build; the matrix goes on
                {"toggles": ["attention=sdpa"]},
            ]}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(spec))
    opts = LabOptions(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    rows = run_matrix(load_matrix(str(path)), opts, env=CPU)
    status = {r["cell"]: r["status"] for r in rows}
    assert status["baseline"] == "ok" and status["attention=sdpa"] == "ok"
    assert status["triton_layernorm"].startswith("unsupported: impl.norm=triton: Triton kernels need CUDA")
    assert status["layout=no_such_layout"].startswith("failed: config:")
    ok = next(r for r in rows if r["cell"] == "baseline")
    for key in ("tokens_per_s", "val_bpb", "xz_bpb", "steps", "mean_cpu_util", "config_hash",
                "git_sha", "versions", "device_name", "budget_s", "val_curve"):
        assert ok[key] is not None, key
    assert ok["config"]["impl.attention"] == "math" and ok["budget_s"] == 1.5

    before = len(load_rows(opts.results_dir / "runs.jsonl"))
    run_matrix(load_matrix(str(path)), opts, env=CPU)  # the ok and unsupported cells are not redone
    again = load_rows(opts.results_dir / "runs.jsonl")
    assert len(again) == before + 1 and again[-1]["cell"] == "layout=no_such_layout"
    assert "already done" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="has no cells"):
        run_matrix(load_matrix(str(path)), LabOptions(results_dir=opts.results_dir, runs_dir=opts.runs_dir,
                                                      only_cells=("basline",)), env=CPU)

    written = write_reports(again, opts.results_dir, "t")
    table = (opts.results_dir / "t" / "test-cpu" / "table.md").read_text()
    assert "| baseline |" in table and "unsupported: impl.norm=triton" in table
    assert "xz -9e" in table and ok["config_hash"] in table
    assert all(p.exists() and p.stat().st_size > 0 for p in written)


def test_a_timed_out_cell_is_a_failed_row(tmp_path, base):
    status, result = run_cell_process(base, tmp_path / "cell", timeout_s=0.2, profile=False)
    assert status == "failed: timeout after 0s" and result is None


def test_a_crashing_cell_reports_its_error(tmp_path, base):
    from dataclasses import replace

    broken = replace(base, data=replace(base.data, corpus=str(tmp_path / "missing")))
    status, _ = run_cell_process(broken, tmp_path / "cell", timeout_s=300, profile=False)
    assert status.startswith("failed: exit 2:") and "missing" in status


def test_a_profiled_cell_says_where_the_time_goes(tmp_path, base):
    from dataclasses import replace

    steps = replace(base, train=replace(base.train, clock="steps", max_steps=10))
    status, result = run_cell_process(steps, tmp_path / "cell", timeout_s=300, profile=True)
    assert status == "ok"
    profile_dir = tmp_path / "cell" / "profile"
    assert result["profile_dir"] == str(profile_dir)
    assert (profile_dir / "trace.json").stat().st_size > 0
    assert "Self CPU" in (profile_dir / "top_ops.txt").read_text()
    top = result["profile_top_ops"]
    shares = [op["share"] for op in top]
    assert 0 < len(top) <= 8 and shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
    assert any(op["op"] in ("aten::mm", "aten::addmm", "aten::bmm") for op in top)  # a GPT's matmuls

    row = {**_row("baseline", 0, 1000, 2.5), "profile_top_ops": top}
    written = write_reports([row, _row("other", 0, 900, 2.6, ["compile"])], tmp_path, "m")
    profile_md = (tmp_path / "m" / "dev" / "profile.md").read_text()
    assert profile_md in (p.read_text() for p in written if p.suffix == ".md")
    assert "## baseline" in profile_md and "## other" not in profile_md
    assert f"| `{top[0]['op']}` |" in profile_md


def test_the_profiler_shuts_down_after_its_window(tmp_path):
    """Left running, its hooks slowed the rest of a run; it must finish at the end of its window."""
    from types import SimpleNamespace

    import torch

    from gocram.measure.profiling import ProfilerMonitor

    trainer = SimpleNamespace(device=torch.device("cpu"), step_hooks=[])
    monitor = ProfilerMonitor(tmp_path, wait=1, warmup=1, active=2)
    monitor.start(trainer)
    for step in range(1 + 1 + 2):
        trainer.step_hooks[0](step / 10)
        torch.ones(64, 64) @ torch.ones(64, 64)
        assert not (tmp_path / "top_ops.txt").exists(), step
    trainer.step_hooks[0](0.5)  # the start of the step after the window: the trace is complete
    assert (tmp_path / "top_ops.txt").exists() and (tmp_path / "trace.json").exists()
    assert "aten::mm" in [op["op"] for op in monitor.stop()["profile_top_ops"]]
    assert not torch.autograd._profiler_enabled()
    trainer.step_hooks[0](0.6)  # later steps: nothing more happens


def _row(cell, seed, tps, bpb, toggles=()):
    return {"matrix": "m", "cell": cell, "seed": seed, "toggles": list(toggles),
            "kinds": {t: "exact" for t in toggles}, "status": "ok", "device_name": "dev",
            "tokens_per_s": tps, "val_bpb": bpb, "budget_s": 10, "config_hash": f"h-{cell}",
            "git_sha": "abc", "versions": {"torch": "x"}, "xz_bpb": 1.8,
            "val_curve": [[5, bpb + 1], [10, bpb]],
            "steps": 10, "compile_s": 0, "peak_mem_bytes": 2**20, "mfu": None, "mean_cpu_util": 190,
            "load_avg_1m": 2.0}


def test_deltas_are_flagged_only_beyond_seed_noise(tmp_path):
    rows = [_row("baseline", s, 1000 + s, 2.50 + 0.001 * s) for s in range(3)]
    rows += [_row("compile", s, 2000 + s, 2.50 + 0.001 * s, ["compile"]) for s in range(3)]  # faster
    rows += [_row("noisy", s, 1000 + 300 * (s - 1), 2.5, ["vocab=1"]) for s in range(3)]  # within noise
    write_reports(rows, tmp_path, "m")
    table = (tmp_path / "m" / "dev" / "table.md").read_text()
    compile_line = next(line for line in table.splitlines() if line.startswith("| compile |"))
    noisy_line = next(line for line in table.splitlines() if line.startswith("| noisy |"))
    assert "**+99.9%**" in compile_line
    assert "**" not in noisy_line
    csv_text = (tmp_path / "m" / "dev" / "table.csv").read_text()
    assert csv_text.splitlines()[0].startswith("cell,toggles,kind,status,seeds,tps_mean")
    assert json.dumps(rows[0])  # rows are plain JSON


def test_cli_lists_toggles_and_cells_and_names_a_missing_matrix():
    from tests.conftest import run_gocram

    listed = run_gocram("lab", "--toggles")
    assert listed.returncode == 0 and "triton_layernorm" in listed.stdout and "approximate" in listed.stdout
    cells = run_gocram("lab", "--matrix", "cpu-quick", "--list")
    assert cells.returncode == 0 and cells.stdout.startswith("baseline: (baseline)")
    missing = run_gocram("lab")
    assert missing.returncode == 2 and "needs --matrix" in missing.stderr
