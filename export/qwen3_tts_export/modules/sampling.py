"""In-graph sampling with the official warper semantics, driven by uniform noise from the host: group 0 (the
talker's logits, processed as the official loop does: `group0_scores`) and groups 1-15, all in the code predictor's
graph, so that the talker's logits never leave the device and a frame needs one read by the host (its codes).

temperature -> top-k (keeps ties with the k-th value, as transformers' TopKLogitsWarper) -> top-p (bypassed when
top_p >= 1, as transformers skips the warper) -> inverse-CDF draw with u in [0, 1). `do_sample` false gives the
argmax of the raw logits (transformers applies no warper when sampling is off). The runtime's numpy twin for
group 0 is `qwen3_tts_onnx.sampling.sample_from_logits`; a test holds the two equal.

    do_sample ─► If ─┬─ false: argmax(logits)
                     └─ true:  /temperature ─► TopK(k): the k-th value ─► mask below it
                                  ─► If top_p < 1: sort, cumulative softmax, mask below the cutoff
                                  ─► softmax ─► cumsum ─► count(cdf < u·total)

Each choice is an ONNX If (torch.cond), so that a frame pays only for the path it takes: greedy decoding runs one
ArgMax per group, and top-k finds its threshold with a TopK of k values instead of sorting the vocabulary.
"""
from __future__ import annotations

import torch

from qwen3_tts_onnx.sampling import MIN_NEW_TOKENS, SUPPRESS_FROM  # the rules' numbers, stated once


def _top_p(s, top_p):
    """transformers' TopPLogitsWarper: drop the lowest tokens whose cumulative probability is <= 1 - top_p."""
    sorted_asc = torch.sort(s, dim=-1).values
    cum = torch.softmax(sorted_asc, dim=-1).cumsum(-1)
    n_remove = (cum <= (1.0 - top_p)).sum(-1, keepdim=True).clamp(max=s.shape[-1] - 1)
    cutoff = sorted_asc.gather(-1, n_remove)
    return torch.where(s < cutoff, torch.full((), float("-inf"), dtype=s.dtype), s)


def _keep(s, top_p):
    return s.clone()


def _sample(logits, u, temperature, top_k, top_p):
    s = logits / temperature
    k = top_k.item()
    torch._check(k >= 1)
    torch._check(k <= s.shape[-1])
    kth = torch.topk(s, k, dim=-1).values[:, k - 1:k]
    s = torch.where(s < kth, torch.full((), float("-inf"), dtype=s.dtype), s)
    s = torch.cond(top_p < 1.0, _top_p, _keep, (s, top_p))
    cdf = torch.softmax(s, dim=-1).cumsum(-1)
    picked = (cdf < u.unsqueeze(-1) * cdf[..., -1:]).sum(-1)
    return picked.clamp(max=s.shape[-1] - 1)


def _greedy(logits, u, temperature, top_k, top_p):
    return logits.argmax(-1)


def group0_scores(logits, seen, step, repetition_penalty, eos: int):
    """The talker's logits [B, V] as the official loop hands them to the warpers: the repetition penalty on the ids
    generated so far (`seen` [B, V] bool; negative logits multiplied, positive divided), EOS blocked while `step` <
    MIN_NEW_TOKENS, ids SUPPRESS_FROM.. except EOS suppressed. The runtime's numpy twin is
    `qwen3_tts_onnx.sampling.process_group0`."""
    s = torch.where(seen, torch.where(logits < 0, logits * repetition_penalty, logits / repetition_penalty), logits)
    ids = torch.arange(logits.shape[-1], device=logits.device)
    blocked = ((ids >= SUPPRESS_FROM) & (ids != eos)) | ((ids == eos) & (step < MIN_NEW_TOKENS))
    return torch.where(blocked, torch.full((), float("-inf"), dtype=s.dtype), s)


def sample_token(logits, u, do_sample, temperature, top_k, top_p):
    """logits [B, V], u [B] in [0, 1), scalars do_sample (bool), temperature, top_k (1..V), top_p -> ids [B]."""
    return torch.cond(do_sample, _sample, _greedy, (logits, u, temperature, top_k, top_p))
