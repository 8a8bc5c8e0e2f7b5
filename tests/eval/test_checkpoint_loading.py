"""Every command that loads a checkpoint (complete, export, finetune, eval, serve: all through
`load_run`) checks its sha256 sidecar, falls back past a corrupt newest one in a run directory,
and turns a bad file into one line naming it, never a traceback."""

import argparse

import pytest
import torch

from gocram.core.errors import GocramError
from gocram.core.files import sha256_file
from gocram.eval.tree import load_run, pick_checkpoint
from gocram.train.checkpoint import checkpoint_path, save_checkpoint, sidecar_path
from tests.conftest import run_gocram
from tests.eval.conftest import make_run


@pytest.fixture
def two_step_run(go_tokenizer, tmp_path):
    """A run with checkpoints at steps 1 and 2 whose weights differ."""
    run = make_run(tmp_path / "run", go_tokenizer, seed=1)
    state = torch.load(checkpoint_path(run / "checkpoint", 1), weights_only=True)
    state["model"] = {k: v + 1.0 for k, v in state["model"].items()}
    save_checkpoint(state, run / "checkpoint", 2, keep=2)
    return run


def first_weight(model) -> torch.Tensor:
    return next(iter(model.state_dict().values()))


def step_weight(run, step) -> torch.Tensor:
    state = torch.load(checkpoint_path(run / "checkpoint", step), weights_only=True)
    return next(iter(state["model"].values()))


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_pickle_payload(path, *, with_sidecar: bool):
    # argparse.Namespace is not on torch's weights_only allow-list: a stand-in for any object
    # whose unpickling would run code.
    torch.save({"model": argparse.Namespace(run="os.system"), "config": {}}, path)
    if with_sidecar:  # as if written by gocram: the sha256 matches, only the payload is wrong
        sidecar_path(path).write_text(f"{sha256_file(path)}  {path.name}\n")
    else:
        sidecar_path(path).unlink(missing_ok=True)


def test_the_newest_intact_checkpoint_is_loaded(two_step_run):
    model, _, _ = load_run(two_step_run, "cpu")
    assert torch.equal(first_weight(model), step_weight(two_step_run, 2))


@pytest.mark.parametrize("damage", [flip_a_byte, truncate])
def test_a_damaged_newest_checkpoint_falls_back_with_a_warning(two_step_run, damage, capsys):
    newest = checkpoint_path(two_step_run / "checkpoint", 2)
    want = step_weight(two_step_run, 1)
    damage(newest)
    model, _, _ = load_run(two_step_run, "cpu")
    assert torch.equal(first_weight(model), want)
    warning = capsys.readouterr().err
    assert str(newest) in warning and "trying the previous one" in warning


@pytest.mark.parametrize("damage, message", [(flip_a_byte, "does not match"),
                                             (truncate, "does not match")])
def test_a_named_damaged_file_is_refused_in_one_line(two_step_run, damage, message):
    newest = checkpoint_path(two_step_run / "checkpoint", 2)
    damage(newest)
    with pytest.raises(GocramError, match=message) as err:
        pick_checkpoint(newest)
    assert str(newest) in str(err.value) and "\n" not in str(err.value)


def test_a_truncated_checkpoint_without_sidecar_is_one_line(two_step_run):
    # An older run has no sidecar: then the file must at least load.
    newest = checkpoint_path(two_step_run / "checkpoint", 2)
    sidecar_path(newest).unlink()
    truncate(newest)
    with pytest.raises(GocramError, match="cannot be read") as err:
        load_run(newest, "cpu")
    assert str(newest) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("with_sidecar", [True, False])
def test_a_pickle_payload_is_refused_in_one_line(two_step_run, with_sidecar):
    newest = checkpoint_path(two_step_run / "checkpoint", 2)
    write_pickle_payload(newest, with_sidecar=with_sidecar)
    with pytest.raises(GocramError) as err:
        load_run(newest, "cpu")
    message = str(err.value)
    assert str(newest) in message and "\n" not in message
    assert "argparse.Namespace" in message  # the line that names what was refused
    assert "weights_only=False" not in message  # torch's advice to turn the check off is dropped


def test_no_intact_checkpoint_is_one_line(two_step_run):
    for step in (1, 2):
        truncate(checkpoint_path(two_step_run / "checkpoint", step))
    with pytest.raises(GocramError, match="no intact checkpoint") as err:
        load_run(two_step_run, "cpu")
    assert "\n" not in str(err.value)


def test_a_checkpoint_without_weights_is_one_line(two_step_run):
    newest = checkpoint_path(two_step_run / "checkpoint", 2)
    save_checkpoint({"config": {}}, two_step_run / "checkpoint", 2, keep=2)
    with pytest.raises(GocramError, match="not a gocram checkpoint") as err:
        load_run(newest, "cpu")
    assert "\n" not in str(err.value)


def _one_line_error(done, path):
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("gocram: error:")]
    assert len(lines) == 1 and str(path) in lines[0], done.stderr


def test_the_commands_refuse_bad_checkpoints_in_one_line(two_step_run, tmp_path):
    newest = checkpoint_path(two_step_run / "checkpoint", 2)
    flip_a_byte(newest)
    # complete: a named corrupt file is refused; the run directory falls back and completes.
    named = run_gocram("complete", "--checkpoint", str(newest), "--max-new-tokens", "2",
                       input="func f() {\n")
    _one_line_error(named, newest)
    fallback = run_gocram("complete", "--checkpoint", str(two_step_run), "--max-new-tokens", "2",
                          input="func f() {\n")
    assert fallback.returncode == 0, fallback.stderr
    assert f"gocram: warning: checkpoint {newest}" in fallback.stderr
    # export: a corrupt file is never exported; nothing is written.
    write_pickle_payload(newest, with_sidecar=True)
    export = run_gocram("export", "--checkpoint", str(newest), "--hf", str(tmp_path / "hf"))
    _one_line_error(export, newest)
    assert not (tmp_path / "hf").exists()
    # finetune: refused before any data is prepared; its --out stays untouched.
    truncate(newest)
    sidecar_path(newest).unlink()
    finetune = run_gocram("finetune", "--checkpoint", str(newest), "--out", str(tmp_path / "ft"),
                          "--humaneval-limit", "-1")
    _one_line_error(finetune, newest)
    assert not (tmp_path / "ft").exists()
