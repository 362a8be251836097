"""The code predictor: group 0 sampled from the talker's logits, then groups 1..15, in one graph run per frame,
plus the talker's next input.

    logits [B,3072], seen ─► group0_scores ─► sample ─► g0 (EOS for finished rows) ─► seen_next = seen ∪ {g0}
    past_hidden [B,H] ─┐                                 │
    g0 ────────────► C ─e0┴► proj ─► layers (pos 0,1) ─► norm ─► head[0] ─► sample ─► g1 ─► C_1 ─► proj ─► layers (pos 2)
        ─► head[1] ─► sample ─► g2 … ─► head[14] ─► g15                       (15 steps, unrolled, KV kept in-graph)
    next_embed = e0 + C_1(g1) + … + C_15(g15) + text_embed      [B,1,H]: the talker's next inputs_embeds

`proj` is small_to_mtp_projection (1.7B: Linear H -> 1024; 0.6B: identity). The official model runs this as a
nested `generate` with a fresh cache per frame (SPEC §3.7); step j uses embedding table j-1 and head j. Each layer's
attention is one GroupQueryAttention node (modules/gqa.py) that rotates q and k itself and returns its keys and
values grown by this step's positions; every position is known when tracing, so its inputs are constants.
Sampling group 0 here rather than on the host keeps the talker's logits on the device: the host reads one thing per
frame, the codes (noise[:, 0] draws group 0, noise[:, j] group j).
"""
from __future__ import annotations

import torch
from torch import nn

from .common import Linear, Qwen3Layer, RMSNorm, rotary_caches
from .gqa import Positions
from .sampling import group0_scores, sample_token

GROUPS = 16


class CodePredictor(nn.Module):
    def __init__(self, sd: dict, cfg: dict, eos: int):
        super().__init__()
        p = "talker.code_predictor."
        self.eos = eos
        self.kv, self.d = cfg["num_key_value_heads"], cfg["head_dim"]
        self.layers = nn.ModuleList(
            Qwen3Layer(sd, f"{p}model.layers.{i}.", cfg["num_attention_heads"], self.kv, self.d, cfg["rms_norm_eps"])
            for i in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(sd[p + "model.norm.weight"], cfg["rms_norm_eps"])
        self.heads = nn.ModuleList(Linear(sd[f"{p}lm_head.{j}.weight"]) for j in range(GROUPS - 1))
        self.codec_embedding = nn.Parameter(sd["talker.model.codec_embedding.weight"].clone(), requires_grad=False)
        self.group_embeddings = nn.ParameterList(
            nn.Parameter(sd[f"{p}model.codec_embedding.{j}.weight"].clone(), requires_grad=False)
            for j in range(GROUPS - 1))
        w = sd.get(p + "small_to_mtp_projection.weight")
        self.proj = nn.Identity() if w is None else Linear(w, sd[p + "small_to_mtp_projection.bias"])
        # the attention op rotates q and k itself, from these tables (positions 0..15)
        cos, sin = rotary_caches(GROUPS, self.d, cfg["rope_theta"])
        self.register_buffer("cos_cache", cos, persistent=False)
        self.register_buffer("sin_cache", sin, persistent=False)

    def _run_layers(self, x, past, start: int):
        """x [B, S, H] at positions start..start+S-1 over `past` (K/V of positions 0..start-1, which grow)."""
        pos = Positions.uniform(x.shape[0], start, x.shape[1], rotary=(self.cos_cache, self.sin_cache), grow=True)
        new_past, skip = [], None
        for i, layer in enumerate(self.layers):
            x, skip, k, v = layer(x, skip, past[2 * i], past[2 * i + 1], pos)
            new_past += [k, v]
        return self.norm.after_add(x[:, -1:], skip[:, -1:])[0][:, 0], new_past

    def forward(self, past_hidden, logits, seen, step, finished, text_embed, noise, group0_do_sample,
                group0_temperature, group0_top_k, group0_top_p, repetition_penalty, do_sample, temperature, top_k,
                top_p):
        b = past_hidden.shape[0]
        scores = group0_scores(logits, seen, step, repetition_penalty, self.eos)
        token = sample_token(scores, noise[:, 0], group0_do_sample, group0_temperature, group0_top_k, group0_top_p)
        token = torch.where(finished, torch.full((), self.eos, dtype=token.dtype), token)
        seen_next = seen | (torch.arange(logits.shape[-1], device=logits.device) == token.unsqueeze(1))
        e0 = self.codec_embedding[token]
        empty = past_hidden.new_zeros((b, self.kv, 0, self.d))
        past = [empty] * (2 * len(self.layers))
        x = self.proj(torch.stack((past_hidden, e0), dim=1))
        codes, embed_sum, pos = [token], e0, 0
        for j in range(GROUPS - 1):
            h, past = self._run_layers(x, past, pos)
            pos += x.shape[1]
            g = sample_token(self.heads[j](h), noise[:, j + 1], do_sample, temperature, top_k, top_p)
            codes.append(g)
            e = self.group_embeddings[j][g]
            embed_sum = embed_sum + e
            x = self.proj(e.unsqueeze(1))
        return torch.stack(codes, dim=1), (embed_sum + text_embed).unsqueeze(1), seen_next
