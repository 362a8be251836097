"""The talker: 28 Qwen3 layers predicting code group 0, as one graph for prefill and decode.

    inputs_embeds [B,S,H] ─► layer 0 … layer N-1 ─► norm ─► last position ─┬─► codec_head ─► logits [B,3072]
    KV cache [B,KV,C,D] ──┘   (each layer writes positions P..P+S-1)       └─► hidden [B,H]
    present [B,KV,C,D] ◄──────┘   (the same buffer when bound to it)

The KV cache lives outside the graph (generate.py keeps it) as buffers of a capacity C ≥ P + S that each layer's
GroupQueryAttention writes in place (modules/gqa.py); the attention mask covers the P + S positions, and may run on
with zeros up to C (a fixed-size mask, for graph replay); P = 0 is the prefill. The interleaved MRoPE of the official model reduces to plain 1-D RoPE because its three position rows are
always equal (SPEC §3.5).

RoPE is applied by the attention op, at the cache positions (P + s): no node of its own instead of a dozen per
layer (Split, Neg, Concat, Mul, Add for q and for k), 40 % of a decode step's nodes, each an operator dispatch on the
CPU (1.4 of 20.6 ms per step on the full-size 0.6B int4 talker, BENCHMARKS.md). The official model rotates a
left-padded row at its own positions (cumsum of its mask, SPEC §3.5), which are the cache positions less the row's
padding: a constant shift per row, and attention scores under RoPE depend only on the distance between query and
key, so the two agree up to the rounding of cos/sin at other angles (the same order as the official MRoPE's own
5e-6 against plain RoPE). A row without padding is rotated at exactly the official positions.
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
        s = inputs_embeds.shape[1]
        # T = P + S, read from the mask's values: one past its last 1 (the new positions are real). The mask may run
        # on with zeros past T, up to the cache's capacity: a mask of fixed size, whose values alone move on each
        # step, as a replayed CUDA graph needs (generate.py's StaticFrameLoop). Positions come from cumulative sums
        # rather than arange(shape), so that nothing data-dependent is computed on the host.
        k_pos = torch.cumsum(torch.ones_like(attention_mask), dim=1) - 1                     # [B, Tm]
        t = (k_pos * (attention_mask > 0)).amax(dim=1, keepdim=True) + 1                     # [B, 1]
        q_pos = t - s + torch.cumsum(torch.ones_like(inputs_embeds[:, :, 0], dtype=torch.int64), dim=1) - 1
        # Causal over past + new positions, padding keys masked; a position always sees itself so that rows of
        # left padding stay finite (their outputs are never used).
        q_pos, k_pos = q_pos.unsqueeze(2), k_pos.unsqueeze(1)                                 # [B,S,1], [B,1,Tm]
        mask = ((k_pos <= q_pos) & (attention_mask.unsqueeze(1) > 0)) | (k_pos == q_pos)
        bias = torch.zeros(mask.shape, dtype=inputs_embeds.dtype).masked_fill(~mask, float("-inf")).unsqueeze(1)
        pos = Positions((t[:, 0] - 1).to(torch.int32),
                        torch.full((), attention_mask.shape[1], dtype=torch.int32),
                        bias=bias, rotary=(self.cos_cache, self.sin_cache))
        x, skip = inputs_embeds, None
        present = []
        for i, layer in enumerate(self.layers):
            x, skip, k, v = layer(x, skip, past[2 * i], past[2 * i + 1], pos)
            present += [k, v]
        last = self.norm.after_add(x[:, -1:], skip[:, -1:])[0][:, 0]
        return (self.codec_head(last), last, *present)
