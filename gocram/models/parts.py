"""The registries the GPT's parts come from: what is computed (the name) and how (the impl).

`model.norm`, `model.activation` and `model.loss` name the math; `impl.norm`, `impl.activation`
and `impl.loss` name who computes it (`torch`, the reference, or `triton`, a fused kernel that must
match it within tolerance; the loss also has `chunked`, the same chunked linear + loss in plain
torch). `impl.attention` names an attention backend: every backend computes the same causal
softmax attention. Entries are lazy 'module:attr' paths, so this module imports none of
them (Triton, flash-attn and xformers stay unimported until a run asks for them).

Contracts (what a builder returns):
- NORMS[name, impl](d_model, *, bias, eps) -> nn.Module mapping (..., d) -> (..., d).
- ACTIVATIONS[name, impl](width, *, bias) -> nn.Module owning the MLP's first bias:
  forward(h) = act(h + bias) for h of shape (..., width). Owning the bias lets a fused
  bias+activation kernel replace both at once.
- ATTENTIONS[name]() -> an AttentionBackend (models/attention/base.py).
- LOSSES[name, impl]() -> callable(hidden (N, d), weight (V, d), targets (N,), *, reduction)
  -> fp32 scalar; targets equal to IGNORE_INDEX are skipped. Taking hidden states and the output
  weight (not logits) lets a fused loss avoid materialising (N, V) fp32 logits. An implementation
  listed in SOFTCAP_LOSSES also takes `softcap: float` (model.logit_softcap): the loss of
  cap * tanh(logits / cap); the model passes it only when the cap is on, and gocram.plan rejects
  a cap with an implementation not listed (the list is read without importing the entry).
"""

from __future__ import annotations

from gocram.core.registry import Registry

NORMS = Registry("norm")
ACTIVATIONS = Registry("activation")
ATTENTIONS = Registry("attention backend")
LOSSES = Registry("loss")

_LAYERS = "gocram.models.layers"
NORMS.add("layernorm", f"{_LAYERS}:LayerNorm")
NORMS.add("layernorm", "gocram.kernels.layernorm:TritonLayerNorm", impl="triton")
NORMS.add("rmsnorm", f"{_LAYERS}:RMSNorm")

ACTIVATIONS.add("gelu", f"{_LAYERS}:GELU")
ACTIVATIONS.add("gelu", "gocram.kernels.bias_gelu:TritonBiasGELU", impl="triton")
ACTIVATIONS.add("gelu_tanh", f"{_LAYERS}:GELUTanh")
ACTIVATIONS.add("gelu_tanh", "gocram.kernels.bias_gelu:TritonBiasGELUTanh", impl="triton")
ACTIVATIONS.add("relu", f"{_LAYERS}:ReLU")
ACTIVATIONS.add("relu2", f"{_LAYERS}:ReLU2")
ACTIVATIONS.add("silu", f"{_LAYERS}:SiLU")

LOSSES.add("cross_entropy", f"{_LAYERS}:cross_entropy_loss")
LOSSES.add("cross_entropy", "gocram.kernels.cross_entropy:fused_cross_entropy", impl="triton")
LOSSES.add("cross_entropy", "gocram.models.chunked_loss:chunked_cross_entropy", impl="chunked")
# (name, impl) of the losses taking the softcap keyword
SOFTCAP_LOSSES = {("cross_entropy", "torch"), ("cross_entropy", "chunked")}

_ATTENTION = "gocram.models.attention"
ATTENTIONS.add("math", f"{_ATTENTION}.reference:MathAttention")
ATTENTIONS.add("sdpa", f"{_ATTENTION}.sdpa:SDPAttention")
ATTENTIONS.add("sdpa_flash", f"{_ATTENTION}.sdpa:SDPAFlash")
ATTENTIONS.add("sdpa_efficient", f"{_ATTENTION}.sdpa:SDPAEfficient")
ATTENTIONS.add("flex", f"{_ATTENTION}.flex:FlexAttention")
ATTENTIONS.add("flash_attn", f"{_ATTENTION}.flash_attn_pkg:FlashAttnAttention")
ATTENTIONS.add("xformers", f"{_ATTENTION}.xformers_pkg:XFormersAttention")
