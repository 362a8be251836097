"""The talker: 28 Qwen3 layers predicting code group 0, as one graph for prefill and decode.

    inputs_embeds [B,S,H] ─► layer 0 … layer N-1 ─► norm ─► last position ─┬─► codec_head ─► logits [B,3072]
    KV cache [B,KV,C,D] ──┘   (each layer writes positions P..P+S-1)       └─► hidden [B,H]
    present [B,KV,C,D] ◄──────┘   (the same buffer when bound to it)

The KV cache lives outside the graph (generate.py keeps it) as buffers of a capacity C ≥ P + S that each layer's
GroupQueryAttention writes in place (modules/gqa.py); the attention mask's length is P + S, and P = 0 is the
prefill. The interleaved MRoPE of the official model reduces to plain 1-D RoPE because its three position rows are
always equal (SPEC §3.5). RoPE is applied before the attention op, not by it: a left-padded row's positions
(cumsum of its mask) are not its cache positions, and the op's own rotary takes one offset per row in a prefill.
"""
from __future__ import annotations

import torch
from torch import nn

from .common import Linear, Qwen3Layer, RMSNorm, rope_cos_sin, rope_inv_freq
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
        self.register_buffer("inv_freq", rope_inv_freq(cfg["head_dim"], cfg["rope_theta"]), persistent=False)

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        s = inputs_embeds.shape[1]
        total = attention_mask.shape[1]
        cos, sin = rope_cos_sin(position_ids, self.inv_freq)
        # Causal over past + new positions, padding keys masked; a position always sees itself so that rows of
        # left padding stay finite (their outputs are never used).
        q_pos = torch.arange(s, device=inputs_embeds.device).unsqueeze(1) + (total - s)
        k_pos = torch.arange(total, device=inputs_embeds.device).unsqueeze(0)
        causal = k_pos <= q_pos
        mask = (causal.unsqueeze(0) & (attention_mask.unsqueeze(1) > 0)) | (k_pos == q_pos).unsqueeze(0)
        bias = torch.zeros(mask.shape, dtype=inputs_embeds.dtype).masked_fill(~mask, float("-inf")).unsqueeze(1)
        b = inputs_embeds.shape[0]
        pos = Positions(torch.full((b,), total - 1, dtype=torch.int32), torch.full((), total, dtype=torch.int32),
                        bias=bias, rope=(cos, sin))
        x = inputs_embeds
        present = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, past[2 * i], past[2 * i + 1], pos)
            present += [k, v]
        last = self.norm(x[:, -1])
        return (self.codec_head(last), last, *present)
