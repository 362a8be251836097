"""Codes -> 24 kHz waveform through the speech_decoder graph: the decoder's streaming state, the exact stream, and the
official windowed decode.

The graph is causal everywhere, so it decodes any split of a code sequence into chunks exactly: each call takes the
next frames plus the state the previous call returned (DecoderState, below) and returns their 1920 samples per
frame. Modes of `decode`:

  "windowed" (default)  the official decode (SPEC §3.10): windows of 300 frames, each re-decoded from a fresh state
                        with up to 25 frames of left context whose samples are dropped. Past 300 frames this is not
                        one pass over the sequence (the receptive field is longer than 25 frames): there is a seam
                        every 24 s. Identical to the official package.
  "exact"               one pass over the whole sequence. Free of the seams; the same as "windowed" up to 300
                        frames (float rounding).

Both run the graph on at most STEP_FRAMES frames per call, carrying the state between calls (a window is a fresh
stream): a call's activations grow with its length (the last stage holds 96 channels x 1920 samples per frame, and
ONNX Runtime's arena keeps the largest call's buffers for the session's life), so long calls cost gigabytes of
resident memory for no gain in speed. The samples equal one call's to float32 rounding (the streaming tests).

Frames whose samples nobody needs (an ICL reference in front of the generated codes, a window's left context, the
reference that warms a streaming clone) only have to move the state along. `skip` does that cheaply:

    frames to skip:  [ ......................... n - k | n - k ..... n )     k = layout["stack_frames"]
                       speech_decoder_context:            speech_decoder, samples dropped:
                       codebooks, pre_conv, transformer   the convolution stack re-derives its
                       (its keys/values and pre_conv      state exactly, since after k frames its
                       state exact; the stack untouched)  output no longer depends on where it began

The convolution stack is nearly all of the decoder's work, so a long reference costs about what stack_frames frames
cost (measurements in BENCHMARKS.md).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from . import contracts as C
from .errors import InputError

DECODE_MODES = ("windowed", "exact")
STEP_FRAMES = 25  # frames per decoder call (see the module docstring)
CONTEXT_STEP_FRAMES = 300  # frames per speech_decoder_context call (no convolution stack: small activations)


def check_mode(mode: str) -> str:
    if not isinstance(mode, str) or mode not in DECODE_MODES:
        raise InputError(f"decode_mode must be one of {DECODE_MODES}, got {mode!r}")
    return mode


def windows(num_frames: int, chunk: int = C.DECODE_CHUNK_FRAMES, context: int = C.DECODE_LEFT_CONTEXT):
    """(first frame fed, first frame kept, end frame) per window, as Qwen3TTSTokenizerV2Decoder.chunked_decode."""
    start = 0
    while start < num_frames:
        end = min(start + chunk, num_frames)
        ctx = context if start - context > 0 else start
        yield start - ctx, start, end
        start = end


def check_codes(codes) -> np.ndarray:
    """-> int64 [F, 16] codes in 0..2047, or a clear error."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != C.NUM_CODE_GROUPS:
        raise InputError(f"codes must have shape [frames, {C.NUM_CODE_GROUPS}], got {codes.shape}")
    if codes.size and (not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0
                       or codes.max() >= C.CODEBOOK_SIZE):
        raise InputError(f"codes must be integers in 0..{C.CODEBOOK_SIZE - 1}")
    return codes.astype(np.int64, copy=False)


class DecoderState:
    """The speech decoder's state between calls (one sequence): every causal conv's last inputs, each transformer
    layer's keys/values of the last 71 frames, and the number of frames decoded so far (the RoPE offset)."""

    def __init__(self, layout: dict | None = None):
        self.frames = 0
        self.tensors = {}
        if layout is None:
            return
        for name in C.decoder_state_names(layout):
            if name.startswith("conv_state."):
                shape = (1, *layout["conv"][int(name.split(".")[1])])
            else:
                shape = (1, layout["heads"], 0, layout["head_dim"])
            self.tensors[name] = np.zeros(shape, dtype=np.float32)

    def copy(self) -> "DecoderState":
        """An independent state at the same point. Steps replace the tensors instead of writing into them, so the
        copy shares them until either side steps on."""
        other = DecoderState()
        other.frames, other.tensors = self.frames, dict(self.tensors)
        return other


class SpeechDecoder:
    """Wraps the speech_decoder session: `step` decodes the next frames of a stream, `decode` a whole sequence."""

    WARM_CACHE = 8  # voices whose warmed state is kept (about 5 MB each at full size)

    def __init__(self, session, layout: dict, context_session=None):
        self.session, self.layout, self.context_session = session, layout, context_session
        self._state_names = C.decoder_state_names(layout)
        self._outputs = ["waveform"] + ["new_" + n for n in self._state_names]
        context = C.speech_decoder_context_spec(layout)
        self._context_names, self._context_outputs = context.input_names[2:], context.output_names
        self._warm: OrderedDict = OrderedDict()
        self._warm_lock = threading.Lock()

    def new_state(self) -> DecoderState:
        return DecoderState(self.layout)

    def step(self, codes: np.ndarray, state: DecoderState) -> np.ndarray:
        """The next frames of a stream, codes [F, 16] int64 -> float32 samples [F * 1920]; advances `state`."""
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        out = self.session.run(self._outputs, {"codes": np.ascontiguousarray(codes.T[None]),
                                               "offset": np.array(state.frames, dtype=np.int64), **state.tensors})
        state.tensors = dict(zip(self._state_names, out[1:]))
        state.frames += codes.shape[0]
        return out[0][0]

    def feed(self, codes: np.ndarray, state: DecoderState) -> np.ndarray:
        """Any number of frames into a stream, in calls of at most STEP_FRAMES frames (bounded memory): their
        samples."""
        pieces = [self.step(codes[i:i + STEP_FRAMES], state) for i in range(0, codes.shape[0], STEP_FRAMES)]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def skip(self, codes: np.ndarray, state: DecoderState) -> None:
        """Advance `state` over `codes` without their samples (see the module docstring): the context graph over all
        but the last stack_frames, then those through the full graph. The state equals feed()'s to float32
        rounding."""
        n, k = codes.shape[0], self.layout["stack_frames"]
        if self.context_session is None or n <= k:
            self.feed(codes, state)
            return
        for i in range(0, n - k, CONTEXT_STEP_FRAMES):
            part = codes[i:min(i + CONTEXT_STEP_FRAMES, n - k)]
            out = self.context_session.run(self._context_outputs,
                                           {"codes": np.ascontiguousarray(part.T[None]),
                                            "offset": np.array(state.frames, dtype=np.int64),
                                            **{name: state.tensors[name] for name in self._context_names}})
            state.tensors = {**state.tensors, **dict(zip(self._context_names, out))}
            state.frames += part.shape[0]
        self.feed(codes[n - k:], state)

    def warmed(self, codes: np.ndarray) -> DecoderState:
        """A fresh state moved over `codes` (an ICL reference, whose samples nobody needs) by `skip`: the state is
        computed once per distinct reference and then copied, so a voice reused across calls (a saved voice
        prompt, a server voice) pays even that only on first use."""
        codes = check_codes(codes)
        key = hashlib.sha1(codes.tobytes()).hexdigest()
        with self._warm_lock:
            hit = self._warm.get(key)
            if hit is not None:
                self._warm.move_to_end(key)
                return hit.copy()
        state = self.new_state()
        self.skip(codes, state)
        with self._warm_lock:
            self._warm[key] = state.copy()
            while len(self._warm) > self.WARM_CACHE:
                self._warm.popitem(last=False)
        return state

    def forget_warmed(self) -> None:
        """Drop the kept warmed states (the next stream of each voice warms up again)."""
        with self._warm_lock:
            self._warm.clear()

    def decode(self, codes, mode: str = "windowed", start: int = 0) -> np.ndarray:
        """codes [F, 16] -> float32 waveform [(F - start) * 1920] in the chosen mode (see the module docstring):
        the samples of frames start.. of the whole decode, with the frames before `start` only skipped through."""
        check_mode(mode)
        codes = check_codes(codes)
        start = min(max(int(start), 0), codes.shape[0])
        if mode == "exact":
            state = self.new_state()
            self.skip(codes[:start], state)
            return self.feed(codes[start:], state).astype(np.float32, copy=False)
        pieces = []
        for first, keep, end in windows(codes.shape[0]):
            if end <= start:
                continue  # each window is a fresh stream: one wholly before `start` is not needed at all
            keep = max(keep, start)
            state = self.new_state()
            self.skip(codes[first:keep], state)
            pieces.append(self.feed(codes[keep:end], state))
        return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
