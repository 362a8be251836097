"""The 12 Hz speech decoder: 16 code groups per 80 ms frame -> 1920 samples at 24 kHz, with its streaming state.

    codes [B,16,T] ─► RVQ decode (group 0: rvq_first; 1..15: rvq_rest) ─► pre_conv (causal k3) ─► input_proj
      ─► 8 transformer layers (sliding window 72, RoPE θ 1e4, LayerScale) ─► norm ─► output_proj
      ─► 2 × [ConvTranspose k2 s2 ─► ConvNeXt] ─► conv k7 ─► 4 × [SnakeBeta ─► ConvTranspose ×r ─► 3 residual units]
      (each ConvTranspose computed as a polyphase Conv: see CausalTransConv)
      ─► SnakeBeta ─► conv k7 ─► clamp(-1, 1) ─► waveform [B, T*1920]

All convolutions are causal (left padding only); transposed convolutions trim k - s samples on the right. So the
decoder streams exactly: a call takes the frames after `offset` plus the state the previous call returned, and
gives the same samples as one pass over all frames.

    state in ──► conv_state.i   [B, C_in, context]  the last `context` inputs of each causal conv (zeros = padding)
                 attn_key.l/.value.l [B, heads, P ≤ 71, D]  rotated keys/values of the last 71 positions per layer
    state out ─► the same, after this call's frames (new_conv_state.i, new_attn_key.l, new_attn_value.l)

A zero state with offset 0 is a fresh decode, which is how the official windowed decode runs each window.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import (CausalConv, Linear, codebook, frozen, multi_head_attention, rms_norm, rope_cos_sin,
                     rope_inv_freq)


class CausalTransConv(nn.Module):
    """A causal ConvTranspose1d (kernel k, stride s, the k - s samples that wait for the next input trimmed on the
    right), computed as an ordinary convolution in polyphase form, because ONNX Runtime's CPU ConvTranspose (a GEMM
    into columns, then col2im) ran at 30-60 GFLOP/s where its Conv runs at about 200:

        x [B, Cin, L] ─► Conv (kernel m = ceil(k / s) taps, Cout·s outputs) ─► [B, Cout·s, L]
                      ─► view [B, Cout, s, L] ─► transpose ─► [B, Cout, L·s]   (phase p of input t -> sample t·s + p)

    Output sample t·s + p is Σ_j W[:, :, j·s + p]ᵀ x[t - j] for j < m: phase p's taps of the transposed kernel,
    reversed in time (a conv correlates, a transposed conv convolves). The kernel is zero-padded to m·s taps."""

    def __init__(self, sd: dict, prefix: str, stride: int):
        super().__init__()
        w = sd[prefix + "weight"]  # [Cin, Cout, k]
        cin, cout, k = w.shape
        m = -(-k // stride)
        w = F.pad(w, (0, m * stride - k)).reshape(cin, cout, m, stride)  # [c, o, j, p]
        self.weight = frozen(w.permute(1, 3, 0, 2).flip(-1).reshape(cout * stride, cin, m))  # [(o, p), c, m-1-j]
        self.bias = frozen(sd[prefix + "bias"].repeat_interleave(stride))
        self.in_channels, self.stride, self.taps = cin, stride, m

    @property
    def context(self) -> int:
        """Inputs of the past whose kernel overlaps this call's outputs: ceil(k / s) - 1."""
        return self.taps - 1

    def forward(self, x, state: "StreamState"):
        """Outputs [stride * L] for the L new inputs; the state holds the last `context` inputs."""
        c = self.context
        if c:
            x = torch.cat((state.take(), x), dim=-1)
            state.give(x[..., x.shape[-1] - c:])
        y = F.conv1d(x, self.weight, self.bias)
        b, _, length = y.shape
        return y.view(b, -1, self.stride, length).transpose(2, 3).reshape(b, -1, length * self.stride)


class SnakeBeta(nn.Module):
    """x + 1/(exp(beta) + 1e-9) * sin^2(x * exp(alpha)), per channel."""

    def __init__(self, sd: dict, prefix: str):
        super().__init__()
        self.alpha = nn.Parameter(sd[prefix + "alpha"].exp().reshape(1, -1, 1), requires_grad=False)
        self.inv_beta = nn.Parameter((1.0 / (sd[prefix + "beta"].exp() + 1e-9)).reshape(1, -1, 1), requires_grad=False)

    def forward(self, x, state=None):
        s = torch.sin(x * self.alpha)
        return x + self.inv_beta * (s * s)  # a Mul: ONNX Runtime's Pow is slower for the same square


class ResidualUnit(nn.Module):
    def __init__(self, sd: dict, prefix: str, dilation: int):
        super().__init__()
        self.act1, self.act2 = SnakeBeta(sd, prefix + "act1."), SnakeBeta(sd, prefix + "act2.")
        self.conv1 = CausalConv(sd, prefix + "conv1.conv.", dilation=dilation)
        self.conv2 = CausalConv(sd, prefix + "conv2.conv.")

    def forward(self, x, state: "StreamState"):
        return x + conv_step(self.conv2, self.act2(conv_step(self.conv1, self.act1(x), state)), state)


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

    def forward(self, x, state: "StreamState"):
        h = conv_step(self.dwconv, x, state).transpose(1, 2)
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

    def forward(self, x, cos, sin, mask, past_k, past_v):
        h = rms_norm(x, self.ln1, self.eps)
        a, k, v = multi_head_attention(h, self.q, self.k, self.v, self.o, self.h, self.d, cos, sin, mask, past_k, past_v)
        x = x + self.ls1 * a
        h = rms_norm(x, self.ln2, self.eps)
        return x + self.ls2 * self.down(F.silu(self.gate(h)) * self.up(h)), k, v


class StreamState:
    """One call's state tensors: `take()` hands the stateful modules their incoming state in call order, `give()`
    collects the outgoing state in the same order."""

    def __init__(self, tensors):
        self._incoming = iter(tensors)
        self.outgoing: list = []

    def take(self):
        return next(self._incoming)

    def give(self, t) -> None:
        self.outgoing.append(t)

    def check_used(self) -> None:
        if next(self._incoming, None) is not None:
            raise ValueError("more conv states were given than the decoder has")


def conv_step(conv: CausalConv, x, state: StreamState):
    """A causal conv in streaming form when it has a context (kernel > 1), else a plain call."""
    if not conv.context:
        return conv(x)
    y, past = conv.step(x, state.take())
    state.give(past)
    return y


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

    def conv_state_layout(self) -> list:
        """[input channels, context] of every causal conv with a context, in call order: the conv_state.i inputs."""
        out = []
        for m in self.modules():
            if isinstance(m, CausalConv) and m.context:
                out.append([m.weight.shape[1] * m.groups, m.context])
            elif isinstance(m, CausalTransConv) and m.context:
                out.append([m.in_channels, m.context])
        return out

    def attention_layout(self) -> dict:
        layer = self.layers[0]
        return {"layers": len(self.layers), "heads": layer.h, "head_dim": layer.d, "window": self.window}

    def stack_frames(self) -> int:
        """Frames after which the convolution stack (everything after the transformer) no longer depends on its
        incoming state: the sum of its convs' contexts, each in frames at the rate it runs at, rounded up, plus
        one. Decoding that many frames from any stack state therefore leaves the exact stack state."""
        rate, frames = 1, 0.0
        for m in list(self.upsample) + list(self.blocks):
            for c in m.modules():
                if isinstance(c, (CausalConv, CausalTransConv)):
                    frames += c.context / rate
            if isinstance(m, CausalTransConv):
                rate *= m.stride
        return math.ceil(frames) + 1

    def front(self, codes, offset, pre_conv_state, kv_state):
        """Codebooks, pre_conv and the transformer over the new frames: features [B, T, 512] (before the final
        norm), pre_conv's next state, and each layer's kept keys/values."""
        convs = StreamState([pre_conv_state])
        x = self.quantizer_decode(codes).transpose(1, 2)
        x = conv_step(self.pre_conv, x, convs).transpose(1, 2)
        x = self.input_proj(x)
        t, p = x.shape[1], kv_state[0].shape[2]
        pos = offset + torch.arange(t, device=x.device)
        cos, sin = rope_cos_sin(pos.unsqueeze(0), self.inv_freq)
        diff = torch.arange(t, device=x.device).unsqueeze(1) + p - torch.arange(p + t, device=x.device).unsqueeze(0)
        mask = ((diff >= 0) & (diff < self.window)).reshape(1, 1, t, p + t)
        kv = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, mask, kv_state[2 * i], kv_state[2 * i + 1])
            kv += [k[:, :, k.shape[2] - min(k.shape[2], self.window - 1):],
                   v[:, :, v.shape[2] - min(v.shape[2], self.window - 1):]]
        return x, convs.outgoing[0], kv

    def forward(self, codes, offset, *state):
        """codes [B, 16, T]; offset: the position of the first of these frames (0 for a fresh decode); state: the
        conv states (conv_state_layout order), then each layer's past keys and values. Returns the waveform
        [B, T * 1920] and the next state in the same order."""
        n_conv = len(state) - 2 * len(self.layers)
        x, pre_conv_state, kv = self.front(codes, offset, state[0], state[n_conv:])
        convs = StreamState(state[1:n_conv])
        x = self.output_proj(rms_norm(x, self.norm, self.eps)).transpose(1, 2)
        for m in self.upsample:
            x = m(x, convs)
        for m in self.blocks:
            x = conv_step(m, x, convs) if isinstance(m, CausalConv) else m(x, convs)
        convs.check_used()
        return (x.squeeze(1).clamp(-1.0, 1.0), pre_conv_state, *convs.outgoing, *kv)


class SpeechDecoderContext(nn.Module):
    """The decoder's front alone (codebooks, pre_conv, transformer): it advances a stream over frames whose samples
    nobody needs (an ICL reference, a window's left context) at a fraction of the cost, leaving the convolution
    stack's states as they were. The runtime then decodes the last `stack_frames()` of those frames through the
    full graph, discarding their samples: that re-derives the stack's states exactly (SpeechDecoder.stack_frames).

    codes [B,16,T], offset, conv_state.0 (pre_conv), attn_key.l/attn_value.l
        ─► new_conv_state.0, new_attn_key.l/new_attn_value.l     (no waveform, no conv stack)
    """

    def __init__(self, decoder: SpeechDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, codes, offset, pre_conv_state, *kv_state):
        _, pre_conv_state, kv = self.decoder.front(codes, offset, pre_conv_state, kv_state)
        return (pre_conv_state, *kv)
