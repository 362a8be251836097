"""Prompt embeddings: every talker input position is a text-track vector plus a codec-track vector (SPEC §3.2).

    text_ids [B,S] ─► text_embedding ─► fc1 ─► SiLU ─► fc2 ─► × (text_ids ≥ 0) ─┐
    codec_ids [B,S] ─► codec_embedding ─────────────────────► × (codec_ids ≥ 0) ─┴─► + ─► embeds [B,S,H]
"""
from __future__ import annotations

import torch
from torch import nn

from .common import Linear


class TextEmbedder(nn.Module):
    def __init__(self, sd: dict):
        super().__init__()
        self.text_embedding = nn.Parameter(sd["talker.model.text_embedding.weight"].clone(), requires_grad=False)
        self.codec_embedding = nn.Parameter(sd["talker.model.codec_embedding.weight"].clone(), requires_grad=False)
        p = "talker.text_projection."
        self.fc1 = Linear(sd[p + "linear_fc1.weight"], sd[p + "linear_fc1.bias"])
        self.fc2 = Linear(sd[p + "linear_fc2.weight"], sd[p + "linear_fc2.bias"])

    def forward(self, text_ids, codec_ids):
        has_text = (text_ids >= 0).unsqueeze(-1)
        has_codec = (codec_ids >= 0).unsqueeze(-1)
        text = self.fc2(torch.nn.functional.silu(self.fc1(self.text_embedding[text_ids.clamp(min=0)])))
        codec = self.codec_embedding[codec_ids.clamp(min=0)]
        zero = torch.zeros((), dtype=text.dtype)
        return torch.where(has_text, text, zero) + torch.where(has_codec, codec, zero)
