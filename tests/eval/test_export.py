import json

import pytest
import torch

from gocram.core.errors import GocramError
from gocram.eval.export import export_hf
from gocram.eval.tree import load_run
from tests.conftest import run_gocram
from tests.eval.conftest import make_run

transformers = pytest.importorskip("transformers", reason="transformers not installed (requirements/cpu.txt)")


@pytest.mark.parametrize("overrides", [
    [],  # gelu (erf), tied embeddings, biases
    ["model.activation=gelu_tanh", "model.tie_embeddings=false", "model.bias=false"],
    ["model.activation=relu", "model.n_head=4", "model.d_model=36", "model.mlp_ratio=3"],
])
def test_export_matches_gocram_logits(tmp_path, go_tokenizer, overrides):
    run = make_run(tmp_path / "run", go_tokenizer, overrides)
    out = export_hf(run, tmp_path / "hf")
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "tokenizer.json"}
    ours, tok, cfg = load_run(run, "cpu")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = torch.randint(0, 512, (3, 63), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ours(ids)
        got = hf(ids).logits
    assert got.shape == expected.shape
    assert expected.std() > 0.5  # the weights make logits that differ, so the check has teeth
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)

    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "func main() {\n\tfmt.Println(\"héllo\")\n}\n"
    assert hf_tok(text)["input_ids"] == tok.encode(text, add_special_tokens=False).ids
    assert json.loads((out / "config.json").read_text())["n_positions"] == cfg.model.seq_len


@pytest.mark.parametrize("override, reason", [
    ("model.position=rope", "learned absolute positions"),
    ("model.norm=rmsnorm", "LayerNorm"),
])
def test_export_refuses_models_gpt2_cannot_express(tmp_path, go_tokenizer, override, reason):
    run = make_run(tmp_path / "run", go_tokenizer, [override])
    with pytest.raises(GocramError, match=reason):
        export_hf(run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_cli_export_and_its_errors(tmp_path, go_tokenizer):
    run = make_run(tmp_path / "run", go_tokenizer)
    done = run_gocram("export", "--checkpoint", str(run), "--hf", str(tmp_path / "hf"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    again = run_gocram("export", "--checkpoint", str(run), "--hf", str(tmp_path / "hf"))
    assert again.returncode == 2 and "not empty" in again.stderr
    assert (tmp_path / "hf" / "model.safetensors").is_file()  # nothing already written is lost
    missing = run_gocram("export", "--checkpoint", str(tmp_path / "nope"), "--hf", str(tmp_path / "x"))
    assert missing.returncode == 2 and missing.stderr.startswith("gocram: error: no checkpoint")
