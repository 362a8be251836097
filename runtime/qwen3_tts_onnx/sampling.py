"""Group-0 logits processing and sampling with the official semantics (SPEC §3.6 step 2), stated in numpy.

Order, as transformers 4.57.3 applies it: repetition penalty on the generated group-0 ids -> EOS blocked for the
first `min_new_tokens` tokens -> ids 2048..3071 except EOS suppressed -> (sampling only) temperature -> top-k ->
top-p -> draw. The runtime samples inside the code predictor's graph (`qwen3_tts_export/modules/sampling.py`:
`group0_scores`, `sample_token`), so that the talker's logits stay on the device; `process_group0` and
`sample_from_logits` are that graph's rules in numpy, which tests/test_sampling.py holds equal to transformers'
processors and to the graph. Both draw by inverse CDF from one uniform number per token. `effective_top_k` gives
the graph its top-k.
"""
from __future__ import annotations

import numpy as np

from .contracts import CODEBOOK_SIZE

MIN_NEW_TOKENS = 2  # EOS is blocked for the first two group-0 tokens (the official generate's min_new_tokens)
SUPPRESS_FROM = CODEBOOK_SIZE  # group-0 ids from here on are control tokens and speaker rows: suppressed, except EOS


def effective_top_k(top_k, vocab: int) -> int:
    """transformers skips the top-k warper for top_k 0/None and caps k at the vocabulary."""
    return vocab if not top_k or top_k <= 0 else min(int(top_k), vocab)


def process_group0(logits: np.ndarray, generated: list, step: int, eos_id: int, repetition_penalty: float,
                   suppress_from: int = SUPPRESS_FROM) -> np.ndarray:
    """logits [B, V] fp32 (modified copy); generated: per row, the group-0 ids generated so far."""
    scores = logits.astype(np.float32, copy=True)
    if repetition_penalty != 1.0:
        for row, ids in zip(scores, generated):
            if ids:
                u = np.unique(np.asarray(ids, dtype=np.int64))
                s = row[u]
                row[u] = np.where(s < 0, s * repetition_penalty, s / repetition_penalty)
    if step < MIN_NEW_TOKENS:
        scores[:, eos_id] = -np.inf
    keep_eos = scores[:, eos_id].copy()
    scores[:, suppress_from:] = -np.inf
    scores[:, eos_id] = keep_eos
    return scores


def _softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def sample_from_logits(scores: np.ndarray, u: np.ndarray, do_sample: bool, temperature: float, top_k: int,
                       top_p: float) -> np.ndarray:
    """scores [B, V], u [B] uniform in [0, 1) -> ids [B] (int64). top_k must already be effective (1..V)."""
    if not do_sample:
        return np.argmax(scores, axis=-1).astype(np.int64)
    vocab = scores.shape[-1]
    s = (scores / np.float32(temperature)).astype(np.float32)
    kth = -np.sort(-s, axis=-1)[:, top_k - 1:top_k]
    s = np.where(s < kth, -np.inf, s).astype(np.float32)
    if top_p < 1.0:
        asc = np.sort(s, axis=-1)
        cum = np.cumsum(_softmax(asc), axis=-1)
        n_remove = np.minimum((cum <= (1.0 - top_p)).sum(-1, keepdims=True), vocab - 1)
        cutoff = np.take_along_axis(asc, n_remove, axis=-1)
        s = np.where(s < cutoff, -np.inf, s)
    cdf = np.cumsum(_softmax(s), axis=-1)
    picked = (cdf < u[:, None] * cdf[:, -1:]).sum(-1)
    return np.minimum(picked, vocab - 1).astype(np.int64)
