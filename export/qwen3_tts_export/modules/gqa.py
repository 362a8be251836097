"""The talker's attention over a KV cache that the graph writes in place: ONNX Runtime's GroupQueryAttention
(com.microsoft) as a torch custom op, so that the module code stays plain torch and the export emits one node.

    q [B,S,N·D]  k, v [B,S,KV·D]        (RMS-normed, RoPE applied: the op's own rotary is not used)
    cache_k, cache_v [B,KV,C,D]          positions 0..P-1 hold the past; C (the capacity) ≥ P + S
    bias [B,1,S,T]                       0 where a query may attend, -inf where not (left padding), T = P + S
          │
          ▼
    GroupQueryAttention ─► out [B,S,N·D]
          └──────────────► cache_k, cache_v with this call's keys/values at P..T-1 (the same buffers when the
                           caller binds each present output to its past input: nothing is copied per step)

Three separate things, as in optimum's exporters: `group_query_attention` is the reference (torch runs it when
tracing and in the export check), `_onnx` is what the exporter writes for it, and `register_schema()` tells onnx
and onnxscript the contrib op's signature (onnx itself does not know com.microsoft ops).
"""
from __future__ import annotations

import torch

DOMAIN = "com.microsoft"


@torch.library.custom_op("qwen3_tts::group_query_attention", mutates_args=())
def group_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache_k: torch.Tensor,
                          cache_v: torch.Tensor, bias: torch.Tensor, num_heads: int, kv_num_heads: int,
                          scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, s, _ = q.shape
    total, d = bias.shape[-1], cache_k.shape[-1]
    past = total - s
    cache_k, cache_v = cache_k.clone(), cache_v.clone()
    cache_k[:, :, past:total] = k.view(b, s, kv_num_heads, d).transpose(1, 2)
    cache_v[:, :, past:total] = v.view(b, s, kv_num_heads, d).transpose(1, 2)
    # GQA without repeating K/V: the query heads grouped by the KV head they share
    rep = num_heads // kv_num_heads
    qg = q.view(b, s, kv_num_heads, rep, d).permute(0, 2, 3, 1, 4).reshape(b, kv_num_heads, rep * s, d)
    scores = (qg @ cache_k[:, :, :total].transpose(-1, -2)).view(b, kv_num_heads, rep, s, total) * scale
    causal = torch.arange(total) <= torch.arange(s).unsqueeze(1) + past
    scores = (scores + bias.unsqueeze(1)).masked_fill(~causal, float("-inf"))
    probs = torch.softmax(scores, dim=-1).view(b, kv_num_heads, rep * s, total)
    out = (probs @ cache_v[:, :, :total]).view(b, kv_num_heads, rep, s, d).permute(0, 3, 1, 2, 4)
    return out.reshape(b, s, num_heads * d), cache_k, cache_v


@group_query_attention.register_fake
def _(q, k, v, cache_k, cache_v, bias, num_heads, kv_num_heads, scale):
    return torch.empty_like(q), torch.empty_like(cache_k), torch.empty_like(cache_v)


_INPUTS = (("query", "T"), ("key", "T"), ("value", "T"), ("past_key", "T"), ("past_value", "T"),
           ("seqlens_k", "M"), ("total_sequence_length", "M"), ("cos_cache", "T"), ("sin_cache", "T"),
           ("position_ids", "tensor(int64)"), ("attention_bias", "T"), ("head_sink", "T"),
           ("k_scale", "tensor(float)"), ("v_scale", "tensor(float)"), ("q_norm_weight", "T"),
           ("k_norm_weight", "T"), ("query_seqlens", "M"))
_REQUIRED = ("query", "seqlens_k", "total_sequence_length")


def register_schema() -> None:
    """Declare GroupQueryAttention (the inputs ONNX Runtime 1.32 defines, in its order) to onnx, once."""
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has("GroupQueryAttention", DOMAIN):
        return
    opt, one = OpSchema.FormalParameterOption.Optional, OpSchema.FormalParameterOption.Single
    param = OpSchema.FormalParameter
    attr = OpSchema.Attribute
    onnx.defs.register_schema(OpSchema(
        "GroupQueryAttention", DOMAIN, 1,
        inputs=[param(n, t, param_option=one if n in _REQUIRED else opt) for n, t in _INPUTS],
        outputs=[param("output", "T"), param("present_key", "T"), param("present_value", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("M", ["tensor(int32)"], "")],
        attributes=[attr("num_heads", OpSchema.AttrType.INT, ""), attr("kv_num_heads", OpSchema.AttrType.INT, ""),
                    attr("scale", OpSchema.AttrType.FLOAT, "")]))


def _onnx(q, k, v, cache_k, cache_v, bias, num_heads: int, kv_num_heads: int, scale: float):
    """The contrib node. seqlens_k (T - 1 per row), total_sequence_length (T) and query_seqlens (S per row: every
    row's chunk is whole, which lets a batch take several new positions after a past) come from the shapes."""
    import onnxscript
    from onnxscript import ir
    from onnxscript import opset18 as op

    batch = op.Shape(q, start=0, end=1)
    total = op.Shape(bias, start=3, end=4)
    seqlens_k = op.Cast(op.Expand(op.Sub(total, op.Constant(value_ints=[1])), batch), to=ir.DataType.INT32)
    query_seqlens = op.Cast(op.Expand(op.Shape(q, start=1, end=2), batch), to=ir.DataType.INT32)
    gqa = onnxscript.values.Opset(DOMAIN, 1).GroupQueryAttention
    return gqa(q, k, v, cache_k, cache_v, seqlens_k, op.Cast(op.Squeeze(total), to=ir.DataType.INT32),
               None, None, None, bias, None, None, None, None, None, query_seqlens,
               num_heads=num_heads, kv_num_heads=kv_num_heads, scale=scale, _outputs=3)


def translation_table() -> dict:
    """For torch.onnx.export(custom_translation_table=...)."""
    register_schema()
    return {torch.ops.qwen3_tts.group_query_attention.default: _onnx}
