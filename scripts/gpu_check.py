"""The CUDA path's checks in one run, for a session lent a GPU (BENCHMARKS.md, GPU section, says how to get
onnxruntime-gpu onto the lent machine).

    python scripts/gpu_check.py ARTIFACTS_DIR [--frames 64] [--repeats 3] [--json out.json]

ARTIFACTS_DIR: a CustomVoice fp16 export (`make export ... PRECISION=fp16`), whose graphs are capturable. On the
CUDA provider, greedy, EOS left to the model (random weights rarely emit it):
  1. the codes of CUDA graph replay (cuda_graphs=True) against the usual loop on the same GPU: must be identical
     (exit status 1 if not), and the share of frames the CPU provider's codes agree on (its fp16 products run in
     fp32 after casting, so agreement is a rounding measure, not a parity claim);
  2. seconds per frame of the loop, the usual way and replayed (medians of --repeats after one warm-up run, which
     also captures), first audio of the stream (replayed), the speech decoder's seconds per frame, and the GPU
     memory in use (nvidia-smi).
Prints one JSON object (also written to --json).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

from qwen3_tts_onnx import Qwen3TTS
from qwen3_tts_onnx.sessions import CPU, CUDA

TEXT = "Speed is measured, never assumed: this sentence runs through every graph once per frame."
GREEDY = dict(do_sample=False, subtalker_dosample=False)


def gpu_memory_mb() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=True).stdout
        return float(out.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def timed_codes(tts, rows, frames: int) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    codes = tts.generate_codes(rows, max_new_tokens=frames + 1, **GREEDY)[0]
    return codes, time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="everything on the CPU provider (the fixed-buffer loop without capture): checks this script")
    a = p.parse_args(argv)
    if a.cpu_dry_run:
        usual = Qwen3TTS.from_pretrained(a.artifacts, providers=[CPU])
        replay = Qwen3TTS(usual.artifacts, usual.sessions, graph_replay=True)
    elif CUDA not in ort.get_available_providers():
        print(f"no CUDA provider in this onnxruntime ({ort.__version__}): install onnxruntime-gpu", file=sys.stderr)
        return 2
    else:
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* packages beside PyTorch
        usual = Qwen3TTS.from_pretrained(a.artifacts, providers=[CUDA, CPU])
        replay = Qwen3TTS.from_pretrained(a.artifacts, providers=[CUDA, CPU], cuda_graphs=True)
    result: dict = {"onnxruntime": ort.__version__, "frames": a.frames, "gpu_memory_mb_loaded": gpu_memory_mb(),
                    "providers": usual.sessions["talker"].get_providers()}
    speaker = usual.get_supported_speakers()[0]
    rows = usual._custom_voice_rows(TEXT, speaker, "english", None, True)
    times: dict = {"usual": [], "replay": []}
    codes = {}
    for name, tts in (("usual", usual), ("replay", replay)):
        timed_codes(tts, rows, 4)  # warm-up: arenas, cuDNN/cuBLAS choices; the replay's captures
        for _ in range(a.repeats):
            codes[name], s = timed_codes(tts, rows, a.frames)
            times[name].append(s / max(len(codes[name]), 1))
    same = np.array_equal(codes["usual"], codes["replay"])
    cpu = Qwen3TTS.from_pretrained(a.artifacts, providers=[CPU]).generate_codes(rows, max_new_tokens=a.frames + 1,
                                                                                 **GREEDY)[0]
    n = min(len(cpu), len(codes["usual"]))
    t = time.perf_counter()
    replay.decode(codes["replay"], "exact")
    decoder_s = (time.perf_counter() - t) / max(len(codes["replay"]), 1)
    t = time.perf_counter()
    first = next(iter(replay.stream_custom_voice(TEXT, speaker, "english", max_new_tokens=a.frames + 1, **GREEDY)))
    first_audio_s = time.perf_counter() - t
    result.update({
        "frames_made": {k: int(len(v)) for k, v in codes.items()},
        "replay_codes_identical": bool(same),
        "cpu_frames_agreeing": float((cpu[:n] == codes["usual"][:n]).all(axis=1).mean()) if n else None,
        "loop_s_per_frame": {k: float(np.median(v)) for k, v in times.items()},
        "loop_rtf": {k: float(np.median(v)) / 0.08 for k, v in times.items()},
        "decoder_s_per_frame": decoder_s,
        "stream_first_audio_s": first_audio_s,
        "first_chunk_frames": [int(first.frame_start), int(first.frame_end)],
        "gpu_memory_mb_after": gpu_memory_mb(),  # both models' sessions and buffers loaded
    })
    print(json.dumps(result, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
