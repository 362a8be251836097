"""Speech decoder graphs side by side: the same random codes through each graph, alternating, in one process.

    .venv/bin/python scripts/decoder_graph_ab.py ARTIFACTS_DIR GRAPH.onnx [GRAPH.onnx ...] [--frames 100]

ARTIFACTS_DIR gives the decoder's state layout; each GRAPH is a speech_decoder.onnx with that layout (for example
the one in ARTIFACTS_DIR and one exported by newer code). Every round decodes the frames once per graph, in calls
of STEP_FRAMES as the runtime does; prints each graph's ms per frame per round, the median without the first
round, and the largest sample difference from the first graph. See BENCHMARKS.md.
"""
import argparse
import time

import numpy as np

from qwen3_tts_onnx import Qwen3TTS, sessions
from qwen3_tts_onnx.decode import SpeechDecoder


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("artifacts")
    p.add_argument("graphs", nargs="+")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    layout = Qwen3TTS.from_pretrained(a.artifacts, threads=a.threads).decoder.layout
    decoders = [SpeechDecoder(sessions.create(g, ["CPUExecutionProvider"], a.threads, "speech_decoder"), layout)
                for g in a.graphs]
    codes = np.random.default_rng(0).integers(0, 2048, (a.frames, 16))
    ms = [[] for _ in decoders]
    out = [None] * len(decoders)
    for _ in range(a.rounds):
        for i, d in enumerate(decoders):
            t = time.perf_counter()
            out[i] = d.feed(codes, d.new_state())
            ms[i].append((time.perf_counter() - t) / a.frames * 1000)
    for g, m, o in zip(a.graphs, ms, out):
        print(f"{g}: {' '.join(f'{x:.1f}' for x in m)} ms/frame, median {np.median(m[1:]):.1f}; "
              f"max diff from the first graph {np.abs(o - out[0]).max():.2e} (peak {np.abs(out[0]).max():.2f})")


if __name__ == "__main__":
    main()
