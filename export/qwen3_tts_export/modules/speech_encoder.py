"""The 12 Hz speech encoder (Mimi, as wrapped by the official tokenizer): 24 kHz waveform -> 16 code groups per 80 ms.

    waveform [B,S] ─► conv k7 ─► 4 × [residual block (ELU ─► conv k3 ─► ELU ─► conv k1) ─► ELU ─► conv k2r s r]
      (r = 4, 5, 6, 8: ×960 ─► 25 Hz) ─► ELU ─► conv k3 ─► 8 transformer layers (LayerNorm, RoPE θ 1e4, full causal
      attention, GELU MLP, LayerScale) ─► downsample conv k4 s2 (replicate padding; ─► 12.5 Hz)
      ─┬► semantic input_proj ─► nearest of codebook 0 ───────────────────────────────► code 0
       └► acoustic input_proj ─► nearest of codebook 0 ─► residual ─► … codebook 14 ─► codes 1..15
      ─► codes [B,16,F],  F = ceil(S / 1920)

Every convolution is causal: (k-1)·dilation+1-stride samples on the left. Mimi pads the right with just enough
samples ((-L) mod stride) to finish the last window; common.CausalConv pads stride-1 samples instead, a constant
amount that yields the same ceil(L/stride) outputs and whose surplus no window ever reads: no length-dependent
padding in the graph.
The configured sliding_window is not applied: transformers' Mimi builds a plain causal mask (SPEC §4.3).
Nearest codebook entry: argmin over |e|² - 2·x·e (one MatMul + bias), the same argmin as Mimi's cdist up to rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import CausalConv, Linear, codebook, frozen, multi_head_attention, rope_cos_sin, rope_inv_freq


class ResidualBlock(nn.Module):
    def __init__(self, sd: dict, prefix: str, dilation: int, pad_mode: str):
        super().__init__()
        self.conv1 = CausalConv(sd, prefix + "block.1.conv.", dilation=dilation, pad_mode=pad_mode)
        self.conv2 = CausalConv(sd, prefix + "block.3.conv.", pad_mode=pad_mode)

    def forward(self, x):
        return x + self.conv2(F.elu(self.conv1(F.elu(x))))


class TransformerLayer(nn.Module):
    """Pre-norm layer: LayerNorm, multi-head attention with RoPE, GELU (erf) MLP, LayerScale on both branches."""

    def __init__(self, sd: dict, prefix: str, cfg: dict):
        super().__init__()
        self.h, self.d, self.eps = cfg["num_attention_heads"], cfg["head_dim"], cfg["norm_eps"]
        a = prefix + "self_attn."
        self.q, self.k = Linear(sd[a + "q_proj.weight"]), Linear(sd[a + "k_proj.weight"])
        self.v, self.o = Linear(sd[a + "v_proj.weight"]), Linear(sd[a + "o_proj.weight"])
        self.fc1, self.fc2 = Linear(sd[prefix + "mlp.fc1.weight"]), Linear(sd[prefix + "mlp.fc2.weight"])
        n1, n2 = prefix + "input_layernorm.", prefix + "post_attention_layernorm."
        self.ln1_w, self.ln1_b = frozen(sd[n1 + "weight"]), frozen(sd[n1 + "bias"])
        self.ln2_w, self.ln2_b = frozen(sd[n2 + "weight"]), frozen(sd[n2 + "bias"])
        self.ls1 = frozen(sd[prefix + "self_attn_layer_scale.scale"])
        self.ls2 = frozen(sd[prefix + "mlp_layer_scale.scale"])

    def forward(self, x, cos, sin, mask):
        c = x.shape[-1]
        h = F.layer_norm(x, (c,), self.ln1_w, self.ln1_b, self.eps)
        x = x + self.ls1 * multi_head_attention(h, self.q, self.k, self.v, self.o, self.h, self.d, cos, sin, mask)[0]
        h = F.layer_norm(x, (c,), self.ln2_w, self.ln2_b, self.eps)
        return x + self.ls2 * self.fc2(F.gelu(self.fc1(h)))


class ResidualVQ(nn.Module):
    """input_proj (1x1 conv), then per codebook: index of the nearest entry, residual -= that entry."""

    def __init__(self, sd: dict, prefix: str, n: int):
        super().__init__()
        self.input_proj = Linear(sd[prefix + "input_proj.weight"][:, :, 0])
        c = prefix + "layers.{}.codebook."
        books = [codebook(sd[c.format(i) + "embed_sum"], sd[c.format(i) + "cluster_usage"]) for i in range(n)]
        # |x - e|² = |x|² + |e|² - 2·x·e; |x|² is the same for every e, so argmin over x @ (-2e)ᵀ + |e|².
        self.dist = nn.ModuleList(Linear(-2.0 * e, e.pow(2).sum(-1)) for e in books)

    def forward(self, x):  # x [N, hidden] -> codes [N, n]
        r = self.input_proj(x)
        codes = []
        for i, dist in enumerate(self.dist):
            idx = dist(r).argmin(dim=-1)
            codes.append(idx)
            if i + 1 < len(self.dist):  # column idx of dist.weight_t is -2·e: this is r - e exactly, with no 2nd copy
                r = r + 0.5 * dist.weight_t.index_select(1, idx).t()
        return torch.stack(codes, dim=1)


class SpeechEncoder(nn.Module):
    def __init__(self, csd: dict, ecfg: dict, num_quantizers: int = 16):
        super().__init__()
        mode = ecfg["pad_mode"]
        if not ecfg["use_causal_conv"] or ecfg["use_conv_shortcut"] or mode not in ("constant", "replicate"):
            raise ValueError("only causal SEANet encoders without conv shortcuts and with constant/replicate padding")
        if ecfg["num_key_value_heads"] != ecfg["num_attention_heads"]:
            raise ValueError("the Mimi encoder transformer is expected to use plain multi-head attention")
        # self.seanet[i] is encoder.encoder.layers.i (the same list of convs, residual blocks and ELUs).
        p = "encoder.encoder.layers."
        blocks: list[nn.Module] = [CausalConv(csd, p + "0.conv.", pad_mode=mode)]
        for ratio in reversed(ecfg["upsampling_ratios"]):
            blocks += [ResidualBlock(csd, f"{p}{len(blocks) + j}.", ecfg["dilation_growth_rate"] ** j, mode)
                       for j in range(ecfg["num_residual_layers"])]
            blocks.append(nn.ELU())
            blocks.append(CausalConv(csd, f"{p}{len(blocks)}.conv.", stride=ratio, pad_mode=mode))
        blocks.append(nn.ELU())
        blocks.append(CausalConv(csd, f"{p}{len(blocks)}.conv.", pad_mode=mode))
        self.seanet = nn.Sequential(*blocks)
        t = "encoder.encoder_transformer.layers."
        self.layers = nn.ModuleList(TransformerLayer(csd, f"{t}{n}.", ecfg) for n in range(ecfg["num_hidden_layers"]))
        self.register_buffer("inv_freq", rope_inv_freq(ecfg["head_dim"], ecfg["rope_theta"]), persistent=False)
        self.downsample = CausalConv(csd, "encoder.downsample.conv.", stride=2, pad_mode="replicate")
        q, n_sem = "encoder.quantizer.", ecfg["num_semantic_quantizers"]
        self.semantic = ResidualVQ(csd, q + "semantic_residual_vector_quantizer.", n_sem)
        self.acoustic = ResidualVQ(csd, q + "acoustic_residual_vector_quantizer.", num_quantizers - n_sem)

    def forward(self, waveform):
        x = self.seanet(waveform.unsqueeze(1)).transpose(1, 2)  # [B, T, hidden] at 25 Hz
        t = x.shape[1]
        pos = torch.arange(t, device=x.device)
        cos, sin = rope_cos_sin(pos.unsqueeze(0), self.inv_freq)
        mask = (pos.unsqueeze(0) <= pos.unsqueeze(1)).reshape(1, 1, t, t)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        x = self.downsample(x.transpose(1, 2)).transpose(1, 2)  # [B, F, hidden] at 12.5 Hz
        b = x.shape[0]
        x = x.flatten(0, 1)
        codes = torch.cat((self.semantic(x), self.acoustic(x)), dim=1)  # [B*F, 16]
        return codes.view(b, -1, codes.shape[1]).transpose(1, 2)
