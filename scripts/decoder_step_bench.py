"""Speech decoder: time and peak memory of the windowed decode against the frames per graph call.

    .venv/bin/python scripts/decoder_step_bench.py ARTIFACTS_DIR STEP [--frames 225]

Run once per STEP (a fresh process each, so that peak resident memory is this STEP's): random codes, the official
windowed decode three times, ms per frame of each run and the process's peak RSS. See BENCHMARKS.md.
"""
import argparse
import resource
import time

import numpy as np

from qwen3_tts_onnx import Qwen3TTS
from qwen3_tts_onnx import decode as D


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("artifacts")
    p.add_argument("step", type=int)
    p.add_argument("--frames", type=int, default=225)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    D.STEP_FRAMES = a.step
    dec = Qwen3TTS.from_pretrained(a.artifacts, threads=a.threads).decoder
    codes = np.random.default_rng(0).integers(0, 2048, (a.frames, 16))
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms = []
    for _ in range(3):
        t = time.perf_counter()
        dec.decode(codes, "windowed")
        ms.append((time.perf_counter() - t) / a.frames * 1000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"step {a.step}: {', '.join(f'{x:.1f}' for x in ms)} ms/frame; peak RSS {peak:.0f} MB "
          f"({loaded:.0f} MB after loading)")


if __name__ == "__main__":
    main()
