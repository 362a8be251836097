"""Attention over a KV cache through ONNX Runtime's GroupQueryAttention (com.microsoft), as a torch custom op, so
that the module code stays plain torch and the export emits one node per layer.

    q [B,S,N·D]  k, v [B,S,KV·D]        RMS-normed, not yet rotated: the op applies RoPE (rotary caches given)
    cache_k, cache_v [B,KV,C,D]          positions 0..P-1 hold the past
    Positions                            where this call's S positions go: T = P + S keys after it (below)
          │
          ▼
    GroupQueryAttention ─► out [B,S,N·D]
          └──────────────► present_k, present_v:
                             capacity (talker)  [B,KV,C,D], C ≥ T, this call's keys/values written at P..T-1: the
                                                same buffers when the caller binds each present output to its past
                                                input, so nothing is copied per step
                             grow (predictor)   [B,KV,T,D] = the past (C = P) followed by this call's keys/values

Three separate things, as in optimum's exporters: `group_query_attention` is the reference (torch runs it when
tracing and in the export check), `_onnx` is what the exporter writes for it, and `register_schema()` tells onnx
and onnxscript the contrib op's signature (onnx itself does not know com.microsoft ops).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

DOMAIN = "com.microsoft"


@dataclass
class Positions:
    """The inputs that place one call's positions, computed once per call and shared by every layer (one node
    each in the graph, not one per layer).

    seqlens_k [B] int32 (each row's T - 1: rows of a batch may differ, right-padded), total [] int32 (the longest
    T, or the cache's capacity: a fixed size for graph replay); rotary: (cos, sin) [max positions, D/2] tables the
    op rotates q and k with (query row s and its key at position P + s); grow: the present outputs are the past
    plus this call's positions. No attention bias: ONNX Runtime's CUDA GroupQueryAttention refuses one, and
    seqlens_k with right-padded rows says all a bias would."""
    seqlens_k: torch.Tensor
    total: torch.Tensor
    rotary: tuple
    grow: bool = False

    @staticmethod
    def uniform(batch: int, past: int, new: int, **kw) -> "Positions":
        """Every row has `past` positions cached and `new` new ones (batch may be symbolic, past/new not)."""
        return Positions(torch.full((batch,), past + new - 1, dtype=torch.int32),
                         torch.tensor(past + new, dtype=torch.int32), **kw)


def attend(q, k, v, cache_k, cache_v, pos: Positions, num_heads: int, kv_num_heads: int, scale: float):
    cos, sin = pos.rotary
    return group_query_attention(q, k, v, cache_k, cache_v, pos.seqlens_k, pos.total, cos, sin, num_heads,
                                 kv_num_heads, scale, pos.grow)


def _rotate(x, cos_cache, sin_cache, start: int):
    """Rotate-half RoPE of x [B,S,H,D] at positions start..start+S-1 from caches [positions, D/2]."""
    s, half = x.shape[1], x.shape[-1] // 2
    cos = torch.cat((cos_cache[start:start + s],) * 2, dim=-1)[None, :, None]
    sin = torch.cat((sin_cache[start:start + s],) * 2, dim=-1)[None, :, None]
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@torch.library.custom_op("qwen3_tts::group_query_attention", mutates_args=())
def group_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache_k: torch.Tensor,
                          cache_v: torch.Tensor, seqlens_k: torch.Tensor, total: torch.Tensor,
                          cos_cache: torch.Tensor, sin_cache: torch.Tensor, num_heads: int,
                          kv_num_heads: int, scale: float, grow: bool
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, s, _ = q.shape
    # the cases this project's export checks use: each row's T = seqlens_k + 1 at least S (a right-padded prefill's
    # shorter rows are checked against the official model instead: tests/test_graphs.py), and several new positions
    # after a past only in a batch of one (ONNX Runtime before 1.32 takes no query_seqlens, which batches need)
    t = [int(x) + 1 for x in seqlens_k]
    if min(t) < s or (max(t) > s and s > 1 and b > 1) or (not grow and max(t) > int(total)):
        raise NotImplementedError("the reference covers rows whose T is at least S, S > 1 after a past for B = 1")
    rows = [_attend_row(q[r:r + 1], k[r:r + 1], v[r:r + 1], cache_k[r:r + 1], cache_v[r:r + 1], t[r], cos_cache,
                        sin_cache, num_heads, kv_num_heads, scale, grow) for r in range(b)]
    return tuple(torch.cat(parts, dim=0) for parts in zip(*rows))


def _attend_row(q, k, v, cache_k, cache_v, t: int, cos_cache, sin_cache, num_heads: int, kv_num_heads: int,
                scale: float, grow: bool):
    """One row: its S new positions are P..T-1 of its cache (P = T - S)."""
    _, s, _ = q.shape
    d = cache_k.shape[-1]
    past = t - s
    q, k = q.view(1, s, num_heads, d), k.view(1, s, kv_num_heads, d)
    q, k = _rotate(q, cos_cache, sin_cache, past), _rotate(k, cos_cache, sin_cache, past)
    k, v = k.transpose(1, 2), v.view(1, s, kv_num_heads, d).transpose(1, 2)
    if grow:
        assert cache_k.shape[2] == past, "a growing cache holds exactly the past"
        cache_k, cache_v = torch.cat((cache_k, k), dim=2), torch.cat((cache_v, v), dim=2)
    else:
        cache_k, cache_v = cache_k.clone(), cache_v.clone()
        cache_k[:, :, past:t], cache_v[:, :, past:t] = k, v
    # GQA without repeating K/V: the query heads grouped by the KV head they share
    rep = num_heads // kv_num_heads
    qg = q.view(1, s, kv_num_heads, rep, d).permute(0, 2, 3, 1, 4).reshape(1, kv_num_heads, rep * s, d)
    scores = (qg @ cache_k[:, :, :t].transpose(-1, -2)).view(1, kv_num_heads, rep, s, t) * scale
    causal = torch.arange(t) <= torch.arange(s).unsqueeze(1) + past
    probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1).view(1, kv_num_heads, rep * s, t)
    out = (probs @ cache_v[:, :, :t]).view(1, kv_num_heads, rep, s, d).permute(0, 3, 1, 2, 4)
    return out.reshape(1, s, num_heads * d), cache_k, cache_v


@group_query_attention.register_fake
def _(q, k, v, cache_k, cache_v, seqlens_k, total, cos_cache, sin_cache, num_heads, kv_num_heads, scale,
      grow):
    if grow:
        shape = (cache_k.shape[0], cache_k.shape[1], cache_k.shape[2] + q.shape[1], cache_k.shape[3])
        return torch.empty_like(q), cache_k.new_empty(shape), cache_v.new_empty(shape)
    return torch.empty_like(q), torch.empty_like(cache_k), torch.empty_like(cache_v)


_INPUTS = (("query", "T"), ("key", "T"), ("value", "T"), ("past_key", "T"), ("past_value", "T"),
           ("seqlens_k", "M"), ("total_sequence_length", "M"), ("cos_cache", "T"), ("sin_cache", "T"),
           ("position_ids", "tensor(int64)"), ("attention_bias", "T"), ("head_sink", "T"),
           ("k_scale", "tensor(float)"), ("v_scale", "tensor(float)"), ("q_norm_weight", "T"),
           ("k_norm_weight", "T"))
_REQUIRED = ("query", "seqlens_k", "total_sequence_length")


def register_schema() -> None:
    """Declare GroupQueryAttention (the inputs ONNX Runtime 1.31 defines, in its order; 1.32 appends query_seqlens,
    which these graphs do not use, so that onnxruntime-gpu 1.31 runs them) to onnx, once."""
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
                    attr("scale", OpSchema.AttrType.FLOAT, ""), attr("do_rotary", OpSchema.AttrType.INT, "")]))


def _onnx(q, k, v, cache_k, cache_v, seqlens_k, total, cos_cache, sin_cache, num_heads: int,
          kv_num_heads: int, scale: float, grow: bool):
    """The contrib node; `grow` needs nothing of it (its present outputs are T long whenever the past is P long)."""
    import onnxscript

    gqa = onnxscript.values.Opset(DOMAIN, 1).GroupQueryAttention
    return gqa(q, k, v, cache_k, cache_v, seqlens_k, total, cos_cache, sin_cache,
               num_heads=num_heads, kv_num_heads=kv_num_heads, scale=scale, do_rotary=1,
               _outputs=3)


def translation_table() -> dict:
    """For torch.onnx.export(custom_translation_table=...)."""
    register_schema()
    return {torch.ops.qwen3_tts.group_query_attention.default: _onnx}
