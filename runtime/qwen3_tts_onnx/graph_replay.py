"""The frame loop on fixed buffers, so that ONNX Runtime can replay CUDA graphs of the talker's decode step and the
code predictor: one launch each per frame instead of one per kernel (~1,500 kernels per frame at full size).

A captured CUDA graph replays the exact kernels, shapes and device addresses of its capture. So every input and
output of a replayed call lives in a buffer that outlives the run, allocated once per (batch, capacity) and reused
by later runs of that shape (`GraphReplay` keeps them, one set per key, each with its own graph id):

    host, per frame ──update_inplace──► step, finished, text_embed, noise    (and the mask's next 1, per step)
                                              │
    logits, hidden ───────────────► code predictor (graph id k) ──► codes ──► host (the one read per frame)
          ▲                      seen ─┘  └─► seen (in place)   └─► next_embed
          │                                                             │
    talker decode step (graph id k) ◄── mask [B, C] ◄───────────────────┘
          └── KV cache [B, KV, C, D] (in place; C = prompt + budget, rounded up to CAPACITY_STEP, never grown)

- The mask has the cache's capacity C and a fixed shape; the talker reads T from its values (graph revision 8).
- The sampling options are device buffers too, written at the start of each run: the captured sampler reads
  them there (export's graph_capture.py removed every value it read on the host).
- The prefill (a new prompt length each run) runs uncaptured (gpu_graph_id -1), into the same cache and outputs.
- ONNX Runtime captures a graph id's call after a few plain runs of it, then replays it.

On the CPU the same loop runs without capture (ONNX Runtime reads the run option only on CUDA); the tests hold
its codes equal to generate.py's DynamicSteps. A (batch, capacity) whose buffers another run holds, or a capacity
past the model's positions, runs DynamicSteps instead, uncaptured (gpu_graph_id -1: a run naming no graph id would
be captured as graph 0 and replayed later on buffers that no longer exist).
"""
from __future__ import annotations

import threading

import numpy as np
import onnxruntime as ort

from . import contracts as C
from .errors import ArtifactError, InputError
from .generate import _DTYPES, KVCache, on_device
from .sessions import CUDA, UNCAPTURED, graph_run_options, provider_name

REPLAYED = ("talker", "code_predictor")  # the graphs whose sessions capture CUDA graphs
MIN_GRAPH_REVISION = 8  # the talker reads T from its mask's values (a fixed-size mask)
CAPACITY_STEP = 256  # capacities are rounded up to this, so that a few buffer sets (and graphs) serve all runs
# (batch, capacity) keys kept, each with its KV cache for the key's whole capacity (0.6B fp16: 112 KiB per position
# and row, so batch 8 at 2304 positions holds 2 GiB) and its captured graphs; a run of another key runs uncaptured
MAX_BUFFER_SETS = 8


def check_artifacts(manifest: dict, root) -> None:
    """The fixed-buffer loop needs a talker that reads T from its mask's values."""
    revision = manifest.get("graph_revision", 1)
    if revision < MIN_GRAPH_REVISION:
        raise ArtifactError(f"{root} was exported at graph revision {revision}; the fixed-buffer frame loop (CUDA "
                            f"graphs) needs revision {MIN_GRAPH_REVISION} or later: export it again (make export "
                            "MODEL=... OUT=... PRECISION=fp16)")


def check_capturable(manifest: dict, root, providers: list) -> None:
    """cuda_graphs=True needs the CUDA provider first and graphs that ONNX Runtime can capture: the fp16 variant's
    (export's graph_capture.py made its code predictor free of control flow)."""
    if not providers or provider_name(providers[0]) != CUDA:
        raise InputError(f"cuda_graphs=True needs the CUDA execution provider first (onnxruntime-gpu and a GPU), "
                         f"got providers {[provider_name(p) for p in providers]}; leave cuda_graphs off on the CPU")
    check_artifacts(manifest, root)
    for graph in REPLAYED:
        details = manifest.get("precision_details", {}).get(graph, {})
        if "capture_blockers" not in details or details["capture_blockers"]:
            why = "; ".join(details.get("capture_blockers", [])) or "not checked: not the fp16 variant"
            raise ArtifactError(f"{root}: its {graph} graph holds what a CUDA graph cannot ({why}); make the fp16 "
                                "variant, whose graphs are made capturable: make export MODEL=... OUT=... "
                                "PRECISION=fp16")


class _BufferSet:
    """Every buffer that one (batch, capacity) key's replayed calls read and write, and their bindings, made once."""

    def __init__(self, loop, batch: int, capacity: int, device: str, graph_id: int):
        cfg = loop.cfg
        self.batch, self.capacity, self.device, self.busy = batch, capacity, device, False
        self.cache = KVCache(cfg["num_hidden_layers"], batch, cfg["num_key_value_heads"], cfg["head_dim"], device,
                             capacity=capacity, dtype=cfg.get("kv_cache_dtype", "float32"))
        self.run_options, self.prefill_options = graph_run_options(graph_id), graph_run_options(UNCAPTURED)

        def buffers(io) -> dict:  # outputs and inputs other than the KV cache: [batch, fixed...]
            return {v.name: self._zeros(tuple(d if isinstance(d, int) else {"batch": batch}[d] for d in v.shape),
                                        _DTYPES[v.type])
                    for v in io if not v.name.startswith((C.PAST_PREFIX, C.PRESENT_PREFIX))}

        cp_in, cp_out = buffers(loop.code_predictor.get_inputs()), buffers(loop.code_predictor.get_outputs())
        talker_out = buffers(loop.talker.get_outputs())
        # the code predictor reads the talker's outputs and writes the talker's next input; `seen` in place
        self.logits, self.hidden = talker_out["logits"], talker_out["hidden"]
        cp_in.update(logits=self.logits, past_hidden=self.hidden)
        cp_out["seen_next"] = cp_in["seen"]
        self.inputs, self.codes, self.next_embed = cp_in, cp_out["codes"], cp_out["next_embed"]
        self.mask_host = np.zeros((batch, capacity), np.int64)
        self.mask = self._zeros((batch, capacity), np.int64)

        self.code_predictor = loop.code_predictor.io_binding()
        for name, v in cp_in.items():
            self.code_predictor.bind_ortvalue_input(name, v)
        for name, v in cp_out.items():
            self.code_predictor.bind_ortvalue_output(name, v)
        self.talker = loop.talker.io_binding()
        self.talker.bind_ortvalue_input("inputs_embeds", self.next_embed)
        self.talker.bind_ortvalue_input("attention_mask", self.mask)
        for name, v in self.cache.feeds().items():
            self.talker.bind_ortvalue_input(name, v)
        for name, v in {**self.cache.inplace(), **talker_out}.items():
            self.talker.bind_ortvalue_output(name, v)

    def _zeros(self, shape: tuple, dtype) -> ort.OrtValue:
        return on_device(np.zeros(shape, dtype), self.device)


class ReplaySteps:
    """generate.DynamicSteps' interface over a _BufferSet: prefill, then predict() and advance() per frame."""

    def __init__(self, loop, buffers: _BufferSet, embeds: np.ndarray, mask: np.ndarray, release):
        self.loop, self.buf, self.release = loop, buffers, release
        self.written: dict = {}  # input name -> the value last copied into its buffer (options: once per run)
        buf, length = buffers, mask.shape[1]
        buf.cache.length = 0
        buf.inputs["seen"].update_inplace(np.zeros((buf.batch, C.TALKER_VOCAB), bool))  # no group-0 id yet
        buf.mask_host[:] = 0
        buf.mask_host[:, :length] = mask
        buf.mask.update_inplace(buf.mask_host)
        # the prefill: a new prompt length each run, so uncaptured, into the set's cache and output buffers
        prefill = loop.talker.io_binding()
        prefill.bind_cpu_input("inputs_embeds", np.ascontiguousarray(embeds, dtype=np.float32))
        prefill.bind_cpu_input("attention_mask", np.ascontiguousarray(mask, dtype=np.int64))
        for name, v in buf.cache.feeds().items():
            prefill.bind_ortvalue_input(name, v)
        for name, v in {**buf.cache.inplace(), "logits": buf.logits, "hidden": buf.hidden}.items():
            prefill.bind_ortvalue_output(name, v)
        with loop.lock:
            loop.talker.run_with_iobinding(prefill, buf.prefill_options)
        buf.cache.length = length
        self.lengths = mask.sum(axis=1)  # each row's positions so far (rows are right-padded)

    def predict(self, feeds: dict) -> np.ndarray:
        buf = self.buf
        for name, value in feeds.items():
            if self.written.get(name) is not value:
                buf.inputs[name].update_inplace(np.ascontiguousarray(value))
                self.written[name] = value
        with self.loop.lock:
            self.loop.code_predictor.run_with_iobinding(buf.code_predictor, buf.run_options)
        return np.array(buf.codes.numpy(), copy=True)  # the buffer is rewritten next frame

    def advance(self) -> None:
        buf = self.buf
        buf.mask_host[np.arange(buf.batch), self.lengths] = 1  # each row's next position, after its own last
        self.lengths += 1
        buf.mask.update_inplace(buf.mask_host)
        with self.loop.lock:
            self.loop.talker.run_with_iobinding(buf.talker, buf.run_options)
        buf.cache.length += 1

    def close(self) -> None:
        if self.buf is not None:
            self.release(self.buf)
            self.buf = None


class GraphReplay:
    """The buffer sets of one FrameLoop's sessions, by (batch, capacity); `steps()` lends one to a run."""

    def __init__(self, device: str = "cpu", max_positions: int | None = None):
        self.device, self.max_positions = device, max_positions
        self.sets: dict = {}
        self._lock = threading.Lock()

    @staticmethod
    def capacity(prompt: int, budget: int) -> int:
        """The cache's capacity for a prompt and a token budget: room for every position, rounded up."""
        return -(-(prompt + budget) // CAPACITY_STEP) * CAPACITY_STEP

    def steps(self, loop, embeds: np.ndarray, mask: np.ndarray, budgets: np.ndarray) -> ReplaySteps | None:
        """A ReplaySteps for this run, or None (the caller then runs DynamicSteps): the key's set is lent to
        another run, the sets are all made, or the capacity passes the model's positions."""
        key = (embeds.shape[0], self.capacity(embeds.shape[1], int(budgets.max())))
        if self.max_positions is not None and key[1] > self.max_positions:
            return None
        with self._lock:
            buf = self.sets.get(key)
            if buf is None and len(self.sets) < MAX_BUFFER_SETS:
                buf = self.sets[key] = _BufferSet(loop, *key, self.device, graph_id=len(self.sets) + 1)
            if buf is None or buf.busy:
                return None
            buf.busy = True
        try:
            return ReplaySteps(loop, buf, embeds, mask, self._release)
        except BaseException:
            self._release(buf)
            raise

    def _release(self, buf: _BufferSet) -> None:
        with self._lock:
            buf.busy = False
