"""Reference frames -> talker inputs for the voice-clone (ICL) prompt (SPEC §3.4).

    codes [B,F,16] ─► group 0: talker codec_embedding ──────────────┐
                   ─► group g = 1..15: code predictor table g - 1 ──┴─► sum over the 16 groups ─► embeds [B,F,H]
"""
from __future__ import annotations

from torch import nn

from qwen3_tts_onnx.contracts import NUM_CODE_GROUPS

from .common import frozen


class CodecEmbedder(nn.Module):
    def __init__(self, sd: dict):
        super().__init__()
        tables = [sd["talker.model.codec_embedding.weight"]]
        tables += [sd[f"talker.code_predictor.model.codec_embedding.{g}.weight"] for g in range(NUM_CODE_GROUPS - 1)]
        self.tables = nn.ParameterList(frozen(t) for t in tables)

    def forward(self, codes):
        out = self.tables[0][codes[..., 0]]
        for g in range(1, NUM_CODE_GROUPS):
            out = out + self.tables[g][codes[..., g]]
        return out
