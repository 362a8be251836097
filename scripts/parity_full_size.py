"""Full-size parity (not in CI): a random 0.6B CustomVoice checkpoint from the real config, exported, against the
official package for 64 greedy frames. Appends its result to PARITY.md.

    .venv/bin/python scripts/parity_full_size.py [--work artifacts/parity-0.6B] [--frames 64]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from qwen3_tts_export.export import export_all
from qwen3_tts_export.random_checkpoint import build
from qwen3_tts_export.reference import qwen_tts
from qwen3_tts_onnx import Qwen3TTS

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="artifacts/parity-0.6B")
    p.add_argument("--frames", type=int, default=64)
    a = p.parse_args()
    work = Path(a.work)
    ckpt, onnx = work / "checkpoint", work / "onnx"
    t0 = time.time()
    if not (ckpt / "model.safetensors").is_file():
        build(ckpt, kind="custom_voice", size="0b6", eos_scale=0.0)
    if not (onnx / "manifest.json").is_file():
        export_all(ckpt, onnx)
    t_export = time.time() - t0
    greedy = dict(do_sample=False, subtalker_dosample=False, max_new_tokens=a.frames + 1)
    ref = qwen_tts().Qwen3TTSModel.from_pretrained(str(ckpt))
    ids = ref._tokenize_texts([ref._build_assistant_text(TEXT)])
    with torch.no_grad():
        want = ref.model.generate(input_ids=ids, instruct_ids=[None], languages=["english"], speakers=["ryan"],
                                  non_streaming_mode=True, **greedy)[0][0].numpy()
    tts = Qwen3TTS.from_pretrained(onnx)
    got = tts.generate_codes(tts._custom_voice_rows(TEXT, "ryan", "english", None, True), **greedy)[0]
    n = min(len(want), len(got))
    equal_frames = int(np.argmin(np.all(want[:n] == got[:n], axis=1))) if not np.all(want[:n] == got[:n]) else n
    wav_ref, _ = ref.model.speech_tokenizer.decode([{"audio_codes": torch.from_numpy(got)}])
    wav = tts.decode(got)
    line = (f"| {time.strftime('%Y-%m-%d')} | 0.6B CustomVoice, random weights, real config | {a.frames} | "
            f"{len(want)} / {len(got)} | {equal_frames} | {int((want[:n] == got[:n]).sum())} of {want[:n].size} | "
            f"{np.abs(wav - wav_ref[0]).max():.2e} | {platform.processor() or platform.machine()}, "
            f"export {t_export:.0f} s |")
    print(line)
    with open("PARITY.md", "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
