"""Building blocks shared by the talker and the code predictor (Qwen3 decoder layers)."""
from __future__ import annotations

import torch
from torch import nn


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
    """Official RMSNorm: variance in fp32, normalised value times the weight."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor):
    """positions [B, S] (any numeric dtype) -> cos, sin [B, 1, S, D] (rotate-half layout)."""
    freqs = positions.float().unsqueeze(-1) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Qwen3Layer(nn.Module):
    """Pre-norm decoder layer: GQA attention with per-head q/k RMSNorm and RoPE, then a SwiGLU MLP.

    forward() takes the new positions' hidden states plus this layer's past K/V ([B, KV, P, D]) and a boolean mask
    [B, 1, S, P + S] (True = may attend), and returns the new hidden states and the full K/V ([B, KV, P + S, D]).
    """

    def __init__(self, sd: dict, prefix: str, num_heads: int, num_kv_heads: int, head_dim: int, eps: float):
        super().__init__()
        self.h, self.kv, self.d = num_heads, num_kv_heads, head_dim
        a = prefix + "self_attn."
        self.q_proj = Linear(sd[a + "q_proj.weight"])
        self.k_proj = Linear(sd[a + "k_proj.weight"])
        self.v_proj = Linear(sd[a + "v_proj.weight"])
        self.o_proj = Linear(sd[a + "o_proj.weight"])
        self.q_norm = RMSNorm(sd[a + "q_norm.weight"], eps)
        self.k_norm = RMSNorm(sd[a + "k_norm.weight"], eps)
        self.input_layernorm = RMSNorm(sd[prefix + "input_layernorm.weight"], eps)
        self.post_attention_layernorm = RMSNorm(sd[prefix + "post_attention_layernorm.weight"], eps)
        self.gate_proj = Linear(sd[prefix + "mlp.gate_proj.weight"])
        self.up_proj = Linear(sd[prefix + "mlp.up_proj.weight"])
        self.down_proj = Linear(sd[prefix + "mlp.down_proj.weight"])
        self.scale = head_dim ** -0.5

    def forward(self, x, cos, sin, past_k, past_v, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_norm(self.q_proj(h).view(b, s, self.h, self.d)).transpose(1, 2)
        k = self.k_norm(self.k_proj(h).view(b, s, self.kv, self.d)).transpose(1, 2)
        v = self.v_proj(h).view(b, s, self.kv, self.d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = torch.cat((past_k, k), dim=2)
        v = torch.cat((past_v, v), dim=2)
        # GQA without repeating K/V: group the query heads by the KV head they share.
        rep = self.h // self.kv
        qg = q.reshape(b, self.kv, rep * s, self.d)
        scores = (qg @ k.transpose(-1, -2)) * self.scale  # [B, KV, rep*S, T]
        scores = scores.view(b, self.kv, rep, s, -1)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        probs = torch.softmax(scores, dim=-1).view(b, self.kv, rep * s, -1)
        attn = (probs @ v).view(b, self.h, s, self.d).transpose(1, 2).reshape(b, s, self.h * self.d)
        x = x + self.o_proj(attn)
        h = self.post_attention_layernorm(x)
        x = x + self.down_proj(torch.nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))
        return x, k, v
