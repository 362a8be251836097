"""The frame loop: talker step -> group-0 sampling -> code predictor, until EOS or the token budget.

    prompt embeds ─► talker (empty past = prefill) ─► logits, hidden ─┐
         ┌───────────────────────────────────────────────────────────┘
         ▼
    sample g0 (sampling.py) ── EOS / budget? ─► stop
         │
         ▼
    code_predictor(hidden, g0, trailing text) ─► codes of this frame [B,16], next talker input
         │
         ▼
    talker(next input, KV cache) ─► logits, hidden ─► (loop)

As in the official loop, N sampled group-0 tokens give N-1 frames: the last token (EOS, or the one that hits
max_new_tokens) never gets its residual groups. Finished rows of a batch keep running, fed EOS, as transformers
does; their frames past EOS are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import contracts as C
from .sampling import effective_top_k, process_group0, sample_from_logits


@dataclass
class GenerationOptions:
    do_sample: bool
    top_k: int
    top_p: float
    temperature: float
    repetition_penalty: float
    subtalker_dosample: bool
    subtalker_top_k: int
    subtalker_top_p: float
    subtalker_temperature: float
    max_new_tokens: int


class KVCache:
    """The talker's KV cache: per layer, key and value arrays [B, KV, T, D] that each step's outputs replace."""

    def __init__(self, num_layers: int, batch: int, num_kv_heads: int, head_dim: int):
        empty = np.zeros((batch, num_kv_heads, 0, head_dim), dtype=np.float32)
        self.arrays = [empty] * (2 * num_layers)
        self.num_layers = num_layers

    def feeds(self) -> dict:
        out = {}
        for i in range(self.num_layers):
            out[C.past_key_name(i)] = self.arrays[2 * i]
            out[C.past_value_name(i)] = self.arrays[2 * i + 1]
        return out

    def update(self, present: list) -> None:
        self.arrays = list(present)


class FrameLoop:
    """Runs the talker and code predictor sessions; `run()` yields one [B, 16] array of codes per frame."""

    def __init__(self, talker, code_predictor, cfg: dict):
        self.talker, self.code_predictor, self.cfg = talker, code_predictor, cfg
        self.eos = cfg["codec_eos_token_id"]
        self._talker_out = ["logits", "hidden"] + [n for i in range(cfg["num_hidden_layers"])
                                                    for n in (C.present_key_name(i), C.present_value_name(i))]

    def _talker(self, embeds, mask, pos, cache: KVCache):
        out = self.talker.run(self._talker_out, {"inputs_embeds": embeds, "attention_mask": mask,
                                                 "position_ids": pos, **cache.feeds()})
        cache.update(out[2:])
        return out[0], out[1]

    def run(self, embeds: np.ndarray, mask: np.ndarray, pos: np.ndarray, trailing: np.ndarray, pad_embed: np.ndarray,
            opts: GenerationOptions, rng: np.random.Generator):
        """embeds [B, L, H], mask/pos [B, L] from prompt.left_pad; trailing [B, T, H] per-frame text vectors
        (rows right-padded with pad_embed [H]). Yields (frame_codes [B, 16], finished [B] bool) per frame."""
        b = embeds.shape[0]
        cfg = self.cfg
        cache = KVCache(cfg["num_hidden_layers"], b, cfg["num_key_value_heads"], cfg["head_dim"])
        logits, hidden = self._talker(embeds, mask, pos, cache)
        lengths = mask.sum(axis=1)
        generated: list[list[int]] = [[] for _ in range(b)]
        finished = np.zeros(b, dtype=bool)
        top_k = effective_top_k(opts.top_k, logits.shape[-1])
        cp_feeds = {"do_sample": np.array(bool(opts.subtalker_dosample)),
                    "temperature": np.array(opts.subtalker_temperature, dtype=np.float32),
                    "top_k": np.array(effective_top_k(opts.subtalker_top_k, C.CODEBOOK_SIZE), dtype=np.int64),
                    "top_p": np.array(opts.subtalker_top_p, dtype=np.float32)}
        for step in range(opts.max_new_tokens):
            scores = process_group0(logits, generated, step, self.eos, opts.repetition_penalty)
            token = sample_from_logits(scores, rng.random(b, dtype=np.float32), opts.do_sample, opts.temperature,
                                       top_k, opts.top_p)
            token = np.where(finished, self.eos, token)
            for row, t in zip(generated, token):
                row.append(int(t))
            finished |= token == self.eos
            if finished.all() or step == opts.max_new_tokens - 1:
                return
            text = trailing[:, step] if step < trailing.shape[1] else np.broadcast_to(pad_embed, (b, pad_embed.shape[-1]))
            codes, next_embed = self.code_predictor.run(["codes", "next_embed"], {
                "past_hidden": hidden, "token": token, "text_embed": np.ascontiguousarray(text, dtype=np.float32),
                "noise": rng.random((b, C.NUM_CODE_GROUPS - 1), dtype=np.float32), **cp_feeds})
            yield codes, finished.copy()
            mask = np.concatenate([mask, np.ones((b, 1), dtype=np.int64)], axis=1)
            step_pos = (lengths + step).reshape(b, 1).astype(np.int64)
            logits, hidden = self._talker(next_embed[:, None, :], mask, step_pos, cache)


def collect(frames, batch: int) -> list:
    """Drain FrameLoop.run() into per-row code arrays [F_i, 16] int64, cut before each row's EOS."""
    rows: list[list] = [[] for _ in range(batch)]
    for codes, finished in frames:
        for i in range(batch):
            if not finished[i]:
                rows[i].append(codes[i])
    return [np.stack(r).astype(np.int64) if r else np.zeros((0, C.NUM_CODE_GROUPS), np.int64) for r in rows]
