"""Full-size parity (not in CI): a random 0.6B checkpoint from the real config, exported, against the official
package for 64 greedy frames. Appends its result to PARITY.md.

    .venv/bin/python scripts/parity_full_size.py [--kind custom_voice|base] [--work DIR] [--frames 64]

custom_voice: Ryan, English, non-streaming text. base: voice clone in ICL mode (streaming text, the official
default) from a 12 s 44.1 kHz stereo reference; also reports the x-vector difference and the reference codes.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qwen3_tts_export.export import export_all
from qwen3_tts_export.random_checkpoint import build
from qwen3_tts_export.reference import qwen_tts
from qwen3_tts_onnx import Qwen3TTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from audio_clips import write  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."
REF_TEXT = "This is a twelve second recording of the voice that the model should clone for us today."


def _equal_frames(want, got) -> tuple[int, str]:
    n = min(len(want), len(got))
    same = np.all(want[:n] == got[:n], axis=1)
    lead = n if same.all() else int(np.argmin(same))
    return lead, f"{int((want[:n] == got[:n]).sum())} of {want[:n].size}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="custom_voice", choices=["custom_voice", "base"])
    p.add_argument("--work")
    p.add_argument("--frames", type=int, default=64)
    a = p.parse_args()
    work = Path(a.work or ("artifacts/parity-0.6B" if a.kind == "custom_voice" else "artifacts/parity-0.6B-base"))
    ckpt, onnx = work / "checkpoint", work / "onnx"
    t0 = time.time()
    if not (ckpt / "model.safetensors").is_file():
        build(ckpt, kind=a.kind, size="0b6", eos_scale=0.0)
    if not (onnx / "manifest.json").is_file():
        export_all(ckpt, onnx)
    t_export = time.time() - t0
    greedy = dict(do_sample=False, subtalker_dosample=False, max_new_tokens=a.frames + 1)
    ref = qwen_tts().Qwen3TTSModel.from_pretrained(str(ckpt))
    tts = Qwen3TTS.from_pretrained(onnx)
    extra = ""
    with torch.no_grad():
        if a.kind == "custom_voice":
            ids = ref._tokenize_texts([ref._build_assistant_text(TEXT)])
            want = ref.model.generate(input_ids=ids, instruct_ids=[None], languages=["english"], speakers=["ryan"],
                                      non_streaming_mode=True, **greedy)[0][0].numpy()
            got = tts.generate_codes(tts._custom_voice_rows(TEXT, "ryan", "english", None, True), **greedy)[0]
            wav_ref = ref.model.speech_tokenizer.decode([{"audio_codes": torch.from_numpy(got)}])[0][0]
            wav = tts.decode(got)
            what = "0.6B CustomVoice, random weights, real config"
        else:
            clip = str(write(work / "ref_12s_44k_stereo.wav", 12, 44100, channels=2, seed=5))
            items = ref.create_voice_clone_prompt(ref_audio=clip, ref_text=REF_TEXT)
            mine = tts.create_voice_clone_prompt(clip, ref_text=REF_TEXT)[0]
            xv = np.abs(mine.x_vector - items[0].ref_spk_embedding.numpy()).max()
            codes_same = np.array_equal(mine.ref_codes, items[0].ref_code.numpy())
            from oracle import official_clone_codes

            want = official_clone_codes(ref, [TEXT], ["english"], items, non_streaming_mode=False,
                                        max_new_tokens=a.frames + 1)[0]
            rows, prompts = tts._voice_clone_rows(TEXT, "english", None, None, False, mine, False)
            got = tts.generate_codes(rows, **greedy)[0]
            full = torch.from_numpy(np.concatenate([items[0].ref_code.numpy(), got]))
            wfull = ref.model.speech_tokenizer.decode([{"audio_codes": full}])[0][0]
            cut = int(items[0].ref_code.shape[0] / full.shape[0] * wfull.shape[0])
            wav_ref, wav = wfull[cut:], tts.decode_clone(got, prompts[0])
            what = "0.6B Base (ICL clone), random weights, real config"
            extra = (f"; x-vector max abs diff {xv:.2e}, reference codes "
                     f"{'identical' if codes_same else 'DIFFERENT'} ({mine.ref_codes.shape[0]} frames)")
    lead, same = _equal_frames(want, got)
    assert wav.shape == wav_ref.shape, (wav.shape, wav_ref.shape)
    line = (f"| {time.strftime('%Y-%m-%d')} | {what} | {a.frames} | {len(want)} / {len(got)} | {lead} | {same} | "
            f"{np.abs(wav - wav_ref).max():.2e}{extra} | {platform.processor() or platform.machine()}, "
            f"export {t_export:.0f} s |")
    print(line)
    with open("PARITY.md", "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
