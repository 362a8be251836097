"""In-graph sampling with the official warper semantics, driven by uniform noise from the host.

temperature -> top-k (keeps ties with the k-th value, as transformers' TopKLogitsWarper) -> top-p (bypassed when
top_p >= 1, as transformers skips the warper) -> inverse-CDF draw with u in [0, 1). `do_sample` false gives the
argmax of the raw logits (transformers applies no warper when sampling is off). The runtime's numpy twin for
group 0 is `qwen3_tts_onnx.sampling.sample_from_logits`; a test holds the two equal.
"""
from __future__ import annotations

import torch


def sample_token(logits, u, do_sample, temperature, top_k, top_p):
    """logits [B, V], u [B] in [0, 1), scalars do_sample (bool), temperature, top_k (1..V), top_p -> ids [B]."""
    vocab = logits.shape[-1]
    greedy = logits.argmax(-1)
    s = logits / temperature
    sorted_desc = torch.sort(s, dim=-1, descending=True).values
    kth = sorted_desc.gather(-1, (top_k - 1).reshape(1, 1).expand(s.shape[0], 1))
    neg_inf = torch.full((), float("-inf"), dtype=s.dtype)
    s = torch.where(s < kth, neg_inf, s)
    sorted_asc = torch.sort(s, dim=-1).values
    cum = torch.softmax(sorted_asc, dim=-1).cumsum(-1)
    n_remove = (cum <= (1.0 - top_p)).sum(-1, keepdim=True).clamp(max=vocab - 1)
    cutoff = sorted_asc.gather(-1, n_remove)
    s = torch.where((top_p < 1.0) & (s < cutoff), neg_inf, s)
    cdf = torch.softmax(s, dim=-1).cumsum(-1)
    picked = (cdf < u.unsqueeze(-1) * cdf[..., -1:]).sum(-1).clamp(max=vocab - 1)
    return torch.where(do_sample, picked, greedy)
