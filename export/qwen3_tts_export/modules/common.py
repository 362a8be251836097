"""Building blocks shared by the modules: frozen weights, the matmul-friendly Linear, RMSNorm, RoPE, the Qwen3
decoder layer (talker, code predictor), causal convolutions, multi-head attention and RVQ codebooks (speech
encoder and decoder)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def frozen(t: torch.Tensor) -> nn.Parameter:
    """A copy of a checkpoint tensor as a constant of the traced graph."""
    return nn.Parameter(t.clone(), requires_grad=False)


class Linear(nn.Module):
    """y = x @ W^T + b with W stored transposed ([in, out]): the traced graph gets one MatMul on a constant, which
    ONNX Runtime's weight-only quantizers recognise (a Transpose per use would hide it from them)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight_t = nn.Parameter(weight.t().contiguous(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.clone(), requires_grad=False)

    def forward(self, x):
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias


def rms_norm(x, weight, eps: float):
    """Official RMSNorm (x * rsqrt(mean(x^2) + eps) * weight), written as a division by the square root: that is
    the pattern ONNX Runtime fuses into one SimplifiedLayerNormalization node (the rsqrt form stays 6 nodes)."""
    return weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)

    def after_add(self, x, skip):
        """(norm(x + skip), x + skip) as one node (modules/skip_norm.py); skip None: (norm(x), x)."""
        from .skip_norm import skip_rms_norm

        return (self(x), x) if skip is None else skip_rms_norm(x, skip, self.weight, self.eps)


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor):
    """positions [B, S] (any numeric dtype) -> cos, sin [B, 1, S, D] (rotate-half layout)."""
    freqs = positions.float().unsqueeze(-1) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)


def rotary_caches(positions: int, head_dim: int, theta: float) -> tuple:
    """The attention op's RoPE tables (modules/gqa.py): cos, sin [positions, D/2] (the rotate-half halves)."""
    cos, sin = rope_cos_sin(torch.arange(positions).unsqueeze(0), rope_inv_freq(head_dim, theta))
    return cos[0, 0, :, :head_dim // 2].contiguous(), sin[0, 0, :, :head_dim // 2].contiguous()


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Qwen3Layer(nn.Module):
    """Pre-norm decoder layer: GQA attention with per-head q/k RMSNorm and RoPE, then a SwiGLU MLP.

    forward() takes the residual stream of the new positions as x + skip (skip None: x alone), this layer's KV
    cache [B, KV, C, D] and the call's positions (gqa.Positions: where the keys go, the padding, the rotary caches
    the attention op rotates q and k with), and returns the stream in the same two parts and the present
    keys/values (modules/gqa.py). The stream stays in two parts so that each residual add is done by the norm
    after it, in one node (RMSNorm.after_add); the caller adds the last two parts with the final norm.
    """

    def __init__(self, sd: dict, prefix: str, num_heads: int, num_kv_heads: int, head_dim: int, eps: float):
        super().__init__()
        self.h, self.kv, self.d = num_heads, num_kv_heads, head_dim
        a = prefix + "self_attn."
        # q, k and v are one matrix product (and gate, up another): fewer, larger MatMuls cost less per-node time,
        # and a column-wise quantizer (blocks along the input dimension) quantizes the fused matrix exactly as it
        # would the parts.
        self.qkv_proj = Linear(torch.cat([sd[a + n + "_proj.weight"] for n in "qkv"]))
        self.o_proj = Linear(sd[a + "o_proj.weight"])
        self.q_norm = RMSNorm(sd[a + "q_norm.weight"], eps)
        self.k_norm = RMSNorm(sd[a + "k_norm.weight"], eps)
        self.input_layernorm = RMSNorm(sd[prefix + "input_layernorm.weight"], eps)
        self.post_attention_layernorm = RMSNorm(sd[prefix + "post_attention_layernorm.weight"], eps)
        self.gate_up_proj = Linear(torch.cat([sd[prefix + "mlp.gate_proj.weight"], sd[prefix + "mlp.up_proj.weight"]]))
        self.down_proj = Linear(sd[prefix + "mlp.down_proj.weight"])
        self.scale = head_dim ** -0.5

    def forward(self, x, skip, cache_k, cache_v, pos):
        from .gqa import attend

        b, s, _ = x.shape
        h, x = self.input_layernorm.after_add(x, skip)
        q, k, v = self.qkv_proj(h).split([self.h * self.d, self.kv * self.d, self.kv * self.d], dim=-1)
        q, k = self.q_norm(q.view(b, s, self.h, self.d)), self.k_norm(k.view(b, s, self.kv, self.d))
        attn, cache_k, cache_v = attend(q.reshape(b, s, self.h * self.d), k.reshape(b, s, self.kv * self.d), v,
                                        cache_k, cache_v, pos, self.h, self.kv, self.scale)
        h, x = self.post_attention_layernorm.after_add(x, self.o_proj(attn))
        gate, up = self.gate_up_proj(h).chunk(2, dim=-1)
        return x, self.down_proj(torch.nn.functional.silu(gate) * up), cache_k, cache_v


class CausalConv(nn.Module):
    """Conv1d that sees only the past: (k-1)·dilation+1-stride samples of left padding. A strided conv also gets
    stride-1 samples on the right, a constant amount that finishes the last window (ceil(L/stride) outputs) and
    whose surplus no window reads, so the graph has no length-dependent padding. The bias is optional."""

    def __init__(self, sd: dict, prefix: str, stride: int = 1, dilation: int = 1, groups: int = 1,
                 pad_mode: str = "constant"):
        super().__init__()
        self.weight = frozen(sd[prefix + "weight"])
        self.bias = frozen(sd[prefix + "bias"]) if prefix + "bias" in sd else None
        self.stride, self.dilation, self.groups, self.pad_mode = stride, dilation, groups, pad_mode
        self.pad = ((self.weight.shape[-1] - 1) * dilation + 1 - stride, stride - 1)

    def forward(self, x):
        if self.pad != (0, 0):
            x = F.pad(x, self.pad, mode=self.pad_mode)
        return F.conv1d(x, self.weight, self.bias, stride=self.stride, dilation=self.dilation, groups=self.groups)

    @property
    def context(self) -> int:
        """Input samples of the past each output needs (the left padding); the streaming state's length."""
        return self.pad[0]

    def step(self, x, past):
        """Streaming form (stride 1, zero padding): `past` [B, C, context] holds the previous call's last input
        samples (zeros at the start, which is the padding). Returns the outputs for x and the next `past`."""
        x = torch.cat((past, x), dim=-1)
        y = F.conv1d(x, self.weight, self.bias, dilation=self.dilation, groups=self.groups)
        return y, x[..., x.shape[-1] - self.context:]


def multi_head_attention(h, q_proj: Linear, k_proj: Linear, v_proj: Linear, o_proj: Linear, heads: int,
                         head_dim: int, cos, sin, mask, past_k=None, past_v=None):
    """Plain multi-head self-attention with RoPE over normalised inputs h [B, T, C] (no GQA), used by the speech
    tokenizer's transformers. past_k/past_v [B, heads, P, D] (optional) are keys/values of earlier positions,
    already rotated; mask [1, 1, T, P + T] (True = may attend). Returns the output and the keys/values of all
    P + T positions."""
    b, t, _ = h.shape
    q = apply_rope(q_proj(h).view(b, t, heads, head_dim).transpose(1, 2), cos, sin)
    k = apply_rope(k_proj(h).view(b, t, heads, head_dim).transpose(1, 2), cos, sin)
    v = v_proj(h).view(b, t, heads, head_dim).transpose(1, 2)
    if past_k is not None:
        k, v = torch.cat((past_k, k), dim=2), torch.cat((past_v, v), dim=2)
    scores = ((q @ k.transpose(-1, -2)) * (head_dim ** -0.5)).masked_fill(~mask, float("-inf"))
    out = o_proj((torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, heads * head_dim))
    return out, k, v


def codebook(embed_sum: torch.Tensor, cluster_usage: torch.Tensor) -> torch.Tensor:
    """An RVQ codebook's entries, as the official EuclideanCodebook computes them."""
    return embed_sum / cluster_usage.clamp(min=1e-5)[:, None]
