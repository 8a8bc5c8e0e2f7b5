"""Export a run as a Hugging Face GPT-2 checkpoint: model.safetensors, config.json, tokenizer.json.

Only models built from GPT-2's parts can be exported (learned positions, LayerNorm, a GELU or
ReLU MLP); anything else is refused with the reason, since GPT-2 would compute something else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from gocram.core.errors import GocramError
from gocram.data.tokens.tokenizer import EOS, PAD, eos_id
from gocram.eval.tree import load_run

# gocram activation name -> transformers' GPT-2 `activation_function`.
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
GPT2_NORMS = {"layernorm"}
LAYERNORM_EPS = 1e-5  # gocram's LayerNorm default


def gpt2_refusal(model_cfg) -> str | None:
    """None if GPT-2 computes exactly this model, else why not."""
    if model_cfg.position != "learned":
        return f"model.position={model_cfg.position!r}: GPT-2 has learned absolute positions only"
    if model_cfg.norm not in GPT2_NORMS:
        return f"model.norm={model_cfg.norm!r}: GPT-2 uses LayerNorm"
    if model_cfg.activation not in GPT2_ACTIVATIONS:
        return (f"model.activation={model_cfg.activation!r}: GPT-2 supports "
                f"{', '.join(sorted(GPT2_ACTIVATIONS))}")
    # the modern block's parts that GPT-2 has no place for (zero_init_proj is only an init)
    for name, off in (("mlp", "dense"), ("qk_norm", False), ("logit_softcap", 0.0),
                      ("value_embeddings", 0), ("bigram_buckets", 0)):
        if getattr(model_cfg, name) != off:
            return f"model.{name}={getattr(model_cfg, name)!r}: GPT-2 has no such part"
    return None


def gpt2_config(model_cfg, *, eos: int) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": model_cfg.padded_vocab_size, "n_positions": model_cfg.seq_len,
        "n_embd": model_cfg.d_model, "n_layer": model_cfg.n_layer, "n_head": model_cfg.n_head,
        "n_inner": model_cfg.mlp_ratio * model_cfg.d_model,
        "activation_function": GPT2_ACTIVATIONS[model_cfg.activation],
        "resid_pdrop": model_cfg.dropout, "embd_pdrop": model_cfg.dropout,
        "attn_pdrop": model_cfg.dropout, "layer_norm_epsilon": LAYERNORM_EPS,
        "initializer_range": 0.02, "scale_attn_weights": True, "use_cache": True,
        "bos_token_id": eos, "eos_token_id": eos, "tie_word_embeddings": model_cfg.tie_embeddings,
        "torch_dtype": "float32",
    }


def gpt2_state_dict(model) -> dict[str, torch.Tensor]:
    """gocram parameter names and layouts -> GPT-2's (its Conv1D stores weights as (in, out))."""
    cfg = model.cfg
    C = cfg.d_model

    def bias(module_bias, size):
        # gocram can drop biases (model.bias=false); GPT-2 always has them, so they export as zeros.
        return module_bias.detach() if module_bias is not None else torch.zeros(size)

    def conv(linear):
        return linear.weight.detach().t()  # (out, in) -> (in, out)

    out = {"transformer.wte.weight": model.wte.weight.detach(),
           "transformer.wpe.weight": model.wpe.weight.detach()}
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        width = cfg.mlp_ratio * C
        out.update({
            p + "ln_1.weight": block.norm_attn.weight.detach(),
            p + "ln_1.bias": bias(block.norm_attn.bias, C),
            p + "attn.c_attn.weight": conv(block.attn.qkv),
            p + "attn.c_attn.bias": bias(block.attn.qkv.bias, 3 * C),
            p + "attn.c_proj.weight": conv(block.attn.proj),
            p + "attn.c_proj.bias": bias(block.attn.proj.bias, C),
            p + "ln_2.weight": block.norm_mlp.weight.detach(),
            p + "ln_2.bias": bias(block.norm_mlp.bias, C),
            p + "mlp.c_fc.weight": conv(block.mlp.fc),
            p + "mlp.c_fc.bias": bias(block.mlp.act.bias, width),  # the activation owns it
            p + "mlp.c_proj.weight": conv(block.mlp.proj),
            p + "mlp.c_proj.bias": bias(block.mlp.proj.bias, C),
        })
    out["transformer.ln_f.weight"] = model.norm_f.weight.detach()
    out["transformer.ln_f.bias"] = bias(model.norm_f.bias, C)
    if not cfg.tie_embeddings:  # tied: transformers ties lm_head to wte itself
        out["lm_head.weight"] = model.lm_head.weight.detach()
    return {k: v.float().contiguous().cpu() for k, v in out.items()}


def export_hf(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write the Hugging Face directory atomically (temp dir, then rename); returns it."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise GocramError("export needs safetensors: pip install -r requirements/cpu.txt") from None
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GocramError(f"--hf {out}: exists and is not empty; choose a new directory")
    model, tok, cfg = load_run(checkpoint, "cpu")
    reason = gpt2_refusal(cfg.model)
    if reason:
        raise GocramError(f"cannot export as GPT-2: {reason}")
    eos = eos_id(tok)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(gpt2_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(gpt2_config(cfg.model, eos=eos), indent=1))
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS,
            "pad_token": PAD, "model_max_length": cfg.model.seq_len}, indent=1))
        (tmp / "generation_config.json").write_text(json.dumps({
            "bos_token_id": eos, "eos_token_id": eos, "pad_token_id": tok.token_to_id(PAD)}, indent=1))
        tmp.chmod(0o755)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
