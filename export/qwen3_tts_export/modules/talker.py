"""The talker: 28 Qwen3 layers predicting code group 0, as one graph for prefill and decode.

    inputs_embeds [B,S,H] ─► layer 0 … layer N-1 ─► norm ─► last position ─┬─► codec_head ─► logits [B,3072]
    KV cache [B,KV,C,D] ──┘   (each layer writes positions P..P+S-1)       └─► hidden [B,H]
    present [B,KV,C,D] ◄──────┘   (the same buffer when bound to it)

The KV cache lives outside the graph (generate.py keeps it) as buffers of a capacity C ≥ P + S that each layer's
GroupQueryAttention writes in place (modules/gqa.py). Rows of a batch are right-padded: row b holds T_b = P_b + S_b
positions, its mask's ones, and the mask may run on with zeros up to C (a fixed-size mask, for graph replay);
P = 0 is the prefill. The interleaved MRoPE of the official model reduces to plain 1-D RoPE because its three
position rows are always equal (SPEC §3.5).

RoPE is applied by the attention op, at the cache positions (P + s): no node of its own instead of a dozen per
layer (Split, Neg, Concat, Mul, Add for q and for k), 40 % of a decode step's nodes, each an operator dispatch on the
CPU (1.4 of 20.6 ms per step on the full-size 0.6B int4 talker, BENCHMARKS.md). With right padding every row's
cache positions start at 0, which are the official positions (cumsum of its mask, SPEC §3.5, counts from a
left-padded row's first real position).
"""
from __future__ import annotations

import torch
from torch import nn

from .common import Linear, Qwen3Layer, RMSNorm, rotary_caches
from .gqa import Positions


class Talker(nn.Module):
    def __init__(self, sd: dict, cfg: dict):
        super().__init__()
        self.num_layers = cfg["num_hidden_layers"]
        self.layers = nn.ModuleList(
            Qwen3Layer(sd, f"talker.model.layers.{i}.", cfg["num_attention_heads"], cfg["num_key_value_heads"],
                       cfg["head_dim"], cfg["rms_norm_eps"]) for i in range(self.num_layers))
        self.norm = RMSNorm(sd["talker.model.norm.weight"], cfg["rms_norm_eps"])
        self.codec_head = Linear(sd["talker.codec_head.weight"])
        # the attention op's RoPE tables, for every position the model has
        cos, sin = rotary_caches(cfg["max_position_embeddings"], cfg["head_dim"], cfg["rope_theta"])
        self.register_buffer("cos_cache", cos, persistent=False)
        self.register_buffer("sin_cache", sin, persistent=False)

    def forward(self, inputs_embeds, attention_mask, *past):
        # Rows are right-padded: row b's cache positions 0..T_b-1 are real (its mask's ones), T_b = P_b + S_b. The
        # mask may run on with zeros up to the cache's capacity: a fixed shape, whose values alone move on each step,
        # as a replayed CUDA graph needs (runtime's graph_replay.py). No attention bias: ONNX Runtime's CUDA
        # GroupQueryAttention takes none; seqlens_k (T_b - 1 per row) bounds each row's keys, and the op rotates at
        # cache positions, which right padding makes the official positions.
        t = attention_mask.sum(dim=1, keepdim=True)                                            # [B, 1]
        pos = Positions((t[:, 0] - 1).to(torch.int32), torch.full((), attention_mask.shape[1], dtype=torch.int32),
                        rotary=(self.cos_cache, self.sin_cache))
        x, skip = inputs_embeds, None
        present = []
        for i, layer in enumerate(self.layers):
            x, skip, k, v = layer(x, skip, past[2 * i], past[2 * i + 1], pos)
            present += [k, v]
        # each row's last real position of this call: index min(T_b, S) - 1 (a prefill's shorter rows end before S;
        # a step's one position is index 0); S counted from the data, so that nothing here is computed on the host
        s = torch.ones_like(inputs_embeds[:, :, 0], dtype=torch.int64).sum(dim=1, keepdim=True)  # [B, 1]
        idx = (torch.minimum(t, s) - 1).unsqueeze(-1).expand(-1, 1, x.shape[-1])                 # [B, 1, H]
        last = self.norm.after_add(x.gather(1, idx), skip.gather(1, idx))[0][:, 0]
        return (self.codec_head(last), last, *present)
