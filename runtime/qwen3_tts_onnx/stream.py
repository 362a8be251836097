"""Streaming synthesis: audio chunks while the model generates, decoded exactly by the stateful speech decoder.

    FrameLoop.run ─► frame codes ─► pending ── first_chunk_frames (then chunk_frames) reached? ──► decoder.step
                                                                                                   │
                       (the frame loop waits, suspended, while the consumer has the chunk) ◄── yield AudioChunk

The first chunk is yielded before the loop generates the next frame, so first audio costs the prompt prefill, the
first frames and one small decode. Concatenated chunks equal `decode(codes, "exact")`; in ICL voice cloning the
reference codes run through the decoder first (their samples dropped), so the chunks equal the exact decode of
reference + generated codes with exactly ref_frames * 1920 samples cut off. Closing the generator (or leaving a
`for` loop over it) stops generation at once and drops the KV cache and the decoder state.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import contracts as C
from .decode import SpeechDecoder
from .errors import InputError

DEFAULT_FIRST_CHUNK_FRAMES = 2  # 160 ms of audio: small, so first audio comes early
DEFAULT_CHUNK_FRAMES = 12  # 0.96 s: larger chunks decode more efficiently


@dataclass(frozen=True)
class ChunkTiming:
    elapsed_s: float  # from the call to this chunk being ready (for the first chunk: the first-audio latency)
    generate_s: float  # time the frame loop spent on this chunk's frames (the first chunk's includes the prefill)
    decode_s: float  # time the speech decoder spent on this chunk (the first chunk's includes ICL warm-up)


@dataclass(frozen=True)
class AudioChunk:
    samples: np.ndarray  # float32 mono, 1920 per frame
    sample_rate: int
    frame_start: int  # generated frames [frame_start, frame_end) (ICL reference frames not counted)
    frame_end: int
    codes: np.ndarray  # int64 [frame_end - frame_start, 16]: the frames' codes
    timing: ChunkTiming

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def check_chunking(first_chunk_frames, chunk_frames) -> tuple[int, int]:
    for name, v in (("first_chunk_frames", first_chunk_frames), ("chunk_frames", chunk_frames)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name} must be a positive number of frames (12.5 per second), got {v!r}")
    return int(first_chunk_frames), int(chunk_frames)


class ChunkAssembler:
    """One item's frames in, AudioChunks out: the first after `first_chunk_frames` frames, then every
    `chunk_frames`, each decoded by the stateful decoder as soon as it is complete. Used by `stream_audio` (one
    item) and by the batcher (one assembler per row of a batch)."""

    def __init__(self, decoder: SpeechDecoder, first_chunk_frames: int, chunk_frames: int, started: float,
                 warm_codes: np.ndarray | None = None):
        self.decoder, self.chunk_frames, self.started = decoder, chunk_frames, started
        t = time.perf_counter()
        # ICL reference: decoded for the state only (its samples dropped), once per voice (SpeechDecoder.warmed)
        self.state = decoder.new_state() if warm_codes is None else decoder.warmed(warm_codes)
        self.warm_s = time.perf_counter() - t
        self.pending: list = []
        self.done = 0
        self.target = first_chunk_frames
        self.gen_s = 0.0
        self.gen_started = time.perf_counter()

    def push(self, codes: np.ndarray) -> AudioChunk | None:
        """One frame's codes [16]; returns a chunk when this frame completes one."""
        self.pending.append(codes)
        return self._emit() if len(self.pending) >= self.target else None

    def flush(self) -> AudioChunk | None:
        """The item ended: the last, partial chunk (None when nothing is pending)."""
        return self._emit() if self.pending else None

    def resume(self) -> None:
        """The consumer gave control back: time from here on counts as generation time again."""
        self.gen_started = time.perf_counter()

    def close(self) -> None:
        self.state.tensors.clear()

    def _emit(self) -> AudioChunk:
        self.gen_s += time.perf_counter() - self.gen_started
        chunk = _chunk(self.decoder, self.state, self.pending, self.done, self.gen_s, self.warm_s, self.started)
        self.done += len(self.pending)
        self.pending, self.target, self.gen_s, self.warm_s = [], self.chunk_frames, 0.0, 0.0
        return chunk


def stream_audio(frames, decoder: SpeechDecoder, first_chunk_frames: int, chunk_frames: int, started: float,
                 warm_codes: np.ndarray | None = None):
    """frames: a FrameLoop.run generator for one item. Yields AudioChunk; see the module docstring."""
    assembler = None
    try:
        assembler = ChunkAssembler(decoder, first_chunk_frames, chunk_frames, started, warm_codes)
        for codes, finished in frames:
            if finished[0]:
                break
            chunk = assembler.push(codes[0])
            if chunk is not None:
                yield chunk
                assembler.resume()  # the consumer's time with the chunk is not generation time
        chunk = assembler.flush()
        if chunk is not None:
            yield chunk
    finally:
        frames.close()  # stops the frame loop; its KV cache goes with it
        if assembler is not None:
            assembler.close()


def _chunk(decoder, state, pending, done, gen_s, warm_s, started) -> AudioChunk:
    codes = np.stack(pending).astype(np.int64)
    t = time.perf_counter()
    samples = decoder.step(codes, state)
    now = time.perf_counter()
    return AudioChunk(samples.astype(np.float32, copy=False), C.SAMPLE_RATE, done, done + len(pending), codes,
                      ChunkTiming(elapsed_s=now - started, generate_s=gen_s, decode_s=now - t + warm_s))
