"""The numpy group-0 sampler and the in-graph torch sampler are the same rule, and that rule is transformers'."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (LogitsProcessorList, MinNewTokensLengthLogitsProcessor,
                                                    RepetitionPenaltyLogitsProcessor, SuppressTokensLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from qwen3_tts_export.modules.sampling import group0_scores, sample_token
from qwen3_tts_onnx.sampling import effective_top_k, process_group0, sample_from_logits


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.9, 50, 1.0), (0.7, 5, 0.8), (1.3, 0, 0.5), (1.0, 2048, 0.95)])
def test_numpy_and_graph_sampler_agree(temperature, top_k, top_p):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((64, 2048)) * 3).astype(np.float32)
    u = rng.random(64, dtype=np.float32)
    k = effective_top_k(top_k, 2048)
    ours = sample_from_logits(logits, u, True, temperature, k, top_p)
    graph = sample_token(torch.from_numpy(logits), torch.from_numpy(u), torch.tensor(True), torch.tensor(temperature),
                         torch.tensor(k), torch.tensor(top_p)).numpy()
    assert (ours == graph).mean() >= 0.98  # float summation order may move a draw sitting on a CDF boundary
    greedy = sample_token(torch.from_numpy(logits), torch.from_numpy(u), torch.tensor(False), torch.tensor(temperature),
                          torch.tensor(k), torch.tensor(top_p)).numpy()
    np.testing.assert_array_equal(greedy, logits.argmax(-1))


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.9, 50, 1.0), (0.7, 5, 0.8)])
def test_implied_distribution_equals_transformers_warpers(temperature, top_k, top_p):
    """Inverse-CDF sampling picks index i for u in [cdf[i-1], cdf[i]): the implied probabilities must equal
    softmax of transformers' warped scores."""
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((8, 2048)) * 3).astype(np.float32)
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k)]
                                  + ([TopPLogitsWarper(top_p)] if top_p < 1 else []))
    want = torch.softmax(warpers(None, torch.from_numpy(logits)), -1).numpy()
    # Probe the CDF: draw on a fine grid of u and count picks.
    grid = (np.arange(20000, dtype=np.float64) + 0.5) / 20000
    for row in range(8):
        picks = sample_from_logits(np.repeat(logits[row:row + 1], grid.size, 0), grid.astype(np.float32), True,
                                   temperature, top_k, top_p)
        freq = np.bincount(picks, minlength=2048) / grid.size
        assert np.abs(freq - want[row]).max() <= 2e-4
        assert set(np.flatnonzero(freq)) <= set(np.flatnonzero(want[row]))


def test_group0_processing_equals_transformers():
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((3, 3072)) * 3).astype(np.float32)
    generated = [[5, 5, 17, 2000], [1], [2047, 3, 9]]
    eos = 2150
    suppress = [i for i in range(2048, 3072) if i != eos]
    procs = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.05), SuppressTokensLogitsProcessor(suppress)])
    ids = torch.tensor([g + [g[-1]] * (4 - len(g)) for g in generated])  # repeats do not change the penalty
    want = procs(ids, torch.from_numpy(logits)).numpy()
    got = process_group0(logits, generated, step=5, eos_id=eos, repetition_penalty=1.05)
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    early = process_group0(logits, generated, step=1, eos_id=eos, repetition_penalty=1.05)
    assert np.isneginf(early[:, eos]).all() and np.isfinite(got[:, eos]).all()


@pytest.mark.parametrize("step", [0, 1, 2, 3])
def test_group0_eos_block_equals_transformers_min_new_tokens(step):
    """At steps 0..3, process_group0 equals transformers' repetition penalty -> MinNewTokensLengthLogitsProcessor
    (min_new_tokens=2) -> suppression in the order transformers applies them, on the `step` ids generated so far
    (the official talker generates from embeddings: no prompt ids to skip): EOS is blocked at steps 0 and 1 only."""
    rng = np.random.default_rng(4 + step)
    eos = 2150
    logits = (rng.standard_normal((3, 3072)) * 3).astype(np.float32)
    logits[:, eos] = 20.0  # EOS wins wherever it is allowed
    generated = rng.integers(0, 2048, (3, step)).tolist()
    suppress = [i for i in range(2048, 3072) if i != eos]
    procs = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.05),
                                 MinNewTokensLengthLogitsProcessor(prompt_length_to_skip=0, min_new_tokens=2,
                                                                   eos_token_id=eos),
                                 SuppressTokensLogitsProcessor(suppress)])
    want = procs(torch.tensor(generated, dtype=torch.int64).reshape(3, step), torch.from_numpy(logits)).numpy()
    got = process_group0(logits, generated, step=step, eos_id=eos, repetition_penalty=1.05)
    np.testing.assert_array_equal(got, want)
    assert np.isneginf(got[:, eos]).all() == (step < 2) and (got.argmax(-1) == eos).all() == (step >= 2)


@pytest.mark.parametrize("step", [0, 1, 2, 7])
@pytest.mark.parametrize("penalty", [1.05, 1.0, 1.3])
def test_group0_graph_processing_equals_numpy(step, penalty):
    """The code predictor's in-graph group-0 processing (seen set as a [B, V] mask) is process_group0 exactly."""
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((4, 3072)) * 3).astype(np.float32)
    generated = [[5, 5, 17, 2000, 2150], [], [2047, 3, 9], list(rng.integers(0, 2048, 40))]
    seen = np.zeros((4, 3072), bool)
    for row, ids in zip(seen, generated):
        row[ids] = True
    eos = 2150
    want = process_group0(logits, generated, step, eos, penalty)
    got = group0_scores(torch.from_numpy(logits), torch.from_numpy(seen), torch.tensor(step), torch.tensor(penalty,
                        dtype=torch.float32), eos).numpy()
    np.testing.assert_array_equal(got, want)
