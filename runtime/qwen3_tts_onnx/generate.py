"""The frame loop: talker step -> code predictor (group 0 sampled, then groups 1-15), until EOS or the token budget.

    prompt embeds ─► talker (empty past = prefill) ─► logits, hidden ─┐
         ┌───────────────────────────────────────────────────────────┘
         ▼
    code_predictor(logits, seen, hidden, trailing text, noise) ─► codes of this frame [B,16] (group 0 first),
         │                                                        seen_next, next talker input
         ▼
    host: group 0 EOS / budget? ─► stop;  else yield the codes
         │
         ▼
    talker(next input, KV cache) ─► logits, hidden ─► (loop)

As in the official loop, N sampled group-0 tokens give N-1 frames: the last token (EOS, or the one that hits
max_new_tokens) never gets its residual groups (the graph computes them with an EOS token, they are dropped; the
token that would reach every row's budget is not drawn at all).
Finished rows of a batch keep running, fed EOS, as transformers does; their frames past EOS are dropped.

Where the tensors live: the KV cache, the talker's logits and hidden state, the repetition-penalty set and the next
talker input stay on the sessions' device (the GPU under CUDA) from one call to the next, through IO bindings
(`BoundSession`); only the frame's codes come to the host, once per frame. On the CPU the outputs are numpy arrays
that ONNX Runtime writes in place (a talker step costs the same as with `session.run`, measured on the 0.6B int4
talker). Sampling happens in the code predictor's graph (export's modules/sampling.py; the numpy statement of the
same rules, which the tests hold the graph to, is sampling.py here).

FrameLoop holds the loop's logic; a run's session calls go through a steps object: DynamicSteps here (bindings
per run, a growing mask and cache), or graph_replay.ReplaySteps (buffers fixed per (batch, capacity), so that
ONNX Runtime can replay CUDA graphs of the decode step and the code predictor).
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from . import contracts as C
from . import sessions
from .sampling import effective_top_k


KV_HEADROOM = 256  # positions the KV cache first holds beyond the prompt (then it doubles as needed)


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


_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
           "tensor(bool)": np.bool_}


class BoundSession:
    """A session run through an ONNX Runtime IO binding. Inputs are numpy arrays (copied to the device when it is
    not the CPU) or OrtValues already there. Every output goes into a buffer allocated here, whose shape comes
    from the graph's symbolic output shape and the `dims` of the call: numpy on the CPU (returned as numpy; fed
    back without a copy), an OrtValue on the GPU (returned as is, to be fed to the next call) except the outputs
    named in `host`, which come back as numpy.

    The buffers belong to the caller, never to the binding: outputs that ONNX Runtime allocates for a binding
    alias its storage and die when the binding is reused (LESSONS.md: a crash in ORT 1.24).
    """

    def __init__(self, session, host: tuple):
        self.session, self.host = session, set(host)
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.outputs = [(o.name, o.shape, _DTYPES[o.type]) for o in session.get_outputs()]
        self._binding = session.io_binding()

    def run(self, feeds: dict, dims: dict, inplace: dict | None = None, run_options=None) -> dict:
        """inplace: outputs to write into the given buffers (OrtValues) instead of fresh ones, returned as given."""
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        for name, v in feeds.items():
            if isinstance(v, ort.OrtValue):
                b.bind_ortvalue_input(name, v)
            else:
                b.bind_cpu_input(name, np.ascontiguousarray(v))
        out = dict(inplace or {})
        for name, shape, dtype in self.outputs:
            if name in out:
                b.bind_ortvalue_output(name, out[name])
                continue
            shape = [d if isinstance(d, int) else dims[d] for d in shape]
            if self.device == "cpu" or name in self.host:
                out[name] = np.empty(shape, dtype)
                b.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(out[name]))
            else:
                out[name] = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, self.device, 0)
                b.bind_ortvalue_output(name, out[name])
        self.session.run_with_iobinding(b, run_options)
        return out


class PlainSession:
    """The same interface over `session.run` with numpy everywhere: for session-like objects without IO bindings
    (wrappers that record or alter calls). Outputs asked for in place come back as new arrays instead."""

    def __init__(self, session, host: tuple):
        self.session = session
        self.outputs = [o.name for o in session.get_outputs()]
        self.device = "cpu"

    def run(self, feeds: dict, dims: dict, inplace: dict | None = None, run_options=None) -> dict:
        feeds = {n: v.numpy() if isinstance(v, ort.OrtValue) else v for n, v in feeds.items()}
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))


def bind(session, host: tuple):
    return BoundSession(session, host) if hasattr(session, "io_binding") else PlainSession(session, host)


def on_device(host: np.ndarray, device: str) -> ort.OrtValue:
    """An OrtValue holding `host`'s values on `device`: on the CPU it shares the array's memory (which the OrtValue
    keeps alive), elsewhere a copy."""
    if device == "cpu":
        return ort.OrtValue.ortvalue_from_numpy(host)
    return ort.OrtValue.ortvalue_from_numpy(host, device, 0)


class KVCache:
    """The talker's KV cache: per layer a key and a value buffer [B, KV, capacity, D] on the sessions' device
    whose first `length` positions hold the keys and values so far:

        [ past 0 .. length-1 | the next call's S positions | free ... capacity-1 ]

    Each talker call writes its positions into the buffers in place (its present outputs are bound to its past
    inputs), so a step copies nothing. A cache that runs out of room moves to buffers twice as large: the only
    copy, a few times per sequence."""

    def __init__(self, num_layers: int, batch: int, num_kv_heads: int, head_dim: int, device: str = "cpu",
                 capacity: int = 256, dtype=np.float32):
        self.past_names = [n for i in range(num_layers) for n in (C.past_key_name(i), C.past_value_name(i))]
        self.present_names = [n for i in range(num_layers) for n in (C.present_key_name(i), C.present_value_name(i))]
        self.shape, self.device, self.dtype = (batch, num_kv_heads, head_dim), device, np.dtype(dtype)
        self.length = self.capacity = 0
        self.buffers: list = [None] * len(self.past_names)  # OrtValues (over numpy arrays on the CPU)
        self.reserve(capacity)

    def _buffer(self, capacity: int, old) -> ort.OrtValue:
        b, h, d = self.shape
        host = np.zeros((b, h, capacity, d), self.dtype)
        if old is not None and self.length:
            host[:, :, :self.length] = old.numpy()[:, :, :self.length]
        return on_device(host, self.device)

    def reserve(self, total: int) -> None:
        """Room for `total` positions."""
        if total > self.capacity:
            capacity = max(total, 2 * self.capacity)
            self.buffers = [self._buffer(capacity, old) for old in self.buffers]
            self.capacity = capacity

    def feeds(self) -> dict:
        return dict(zip(self.past_names, self.buffers))

    def inplace(self) -> dict:
        return dict(zip(self.present_names, self.buffers))

    def update(self, outputs: dict, new: int) -> None:
        """After a call: its present outputs are the buffers themselves when written in place, else new arrays."""
        for i, name in enumerate(self.present_names):
            if outputs[name] is not self.buffers[i]:
                out = outputs[name]
                self.buffers[i] = out if isinstance(out, ort.OrtValue) else ort.OrtValue.ortvalue_from_numpy(out)
        self.length += new


def talker_call(talker: BoundSession, embeds, mask, cache: KVCache, run_options=None) -> tuple:
    """One talker call on `cache` (room made for the new positions, written in place) -> (logits, hidden)."""
    b, s = embeds.shape[:2]
    cache.reserve(cache.length + s)
    out = talker.run({"inputs_embeds": embeds, "attention_mask": mask, **cache.feeds()}, {"batch": b, "seq": s},
                     inplace=cache.inplace(), run_options=run_options)
    cache.update(out, s)
    return out["logits"], out["hidden"]


class DynamicSteps:
    """The talker and code predictor calls of one run, the usual way: bindings made for the run, outputs in fresh
    buffers (the KV cache's excepted), the attention mask growing by one position per step (each row's new 1 right
    after its own last: rows are right-padded) and the KV cache by doubling. `lock`: held around each session call
    (FrameLoop's; a no-op unless graphs are replayed); with replay, every call runs uncaptured."""

    def __init__(self, loop: "FrameLoop", embeds: np.ndarray, mask: np.ndarray, budgets: np.ndarray):
        b, cfg = embeds.shape[0], loop.cfg
        self.lock, self.run_options = loop.lock, loop.uncaptured
        # bindings per run: the sessions are shared by concurrent runs (server threads), a binding is not
        self.talker, self.code_predictor = bind(loop.talker, host=()), bind(loop.code_predictor, host=("codes",))
        self.cache = KVCache(cfg["num_hidden_layers"], b, cfg["num_key_value_heads"], cfg["head_dim"],
                             self.talker.device, capacity=embeds.shape[1] + min(int(budgets.max()), KV_HEADROOM),
                             dtype=cfg.get("kv_cache_dtype", "float32"))
        self.batch, self.mask = b, mask
        self.lengths = mask.sum(axis=1)  # each row's positions so far (rows are right-padded)
        self.seen = np.zeros((b, C.TALKER_VOCAB), dtype=bool)  # no group-0 id generated yet
        self.logits, self.hidden = self._talker(embeds)
        self.next_embed = None

    def _talker(self, embeds):
        with self.lock:
            return talker_call(self.talker, embeds, self.mask, self.cache, self.run_options)

    def predict(self, feeds: dict) -> np.ndarray:
        """feeds: the code predictor's per-frame inputs (step, finished, text_embed, noise) and the sampling
        options. Returns the frame's codes [B, 16] on the host."""
        with self.lock:
            out = self.code_predictor.run({"past_hidden": self.hidden, "logits": self.logits, "seen": self.seen,
                                           **feeds}, {"batch": self.batch}, run_options=self.run_options)
        self.seen, self.next_embed = out["seen_next"], out["next_embed"]
        return out["codes"]

    def advance(self) -> None:
        """The talker's step on the last frame's next input."""
        mask = np.zeros((self.batch, self.mask.shape[1] + 1), dtype=np.int64)
        mask[:, :-1] = self.mask
        mask[np.arange(self.batch), self.lengths] = 1  # each row's next position, after its own last one
        self.mask, self.lengths = mask, self.lengths + 1
        self.logits, self.hidden = self._talker(self.next_embed)

    def close(self) -> None:
        pass


class FrameLoop:
    """Runs the talker and code predictor sessions; `run()` yields one [B, 16] array of codes per frame.

    replay: a graph_replay.GraphReplay, whose fixed buffers let ONNX Runtime replay CUDA graphs of the decode step
    and the code predictor (on the CPU: the same fixed-buffer loop, without capture); None: DynamicSteps."""

    def __init__(self, talker, code_predictor, cfg: dict, replay=None):
        self.talker, self.code_predictor, self.cfg = talker, code_predictor, cfg
        self.eos = cfg["codec_eos_token_id"]
        self.replay = replay
        # A captured CUDA graph must not see another thread's work on its sessions mid-capture: with replay, one
        # session call at a time (concurrent runs still interleave, call by call).
        self.lock = threading.Lock() if replay is not None else contextlib.nullcontext()
        # DynamicSteps on sessions that capture CUDA graphs (replay's fallback) must say so, or be captured as graph 0
        self.uncaptured = sessions.graph_run_options(sessions.UNCAPTURED) if replay is not None else None

    def run(self, embeds: np.ndarray, mask: np.ndarray, trailing: np.ndarray, pad_embed: np.ndarray,
            opts: GenerationOptions, rngs: list, budgets: np.ndarray | None = None, stop: np.ndarray | None = None):
        """embeds [B, L, H], mask [B, L] from prompt.right_pad; trailing [B, T, H] per-frame text vectors
        (rows right-padded with pad_embed [H]). rngs: one numpy Generator per row, so that a row samples exactly
        as it would alone. budgets [B]: each row's max_new_tokens (default opts.max_new_tokens). stop [B] bool:
        the caller may set a row's entry at any time to end that row (cancellation). Yields
        (frame_codes [B, 16], finished [B] bool) per frame; a finished row's codes are to be dropped."""
        b = embeds.shape[0]
        budgets = np.full(b, opts.max_new_tokens) if budgets is None else np.asarray(budgets)
        stop = np.zeros(b, dtype=bool) if stop is None else stop
        if len(rngs) != b:
            raise ValueError(f"one random generator per row: {len(rngs)} for {b} rows")
        options = {"group0_do_sample": np.array(bool(opts.do_sample)),
                   "group0_temperature": np.array(opts.temperature, dtype=np.float32),
                   "group0_top_k": np.array(effective_top_k(opts.top_k, C.TALKER_VOCAB), dtype=np.int64),
                   "group0_top_p": np.array(opts.top_p, dtype=np.float32),
                   "repetition_penalty": np.array(opts.repetition_penalty, dtype=np.float32),
                   "do_sample": np.array(bool(opts.subtalker_dosample)),
                   "temperature": np.array(opts.subtalker_temperature, dtype=np.float32),
                   "top_k": np.array(effective_top_k(opts.subtalker_top_k, C.CODEBOOK_SIZE), dtype=np.int64),
                   "top_p": np.array(opts.subtalker_top_p, dtype=np.float32)}
        steps = self.replay.steps(self, embeds, mask, budgets) if self.replay is not None else None
        steps = steps or DynamicSteps(self, embeds, mask, budgets)
        try:
            yield from self._frames(steps, trailing, pad_embed, options, rngs, budgets, stop)
        finally:
            steps.close()  # also when the caller closes the generator (cancellation)

    def _frames(self, steps, trailing, pad_embed, options, rngs, budgets, stop):
        b = len(rngs)
        finished = np.zeros(b, dtype=bool)
        # The token drawn at step `last` would reach every row's budget, and such a token gets no frame (below), so
        # it is not drawn: neither its talker step nor its code predictor run (the official loop runs the first,
        # not the second). A token that reaches a smaller budget is drawn, being in a batch with longer rows.
        last = int(budgets.max()) - 1
        for step in range(last):
            finished |= stop
            if finished.all():  # every row cancelled
                return
            text = trailing[:, step] if step < trailing.shape[1] else np.broadcast_to(pad_embed, (b, pad_embed.shape[-1]))
            noise = np.empty((b, C.NUM_CODE_GROUPS), dtype=np.float32)
            for row, r in zip(noise, rngs):  # per row: group 0's uniform number, then the sub-talker's 15
                row[0] = r.random(dtype=np.float32)
                row[1:] = r.random(C.NUM_CODE_GROUPS - 1, dtype=np.float32)
            codes = steps.predict({"step": np.array(step, dtype=np.int64), "finished": finished.copy(),
                                   "text_embed": np.ascontiguousarray(text, dtype=np.float32), "noise": noise,
                                   **options})
            # as in the official loop, the token that reaches a row's budget ends it without getting its frame
            finished |= (codes[:, 0] == self.eos) | (step >= budgets - 1)
            if finished.all():
                return
            yield codes, finished.copy()
            if step + 1 == last:
                return
            steps.advance()


def collect(frames, batch: int) -> list:
    """Drain FrameLoop.run() into per-row code arrays [F_i, 16] int64, cut before each row's EOS."""
    rows: list[list] = [[] for _ in range(batch)]
    for codes, finished in frames:
        for i in range(batch):
            if not finished[i]:
                rows[i].append(codes[i])
    return [np.stack(r).astype(np.int64) if r else np.zeros((0, C.NUM_CODE_GROUPS), np.int64) for r in rows]
