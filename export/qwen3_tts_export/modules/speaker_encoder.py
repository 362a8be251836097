"""The speaker encoder (ECAPA-TDNN, SPEC §4.2): log-mel frames of 24 kHz audio -> one x-vector per clip.

    mels [B,T,128] ─► TDNN k5 ─► 3 × SE-Res2Net (dilation 2, 3, 4) ─┬─► concat (blocks 1-3) ─► TDNN k1 (MFA)
                                                                    │
      x-vector [B,enc_dim] ◄─ conv k1 (fc) ◄─ attentive statistics pooling (weighted mean ‖ std over time) ◄─┘

Every convolution pads "same" with reflection, as the official `Conv1d(padding="same", padding_mode="reflect")`;
there is no batch norm. The mel front end lives in the runtime (numpy, `qwen3_tts_onnx.audio`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import frozen


class TDNN(nn.Module):
    """Conv1d with reflect "same" padding, then ReLU (unless relu=False)."""

    def __init__(self, sd: dict, prefix: str, dilation: int = 1, relu: bool = True):
        super().__init__()
        self.weight = frozen(sd[prefix + "weight"])
        self.bias = frozen(sd[prefix + "bias"])
        total = dilation * (self.weight.shape[-1] - 1)
        self.pad = (total // 2, total - total // 2)
        self.dilation, self.relu = dilation, relu

    def forward(self, x):
        if self.pad != (0, 0):
            x = F.pad(x, self.pad, mode="reflect")
        y = F.conv1d(x, self.weight, self.bias, dilation=self.dilation)
        return torch.relu(y) if self.relu else y


class SERes2Net(nn.Module):
    """tdnn1 ─► Res2Net (chunk 0 as is, chunk i through a TDNN of chunk i + previous output) ─► tdnn2 ─► SE ─► + x"""

    def __init__(self, sd: dict, prefix: str, dilation: int, scale: int):
        super().__init__()
        self.tdnn1 = TDNN(sd, prefix + "tdnn1.conv.")
        self.res2 = nn.ModuleList(TDNN(sd, f"{prefix}res2net_block.blocks.{i}.conv.", dilation)
                                  for i in range(scale - 1))
        self.tdnn2 = TDNN(sd, prefix + "tdnn2.conv.")
        self.se1 = TDNN(sd, prefix + "se_block.conv1.")
        self.se2 = TDNN(sd, prefix + "se_block.conv2.", relu=False)
        self.scale = scale

    def forward(self, x):
        h = self.tdnn1(x)
        parts = torch.chunk(h, self.scale, dim=1)
        outs = [parts[0]]
        for i in range(1, self.scale):
            outs.append(self.res2[i - 1](parts[i] if i == 1 else parts[i] + outs[-1]))
        h = self.tdnn2(torch.cat(outs, dim=1))
        h = h * torch.sigmoid(self.se2(self.se1(h.mean(dim=2, keepdim=True))))
        return h + x


def _stats(x, weights, eps: float = 1e-12):
    """Weighted mean and std over time; weights [B, C|1, T] sum to 1 over T."""
    mean = (weights * x).sum(2)
    std = torch.sqrt((weights * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(eps))
    return mean, std


# The official Qwen3TTSSpeakerEncoderConfig defaults: the released configs set only enc_dim and sample_rate.
CONFIG_DEFAULTS = dict(mel_dim=128, enc_channels=[512, 512, 512, 512, 1536], enc_kernel_sizes=[5, 3, 3, 3, 1],
                       enc_dilations=[1, 2, 3, 4, 1], enc_attention_channels=128, enc_res2net_scale=8,
                       enc_se_channels=128)


class SpeakerEncoder(nn.Module):
    def __init__(self, sd: dict, cfg: dict):
        super().__init__()
        cfg = {**CONFIG_DEFAULTS, **cfg}
        p = "speaker_encoder."
        dil, scale = cfg["enc_dilations"], cfg["enc_res2net_scale"]
        self.block0 = TDNN(sd, p + "blocks.0.conv.", dil[0])
        self.blocks = nn.ModuleList(SERes2Net(sd, f"{p}blocks.{i}.", dil[i], scale)
                                    for i in range(1, len(cfg["enc_channels"]) - 1))
        self.mfa = TDNN(sd, p + "mfa.conv.", dil[-1])
        self.asp_tdnn = TDNN(sd, p + "asp.tdnn.conv.")
        self.asp_conv = TDNN(sd, p + "asp.conv.", relu=False)
        self.fc = TDNN(sd, p + "fc.", relu=False)

    def forward(self, mels):
        x = self.block0(mels.transpose(1, 2))
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs, dim=1))  # [B, C, T]
        t = x.shape[-1]
        uniform = torch.ones_like(x[:, :1]) / t
        mean, std = _stats(x, uniform)
        context = torch.cat((x, mean.unsqueeze(2).expand_as(x), std.unsqueeze(2).expand_as(x)), dim=1)
        attn = torch.softmax(self.asp_conv(torch.tanh(self.asp_tdnn(context))), dim=2)
        mean, std = _stats(x, attn)
        return self.fc(torch.cat((mean, std), dim=1).unsqueeze(2)).squeeze(2)
