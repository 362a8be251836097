"""Talker decode step against the length of the past: what the KV cache costs per step.

    .venv/bin/python scripts/talker_step_bench.py ARTIFACTS_DIR [--past 20,150,600,1200] [--steps 12]

For each past length: a prefill of that many random embeddings, then --steps single-position steps through the
runtime's KV cache (generate.KVCache, IO bindings, as the frame loop drives it); prints the median step time
without the first two steps. See BENCHMARKS.md.
"""
import argparse
import time

import numpy as np

from qwen3_tts_onnx import Qwen3TTS
from qwen3_tts_onnx import generate as G


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("artifacts")
    p.add_argument("--past", default="20,150,600,1200")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    tts = Qwen3TTS.from_pretrained(a.artifacts, threads=a.threads)
    cfg = tts.cfg
    talker = G.bind(tts.sessions["talker"], host=())  # as the frame loop: outputs stay on the device
    rng = np.random.default_rng(0)
    for past in (int(x) for x in a.past.split(",")):
        cache = G.KVCache(cfg["num_hidden_layers"], 1, cfg["num_key_value_heads"], cfg["head_dim"], talker.device,
                          capacity=past + a.steps)
        x = rng.standard_normal((1, past + a.steps, cfg["hidden_size"])).astype(np.float32) * 0.1
        G.talker_call(talker, x[:, :past], np.ones((1, past), np.int64), cache)
        ms = []
        for i in range(past, past + a.steps):
            t = time.perf_counter()
            G.talker_call(talker, x[:, i:i + 1], np.ones((1, i + 1), np.int64), cache)
            ms.append((time.perf_counter() - t) * 1000)
        print(f"past {past}: step {np.median(ms[2:]):.1f} ms (median of {len(ms) - 2})")


if __name__ == "__main__":
    main()
