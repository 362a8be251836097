"""make demo: build a small random checkpoint, export it, speak one sentence into demo.wav, all offline.

Random weights give noise, not speech: this shows the pipeline working end to end. For real speech, export a real
checkpoint: `make export MODEL=Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice` and use `qwen3-tts speak --model artifacts/...`.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .export import export_all
from .precision import is_current
from .random_checkpoint import build


def main() -> None:
    root = Path("artifacts/demo")
    ckpt, out = root / "checkpoint", root / "onnx"
    if not is_current(out):  # an export by an older version of the project is made again
        print("building a tiny random CustomVoice checkpoint in the official layout ...", flush=True)
        build(ckpt, kind="custom_voice", size="tiny", width="wide")
        export_all(ckpt, out)
    wav = root / "demo.wav"
    cmd = [sys.executable, "-m", "qwen3_tts_onnx.cli", "speak", "--model", str(out), "--text",
           "Hello from qwen3-tts-onnx.", "--speaker", "ryan", "--language", "english", "--seed", "0",
           "--max-new-tokens", "50", "--out", str(wav)]
    print("$ qwen3-tts " + " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)
    print(f"\nwrote {wav}. The weights are random, so it is noise, not speech.\n"
          "For real speech: make export MODEL=Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice (needs the hub or a local copy),\n"
          "then: .venv/bin/qwen3-tts speak --model artifacts/Qwen3-TTS-12Hz-0.6B-CustomVoice --text 'Hi' "
          "--speaker ryan --out hi.wav")


if __name__ == "__main__":
    main()
