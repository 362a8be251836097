"""Speech decoder: frames whose samples are not needed, skipped through (SpeechDecoder.skip) against decoded.

    .venv/bin/python scripts/decoder_skip_bench.py ARTIFACTS_DIR [--ref-frames 125] [--frames 100]

On random codes, with an export's speech_decoder and speech_decoder_context graphs, three times each, 2 threads:
  - ICL decode as decode_clone does it: reference + generated frames, windowed, the reference part dropped; all
    frames through the full graph (before) against the reference skipped through (now); the samples compared;
  - the streaming warm-up on the reference alone: feed() against skip(); the next 100 frames decoded from each state
    compared.
See BENCHMARKS.md.
"""
import argparse
import time

import numpy as np

from qwen3_tts_onnx import Qwen3TTS


def timed(fn, n=3):
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("artifacts")
    p.add_argument("--ref-frames", type=int, default=125)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    dec = Qwen3TTS.from_pretrained(a.artifacts, threads=a.threads).decoder
    layout = dec.layout
    r, n = a.ref_frames, a.frames
    codes = np.random.default_rng(0).integers(0, 2048, (r + n, 16))
    print(f"stack_frames {layout['stack_frames']}; reference {r} frames, generated {n}")

    before_t, before = timed(lambda: dec.decode(codes, "windowed")[r * 1920:])
    now_t, now = timed(lambda: dec.decode(codes, "windowed", start=r))
    print(f"ICL decode, ms per generated frame: all frames decoded {', '.join(f'{t / n * 1000:.1f}' for t in before_t)}"
          f"; reference skipped {', '.join(f'{t / n * 1000:.1f}' for t in now_t)}; "
          f"samples max abs diff {np.abs(now - before).max():.2e} (peak {np.abs(before).max():.2f})")

    def warm(kind):
        state = dec.new_state()
        (dec.feed if kind == "feed" else dec.skip)(codes[:r], state)
        return state

    feed_t, fed = timed(lambda: warm("feed"))
    skip_t, skipped = timed(lambda: warm("skip"))
    after = [dec.feed(codes[r:], s) for s in (fed, skipped)]
    print(f"warm-up on the reference, s: feed {', '.join(f'{t:.2f}' for t in feed_t)}; skip "
          f"{', '.join(f'{t:.2f}' for t in skip_t)}; next {n} frames max abs diff "
          f"{np.abs(after[0] - after[1]).max():.2e}")


if __name__ == "__main__":
    main()
