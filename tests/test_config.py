import pytest

from gocram.config import load_config, parse_overrides
from gocram.core.errors import ConfigError
from tests.conftest import run_gocram


def test_named_sizes_load():
    tiny = load_config("tiny")
    small = load_config("small")
    assert tiny.model.seq_len == 256 and small.model.seq_len == 1024
    assert small.model.padded_vocab_size % 64 == 0


def test_overrides_are_typed():
    cfg = load_config("tiny", ["model.n_layer=6", "impl.compile=true", "train.lr=1e-3"])
    assert cfg.model.n_layer == 6 and cfg.impl.compile is True and cfg.train.lr == 1e-3
    assert cfg.hash() != load_config("tiny").hash()


@pytest.mark.parametrize("override, message", [
    ("model.nlayer=3", "unknown config key 'model.nlayer' (did you mean 'model.n_layer'?)"),
    ("modl.n_layer=3", "unknown config section 'modl'"),
    ("model.n_layer=three", "model.n_layer: expected int"),
    ("model.n_layer=true", "model.n_layer: expected int"),
    ("model.d_model=100", "model.d_model=100 is not divisible by model.n_head=3"),
    ("model.position=alibi", "model.position: must be one of"),
    ("train.batch_tokens=1000", "train.batch_tokens=1000 is not a multiple"),
    ("train.clock=steps", "train.clock=steps needs train.max_steps"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1)"),
    ("model.norm=layrnorm", "model.norm: unknown norm 'layrnorm' (did you mean 'layernorm'?)"),
    ("impl.attention=flashy", "impl.attention: unknown attention backend 'flashy'"),
    ("data.layout=spiral", "data.layout: unknown data layout 'spiral'"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert message in str(err.value)


def test_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["n_layer=3"])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_config("nope.yaml")


@pytest.mark.parametrize("args, message", [
    (["train", "--config", "tiny", "--out", "/tmp/x", "model.d_model=100"], "model.d_model=100"),
    (["train", "--config", "missing.yaml", "--out", "/tmp/x"], "missing.yaml"),
    (["train", "--config", "tiny", "--out", "/tmp/x", "data.corpus=/no/such/dir"], "/no/such/dir"),
    (["eval", "bpb", "--checkpoint", "/no/run", "--dir", "."], "/no/run"),
])
def test_cli_errors_are_one_line_exit_2(args, message):
    done = run_gocram(*args, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gocram: error:") and message in lines[0]
