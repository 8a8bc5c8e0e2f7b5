"""Report deltas compare a cell with the baseline of its own commit (or say visibly that they do
not), are flagged only beyond the measured seed noise, and an MFU above 100% is an error, not a figure."""

from __future__ import annotations

from gocram.ablations.report import MD_COLUMNS, OTHER_COMMIT, write_reports


def _row(cell, seed, tps, bpb, *, git="aaa", toggles=(), mfu=None, mfu_note="n/a"):
    return {"matrix": "m", "cell": cell, "seed": seed, "toggles": list(toggles),
            "kinds": {t: "exact" for t in toggles}, "status": "ok", "device_name": "dev",
            "tokens_per_s": tps, "val_bpb": bpb, "budget_s": 10, "config_hash": f"h-{cell}",
            "git_sha": git, "versions": {"torch": "x"}, "xz_bpb": 1.8, "val_curve": [[10, bpb]],
            "steps": 10, "compile_s": 0, "peak_mem_bytes": 2**20, "mfu": mfu, "mfu_note": mfu_note,
            "mean_cpu_util": 190}


def _table(tmp_path, rows) -> dict[str, list[str]]:
    write_reports(rows, tmp_path, "m")
    text = (tmp_path / "m" / "dev" / "table.md").read_text()
    cells = {line.split(" | ")[0].removeprefix("| "): line.split(" | ")
             for line in text.splitlines() if line.startswith("| ") and " | " in line}
    cells["_text"] = text
    return cells


TPS, DELTA_TPS, DELTA_BPB, MFU = (MD_COLUMNS.index(c) for c in ("tokens/s", "Δ tokens/s", "Δ bpb", "MFU"))


def test_a_delta_is_against_the_baseline_of_the_cells_commit(tmp_path):
    rows = [_row("baseline", 0, 1000, 2.50, git="aaa"),
            _row("compile", 0, 1100, 2.48, git="aaa", toggles=["compile"]),
            _row("baseline", 0, 1500, 2.40, git="bbb")]  # a newer baseline on other code
    table = _table(tmp_path, rows)
    assert table["baseline"][TPS] == "1,500"  # the table shows the newest baseline
    assert table["compile"][DELTA_TPS] == "+10.0%"  # but compile is compared with its own commit's
    assert table["compile"][DELTA_BPB] == "-0.0200"
    assert OTHER_COMMIT not in table["_text"]


def test_without_a_same_commit_baseline_the_delta_is_marked_and_never_flagged(tmp_path):
    rows = [_row("baseline", s, 1000 + s, 2.50, git="aaa") for s in range(3)]
    rows += [_row("compile", s, 2000 + s, 2.50, git="ccc", toggles=["compile"]) for s in range(3)]
    table = _table(tmp_path, rows)
    assert table["compile"][DELTA_TPS] == f"+99.9%{OTHER_COMMIT}"  # far beyond the noise, yet not bold
    assert f"{OTHER_COMMIT} No baseline ran at this cell's commit" in table["_text"]


def test_same_commit_deltas_are_flagged_only_beyond_the_seed_noise_and_show_mean_sd(tmp_path):
    rows = [_row("baseline", s, 1000 + s, 2.50 + 0.001 * s) for s in range(3)]
    rows += [_row("compile", s, 2000 + s, 2.50 + 0.001 * s, toggles=["compile"]) for s in range(3)]
    rows += [_row("noisy", s, 1000 + 300 * (s - 1), 2.5, toggles=["vocab=1"]) for s in range(3)]
    table = _table(tmp_path, rows)
    assert table["compile"][DELTA_TPS] == "**+99.9%**"
    assert table["noisy"][DELTA_TPS] == "-0.1%" and "**" not in table["noisy"][DELTA_BPB]
    assert table["baseline"][TPS] == "1,001 ± 1" and table["noisy"][TPS] == "1,000 ± 300"
    assert "exceed two standard errors" in table["_text"]


def test_a_single_seed_flags_nothing(tmp_path):
    rows = [_row("baseline", 0, 1000, 2.5), _row("fast", 0, 3000, 2.0, toggles=["compile"])]
    table = _table(tmp_path, rows)
    assert table["fast"][DELTA_TPS] == "+200.0%"
    assert "the seed noise is unknown" in table["_text"]


def test_an_mfu_above_100_percent_is_an_error_not_a_figure(tmp_path):
    rows = [_row("baseline", 0, 1000, 2.5, mfu=1.106),
            _row("ok", 0, 1000, 2.5, toggles=["compile"], mfu=0.5),
            _row("refused", 0, 1000, 2.5, toggles=["vocab=1"], mfu=None,
                 mfu_note="error: MFU 110% is above 100% against measured matmul peak")]
    table = _table(tmp_path, rows)
    assert table["baseline"][MFU] == table["refused"][MFU] == "error: MFU > 100%"
    assert table["ok"][MFU] == "50.0%"
    assert "110.6%" not in table["_text"]


def test_the_committed_tables_regenerate_byte_for_byte_from_runs_jsonl(tmp_path):
    """Nothing in results/<matrix>/<device>/table.{md,csv} is typed by hand or stale."""
    from gocram.ablations.matrix import load_matrix
    from gocram.ablations.results import load_rows
    from tests.conftest import REPO

    results = REPO / "results"
    rows = load_rows(results / "runs.jsonl")
    committed = sorted(results.glob("*/*/table.md"))
    assert committed
    for matrix in sorted({path.parent.parent.name for path in committed}):
        description = load_matrix(matrix).description
        for written in write_reports(rows, tmp_path, matrix, description):
            if written.suffix in (".md", ".csv"):
                original = results / written.relative_to(tmp_path)
                assert written.read_bytes() == original.read_bytes(), f"{original} is stale"


def test_cpu_mfu_is_against_the_best_peak_the_table_measured_in_that_precision(tmp_path):
    """Each cell measured its own peak; a neighbour's burst lowered one of them (0.1 instead of
    0.2 TFLOPS), which made the slower cell look better. One basis per precision restores the
    order of tokens/s x FLOPs."""
    def cpu_row(cell, tps, peak_tflops, precision="fp32", toggles=()):
        row = _row(cell, 0, tps, 2.5, toggles=toggles, mfu=tps * 1e8 / (peak_tflops * 1e12),
                   mfu_note=f"measured matmul peak {peak_tflops:.3g} TFLOPS")
        return {**row, "flops_per_token": 1e8, "precision": precision}

    rows = [cpu_row("baseline", 1000, 0.2), cpu_row("slow", 800, 0.1, toggles=["compile"]),
            cpu_row("bf16", 1500, 0.4, "bf16", toggles=["precision=bf16"])]
    table = _table(tmp_path, rows)
    assert table["baseline"][MFU] == "50.0%" and table["slow"][MFU] == "40.0%"  # not 80%
    assert table["bf16"][MFU] == "37.5%"  # against its own precision's peak
    assert "one basis for every cell" in table["_text"]


def _with_losses(row, losses, *, lr=1e-3, precision="fp32", compile_cache=None):
    return {**row, "first_losses": [[loss, lr] for loss in losses], "precision": precision,
            "compile_cache": compile_cache}


def test_exact_cells_say_whether_their_first_losses_match_the_base_cell(tmp_path):
    from gocram.ablations.report import LOSS_MATCH

    base = [6.20, 6.10, 5.90]
    rows = [_with_losses(_row("baseline", 0, 1000, 2.5), base),
            _with_losses(_row("chunked", 0, 1100, 2.5, toggles=["chunked_cross_entropy"]),
                         [x + 3e-6 for x in base]),
            _with_losses(_row("broken", 0, 1100, 2.5, toggles=["compile"]),
                         [base[0], base[1] + 0.02, base[2]], compile_cache="warm"),
            _with_losses(_row("bf16", 0, 1100, 2.5, toggles=["compile"]),
                         [x + 4e-3 for x in base], precision="bf16"),
            _with_losses(_row("other-lr", 0, 1100, 2.5, toggles=["threads=2"]), base, lr=2e-3),
            _with_losses(_row("vocab", 0, 1100, 2.4, toggles=["vocab=1"]), [5.0, 4.0, 3.0]),
            _row("old", 0, 1100, 2.5, toggles=["adamw=fused"])]  # a row from before first_losses
    rows[-2]["kinds"] = {"vocab=1": "approximate"}
    table = _table(tmp_path, rows)
    col = [c.strip(" |") for c in table["cell"]].index(LOSS_MATCH)
    same = {cell: table[cell][col].strip(" |") for cell in ("baseline", "chunked", "broken", "bf16",
                                                               "other-lr", "vocab", "old")}
    assert same == {"baseline": "base", "chunked": "yes (max Δ 3e-06)", "broken": "NO (max Δ 2e-02)",
                    "bf16": "yes (max Δ 4e-03)",  # within bf16's stated tolerance
                    "other-lr": "n/a (LR differs)", "vocab": "-", "old": "-"}
    assert "fp32 0.0001" in table["_text"]
    compile_col = [c.strip(" |") for c in table["cell"]].index("compile s")
    assert table["broken"][compile_col] == "0.0 (warm)" and table["chunked"][compile_col] == "0.0"
    csv_header = (tmp_path / "m" / "dev" / "table.csv").read_text().splitlines()[0]
    assert csv_header.endswith(LOSS_MATCH)


def test_without_first_losses_the_table_has_no_loss_column(tmp_path):
    from gocram.ablations.report import LOSS_MATCH

    table = _table(tmp_path, [_row("baseline", 0, 1000, 2.5), _row("c", 0, 1100, 2.5, toggles=["compile"])])
    assert LOSS_MATCH not in table["_text"]
    assert table["cell"][-1].strip(" |") == "git"


def test_a_base_cell_named_for_what_it_is_is_the_baseline(tmp_path):
    rows = [_row("plain", 0, 1000, 2.50), _row("no_bias", 0, 1100, 2.45, toggles=["no_bias"])]
    table = _table(tmp_path, rows)
    assert table["no_bias"][DELTA_TPS] == "+10.0%" and table["no_bias"][DELTA_BPB] == "-0.0500"
    assert table["plain"][DELTA_BPB] == "-"
