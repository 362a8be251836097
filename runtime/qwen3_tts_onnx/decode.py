"""Codes -> 24 kHz waveform with the official windowing (SPEC §3.10).

The official decode cuts the codes into windows of 300 frames, re-decodes each with up to 25 frames of left context
(positions restarting at 0), and drops the context's samples. Past 300 frames this is not the same as one pass over
the whole sequence (the decoder's receptive field is longer than 25 frames); "windowed" reproduces it exactly and is
the default. "exact" decodes the whole sequence in one pass: what the decoder computes without the windowing, the
same as "windowed" up to 300 frames (within float rounding), and free of the window seams after that.
"""
from __future__ import annotations

import numpy as np

from . import contracts as C
from .errors import InputError


def windows(num_frames: int, chunk: int = C.DECODE_CHUNK_FRAMES, context: int = C.DECODE_LEFT_CONTEXT):
    """(first frame fed, first frame kept, end frame) per window, as Qwen3TTSTokenizerV2Decoder.chunked_decode."""
    start = 0
    while start < num_frames:
        end = min(start + chunk, num_frames)
        ctx = context if start - context > 0 else start
        yield start - ctx, start, end
        start = end


DECODE_MODES = ("windowed", "exact")


def check_mode(mode: str) -> str:
    if mode not in DECODE_MODES:
        raise InputError(f"decode_mode must be one of {DECODE_MODES}, got {mode!r}")
    return mode


def decode_windowed(session, codes: np.ndarray, mode: str = "windowed") -> np.ndarray:
    """codes [F, 16] int64 -> float32 waveform [F * 1920]; mode "windowed" (official) or "exact" (one pass)."""
    check_mode(mode)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] != C.NUM_CODE_GROUPS:
        raise ValueError(f"codes must have shape [frames, {C.NUM_CODE_GROUPS}], got {codes.shape}")
    if codes.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    if codes.min() < 0 or codes.max() >= C.CODEBOOK_SIZE:
        raise ValueError(f"codes must lie in 0..{C.CODEBOOK_SIZE - 1}, got {codes.min()}..{codes.max()}")
    if mode == "exact":
        return session.run(["waveform"], {"codes": np.ascontiguousarray(codes.T[None])})[0][0]
    pieces = []
    for first, keep, end in windows(codes.shape[0]):
        chunk = np.ascontiguousarray(codes[first:end].T[None])
        wav = session.run(["waveform"], {"codes": chunk})[0][0]
        pieces.append(wav[(keep - first) * C.SAMPLES_PER_FRAME:])
    return np.concatenate(pieces).astype(np.float32, copy=False)
