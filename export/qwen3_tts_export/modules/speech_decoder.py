"""The 12 Hz speech decoder: 16 code groups per 80 ms frame -> 1920 samples at 24 kHz.

    codes [B,16,T] ─► RVQ decode (group 0: rvq_first; 1..15: rvq_rest) ─► pre_conv (causal k3) ─► input_proj
      ─► 8 transformer layers (sliding window 72, RoPE θ 1e4, LayerScale) ─► norm ─► output_proj
      ─► 2 × [ConvTranspose k2 s2 ─► ConvNeXt] ─► conv k7 ─► 4 × [SnakeBeta ─► ConvTranspose ×r ─► 3 residual units]
      ─► SnakeBeta ─► conv k7 ─► clamp(-1, 1) ─► waveform [B, T*1920]

All convolutions are causal (left padding only); transposed convolutions trim k - s samples on the right.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import (CausalConv, Linear, codebook, frozen, multi_head_attention, rms_norm, rope_cos_sin,
                     rope_inv_freq)


class CausalTransConv(nn.Module):
    def __init__(self, sd: dict, prefix: str, stride: int):
        super().__init__()
        self.weight = frozen(sd[prefix + "weight"])
        self.bias = frozen(sd[prefix + "bias"])
        self.stride = stride
        self.trim = self.weight.shape[-1] - stride

    def forward(self, x):
        y = F.conv_transpose1d(x, self.weight, self.bias, stride=self.stride)
        return y[..., : y.shape[-1] - self.trim] if self.trim > 0 else y


class SnakeBeta(nn.Module):
    """x + 1/(exp(beta) + 1e-9) * sin^2(x * exp(alpha)), per channel."""

    def __init__(self, sd: dict, prefix: str):
        super().__init__()
        self.alpha = nn.Parameter(sd[prefix + "alpha"].exp().reshape(1, -1, 1), requires_grad=False)
        self.inv_beta = nn.Parameter((1.0 / (sd[prefix + "beta"].exp() + 1e-9)).reshape(1, -1, 1), requires_grad=False)

    def forward(self, x):
        return x + self.inv_beta * torch.sin(x * self.alpha).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, sd: dict, prefix: str, dilation: int):
        super().__init__()
        self.act1, self.act2 = SnakeBeta(sd, prefix + "act1."), SnakeBeta(sd, prefix + "act2.")
        self.conv1 = CausalConv(sd, prefix + "conv1.conv.", dilation=dilation)
        self.conv2 = CausalConv(sd, prefix + "conv2.conv.")

    def forward(self, x):
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class ConvNeXt(nn.Module):
    def __init__(self, sd: dict, prefix: str):
        super().__init__()
        dim = sd[prefix + "norm.weight"].shape[0]
        self.dwconv = CausalConv(sd, prefix + "dwconv.conv.", groups=dim)
        self.norm_w = frozen(sd[prefix + "norm.weight"])
        self.norm_b = frozen(sd[prefix + "norm.bias"])
        self.pw1 = Linear(sd[prefix + "pwconv1.weight"], sd[prefix + "pwconv1.bias"])
        self.pw2 = Linear(sd[prefix + "pwconv2.weight"], sd[prefix + "pwconv2.bias"])
        self.gamma = frozen(sd[prefix + "gamma"])

    def forward(self, x):
        h = self.dwconv(x).transpose(1, 2)
        h = F.layer_norm(h, (h.shape[-1],), self.norm_w, self.norm_b, 1e-6)
        h = self.gamma * self.pw2(F.gelu(self.pw1(h)))
        return x + h.transpose(1, 2)


class TransformerLayer(nn.Module):
    """Pre-norm layer, full multi-head attention limited to a causal sliding window, SwiGLU MLP, LayerScale."""

    def __init__(self, sd: dict, prefix: str, cfg: dict):
        super().__init__()
        self.h, self.d, self.eps = cfg["num_attention_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
        a = prefix + "self_attn."
        self.q, self.k = Linear(sd[a + "q_proj.weight"]), Linear(sd[a + "k_proj.weight"])
        self.v, self.o = Linear(sd[a + "v_proj.weight"]), Linear(sd[a + "o_proj.weight"])
        self.gate, self.up = Linear(sd[prefix + "mlp.gate_proj.weight"]), Linear(sd[prefix + "mlp.up_proj.weight"])
        self.down = Linear(sd[prefix + "mlp.down_proj.weight"])
        self.ln1 = frozen(sd[prefix + "input_layernorm.weight"])
        self.ln2 = frozen(sd[prefix + "post_attention_layernorm.weight"])
        self.ls1 = frozen(sd[prefix + "self_attn_layer_scale.scale"])
        self.ls2 = frozen(sd[prefix + "mlp_layer_scale.scale"])

    def forward(self, x, cos, sin, mask):
        h = rms_norm(x, self.ln1, self.eps)
        x = x + self.ls1 * multi_head_attention(h, self.q, self.k, self.v, self.o, self.h, self.d, cos, sin, mask)
        h = rms_norm(x, self.ln2, self.eps)
        return x + self.ls2 * self.down(F.silu(self.gate(h)) * self.up(h))


def _codebook(sd: dict, prefix: str) -> torch.Tensor:
    return codebook(sd[prefix + "embedding_sum"], sd[prefix + "cluster_usage"])


class SpeechDecoder(nn.Module):
    def __init__(self, sd: dict, cfg: dict):
        super().__init__()
        p = "decoder."
        q = p + "quantizer."
        books = [_codebook(sd, q + "rvq_first.vq.layers.0._codebook.")]
        books += [_codebook(sd, f"{q}rvq_rest.vq.layers.{i}._codebook.") for i in range(cfg["num_quantizers"] - 1)]
        self.codebooks = nn.Parameter(torch.stack(books), requires_grad=False)  # [16, 2048, dim]
        self.out_first = Linear(sd[q + "rvq_first.output_proj.weight"][:, :, 0])
        self.out_rest = Linear(sd[q + "rvq_rest.output_proj.weight"][:, :, 0])
        self.pre_conv = CausalConv(sd, p + "pre_conv.conv.")
        t = p + "pre_transformer."
        self.input_proj = Linear(sd[t + "input_proj.weight"], sd[t + "input_proj.bias"])
        self.output_proj = Linear(sd[t + "output_proj.weight"], sd[t + "output_proj.bias"])
        self.layers = nn.ModuleList(TransformerLayer(sd, f"{t}layers.{i}.", cfg) for i in range(cfg["num_hidden_layers"]))
        self.norm = frozen(sd[t + "norm.weight"])
        self.eps, self.window = cfg["rms_norm_eps"], cfg["sliding_window"]
        self.register_buffer("inv_freq", rope_inv_freq(cfg["head_dim"], cfg["rope_theta"]), persistent=False)
        self.upsample = nn.ModuleList()
        for i, r in enumerate(cfg["upsampling_ratios"]):
            self.upsample.append(CausalTransConv(sd, f"{p}upsample.{i}.0.conv.", r))
            self.upsample.append(ConvNeXt(sd, f"{p}upsample.{i}.1."))
        blocks: list[nn.Module] = [CausalConv(sd, p + "decoder.0.conv.")]
        for i, r in enumerate(cfg["upsample_rates"]):
            b = f"{p}decoder.{i + 1}.block."
            blocks += [SnakeBeta(sd, b + "0."), CausalTransConv(sd, b + "1.conv.", r)]
            blocks += [ResidualUnit(sd, f"{b}{j + 2}.", d) for j, d in enumerate((1, 3, 9))]
        n = len(cfg["upsample_rates"]) + 1
        blocks += [SnakeBeta(sd, f"{p}decoder.{n}."), CausalConv(sd, f"{p}decoder.{n + 1}.conv.")]
        self.blocks = nn.ModuleList(blocks)

    def quantizer_decode(self, codes):
        """codes [B, 16, T] -> [B, T, 512]: output projections of the summed codebook vectors."""
        first = self.codebooks[0][codes[:, 0]]
        rest = self.codebooks[1][codes[:, 1]]
        for g in range(2, codes.shape[1]):
            rest = rest + self.codebooks[g][codes[:, g]]
        return self.out_first(first) + self.out_rest(rest)

    def forward(self, codes):
        x = self.quantizer_decode(codes).transpose(1, 2)
        x = self.pre_conv(x).transpose(1, 2)
        x = self.input_proj(x)
        t = x.shape[1]
        pos = torch.arange(t, device=x.device)
        cos, sin = rope_cos_sin(pos.unsqueeze(0), self.inv_freq)
        diff = pos.unsqueeze(1) - pos.unsqueeze(0)
        mask = ((diff >= 0) & (diff < self.window)).reshape(1, 1, t, t)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        x = self.output_proj(rms_norm(x, self.norm, self.eps)).transpose(1, 2)
        for m in self.upsample:
            x = m(x)
        for m in self.blocks:
            x = m(x)
        return x.squeeze(1).clamp(-1.0, 1.0)
