"""qwen3-tts: command line.

    qwen3-tts speak --model DIR --text TEXT [--speaker S] [--language L] [--instruct I] [--greedy] [--seed N]
                    [--max-new-tokens N] [--streaming-text | --non-streaming-text] --out out.wav [--codes-out codes.npy]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import Qwen3TTSError


def _speak(a) -> int:
    import soundfile as sf

    from .api import Qwen3TTS

    tts = Qwen3TTS.from_pretrained(a.model, threads=a.threads)
    kwargs = {}
    if a.greedy:
        kwargs.update(do_sample=False, subtalker_dosample=False)
    if a.max_new_tokens is not None:
        kwargs["max_new_tokens"] = a.max_new_tokens
    # Every default is the official API's for the model type, the text layout included (custom/design: True).
    nsm = True if a.non_streaming_mode is None else a.non_streaming_mode
    if tts.model_type == "custom_voice":
        rows = tts._custom_voice_rows(a.text, a.speaker, a.language, a.instruct, nsm)
    elif tts.model_type == "voice_design":
        if a.speaker:
            raise Qwen3TTSError("a VoiceDesign model has no preset speakers; describe the voice with --instruct")
        rows = tts._voice_design_rows(a.text, a.instruct, a.language, nsm)
    else:
        tts.generate_voice_clone()
    codes = tts.generate_codes(rows, seed=a.seed, **kwargs)[0]
    if a.codes_out:
        np.save(a.codes_out, codes.astype(np.int64))
    wav = tts.decode(codes)
    sf.write(a.out, wav, 24000, subtype="PCM_16")
    print(f"wrote {a.out}: {len(wav) / 24000:.2f} s, {codes.shape[0]} frames", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="qwen3-tts", description="Qwen3-TTS on ONNX Runtime")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speak", help="synthesize text into a WAV file")
    s.add_argument("--model", required=True, help="exported artifacts directory (see `make export`)")
    s.add_argument("--text", required=True)
    s.add_argument("--speaker", help="preset speaker (CustomVoice models)")
    s.add_argument("--language", help="language name or 'auto' (default: auto)")
    s.add_argument("--instruct", help="style instruction (1.7B CustomVoice) or voice description (VoiceDesign)")
    s.add_argument("--greedy", action="store_true", help="argmax decoding (do_sample=False, subtalker_dosample=False)")
    s.add_argument("--seed", type=int, help="seed for reproducible sampling")
    s.add_argument("--max-new-tokens", type=int)
    layout = s.add_mutually_exclusive_group()
    layout.add_argument("--non-streaming-text", dest="non_streaming_mode", action="store_const", const=True,
                        help="feed the whole text in the prompt (official default for CustomVoice/VoiceDesign)")
    layout.add_argument("--streaming-text", dest="non_streaming_mode", action="store_const", const=False,
                        help="feed the text one token per frame (official non_streaming_mode=False)")
    s.add_argument("--threads", type=int, help="CPU threads per session (default: all cores)")
    s.add_argument("--out", required=True, help="output WAV path")
    s.add_argument("--codes-out", help="also save the codes as int64 [frames, 16] .npy")
    a = p.parse_args(argv)
    try:
        return _speak(a)
    except Qwen3TTSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
