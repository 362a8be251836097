"""qwen3-tts: command line.

    qwen3-tts speak --model DIR --text TEXT [--speaker S] [--language L] [--instruct I] [--greedy] [--seed N]
                    [--max-new-tokens N] [--streaming-text | --non-streaming-text] [--decode-mode windowed|exact]
                    [--stream [--first-chunk-frames N] [--chunk-frames N]] --out out.wav|- [--codes-out codes.npy]
                    [--ref-audio FILE [--ref-text TEXT | --x-vector-only] | --voice voice.qvoice]   (Base models)
    qwen3-tts voice create --model DIR --ref-audio FILE [--ref-text TEXT | --x-vector-only] --out voice.qvoice
    qwen3-tts serve --model DIR [--host 127.0.0.1] [--port 8000] [--voices DIR] [--max-active N] [--max-batch N]
                    [--max-queue N]   (OpenAI-compatible HTTP API, batching concurrent requests)

--model DIR is an artifacts directory, or a Hugging Face hub id of one (owner/name[/subfolder], with --revision REV
to pin a branch, tag or commit): hub.py.
"""
from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from .errors import Qwen3TTSError
from .stream import DEFAULT_CHUNK_FRAMES, DEFAULT_FIRST_CHUNK_FRAMES

def _speak(a) -> int:
    import soundfile as sf

    from .api import Qwen3TTS

    tts = Qwen3TTS.from_pretrained(a.model, threads=a.threads, cuda_graphs=a.cuda_graphs, revision=a.revision)
    kwargs = {}
    if a.greedy:
        kwargs.update(do_sample=False, subtalker_dosample=False)
    if a.max_new_tokens is not None:
        kwargs["max_new_tokens"] = a.max_new_tokens
    # ref_audio / ref_text / x_vector_only_mode / voice_clone_prompt are --ref-audio / --ref-text /
    # --x-vector-only / --voice in the messages prepare() raises
    p = tts.prepare(a.text, speaker=a.speaker, language=a.language, instruct=a.instruct, ref_audio=a.ref_audio,
                    ref_text=a.ref_text, x_vector_only_mode=a.x_vector_only, voice_clone_prompt=a.voice,
                    non_streaming_mode=a.non_streaming_mode)
    rows, prompt = p.rows, p.voices[0] if p.voices else None
    if a.stream:
        return _speak_streaming(a, tts, rows[0], p.warm_codes(0), kwargs)
    if a.out == "-":
        raise Qwen3TTSError("--out - (raw PCM to stdout) needs --stream")
    codes = tts.generate_codes(rows, seed=a.seed, **kwargs)[0]
    if a.codes_out:
        np.save(a.codes_out, codes.astype(np.int64))
    wav = tts.decode(codes, a.decode_mode) if prompt is None else tts.decode_clone(codes, prompt, a.decode_mode)
    sf.write(a.out, wav, 24000, subtype="PCM_16")
    print(f"wrote {a.out}: {len(wav) / 24000:.2f} s, {codes.shape[0]} frames", file=sys.stderr)
    return 0


def _speak_streaming(a, tts, row, warm, kwargs) -> int:
    """Write audio as it is generated: raw PCM to stdout (--out -), or a WAV whose header is fixed up on close."""
    import soundfile as sf

    from .audio import pcm16

    chunks = tts.stream_rows(row, a.seed, warm, a.first_chunk_frames, a.chunk_frames, **kwargs)
    codes, first_s = [], None
    with contextlib.ExitStack() as stack:
        if a.out == "-":
            out = sys.stdout.buffer

            def write(samples):
                out.write(pcm16(samples))
                out.flush()
        else:
            f = stack.enter_context(sf.SoundFile(a.out, "w", samplerate=24000, channels=1, subtype="PCM_16"))

            def write(samples):
                f.write(samples)
                f.flush()
        for c in chunks:
            write(c.samples)
            codes.append(c.codes)
            first_s = c.timing.elapsed_s if first_s is None else first_s
    all_codes = np.concatenate(codes) if codes else np.zeros((0, 16), np.int64)
    if a.codes_out:
        np.save(a.codes_out, all_codes.astype(np.int64))
    first = "no audio" if first_s is None else f"first audio after {first_s * 1000:.0f} ms"
    print(f"streamed {'stdout' if a.out == '-' else a.out}: {all_codes.shape[0] * 1920 / 24000:.2f} s, "
          f"{all_codes.shape[0]} frames, {first}", file=sys.stderr)
    return 0


def _voice_create(a) -> int:
    from .api import Qwen3TTS

    tts = Qwen3TTS.from_pretrained(a.model, threads=a.threads, revision=a.revision)
    prompt = tts.create_voice_clone_prompt(a.ref_audio, a.ref_text, a.x_vector_only)[0]
    path = prompt.save(a.out)
    mode = "x-vector only" if prompt.x_vector_only_mode else f"ICL, {prompt.ref_codes.shape[0]} reference frames"
    print(f"wrote {path}: voice prompt for {tts.model_size} Base models ({mode})", file=sys.stderr)
    return 0


def _model_args(p, what: str) -> None:
    p.add_argument("--model", required=True,
                   help=f"{what}: a directory (see `make export`) or a Hugging Face hub id owner/name[/subfolder]")
    p.add_argument("--revision", help="with a hub id: the branch, tag or commit to load (default: main)")


def _clone_args(p, required: bool) -> None:
    p.add_argument("--ref-audio", required=required, help="reference recording of the voice to clone (Base models)")
    p.add_argument("--ref-text", help="transcript of the reference recording (needed unless --x-vector-only)")
    p.add_argument("--x-vector-only", action="store_true",
                   help="clone from the speaker embedding alone (no transcript; official x_vector_only_mode)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="qwen3-tts", description="Qwen3-TTS on ONNX Runtime")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speak", help="synthesize text into a WAV file")
    _model_args(s, "exported artifacts")
    s.add_argument("--text", required=True)
    s.add_argument("--speaker", help="preset speaker (CustomVoice models)")
    s.add_argument("--language", help="language name or 'auto' (default: auto)")
    s.add_argument("--instruct", help="style instruction (1.7B CustomVoice) or voice description (VoiceDesign)")
    _clone_args(s, required=False)
    s.add_argument("--voice", help="saved voice prompt from `qwen3-tts voice create` (Base models)")
    s.add_argument("--greedy", action="store_true", help="argmax decoding (do_sample=False, subtalker_dosample=False)")
    s.add_argument("--seed", type=int, help="seed for reproducible sampling")
    s.add_argument("--max-new-tokens", type=int)
    layout = s.add_mutually_exclusive_group()
    layout.add_argument("--non-streaming-text", dest="non_streaming_mode", action="store_const", const=True,
                        help="feed the whole text in the prompt (official default for CustomVoice/VoiceDesign)")
    layout.add_argument("--streaming-text", dest="non_streaming_mode", action="store_const", const=False,
                        help="feed the text one token per frame (official default for voice cloning)")
    s.add_argument("--decode-mode", choices=["windowed", "exact"], default="windowed",
                   help="windowed: the official 300-frame windows (default, identical to the official package); "
                        "exact: one pass, without the window seams (differs only past 300 frames = 24 s)")
    s.add_argument("--stream", action="store_true",
                   help="write audio while it is generated (exact stateful decode, same samples as "
                        "--decode-mode exact); with --out -, raw 16-bit little-endian mono PCM at 24 kHz to stdout")
    s.add_argument("--first-chunk-frames", type=int, default=DEFAULT_FIRST_CHUNK_FRAMES,
                   help=f"--stream: frames (80 ms each) in the first chunk (default {DEFAULT_FIRST_CHUNK_FRAMES})")
    s.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES,
                   help=f"--stream: frames per later chunk (default {DEFAULT_CHUNK_FRAMES})")
    s.add_argument("--threads", type=int, help="CPU threads per session (default: $QWEN3_TTS_THREADS, else all cores)")
    s.add_argument("--cuda-graphs", action="store_true",
                   help="replay the talker step and the code predictor as CUDA graphs (CUDA provider, fp16 export; "
                        "not yet measured on a GPU: BENCHMARKS.md)")
    s.add_argument("--out", required=True, help="output WAV path, or - for raw PCM to stdout (with --stream)")
    s.add_argument("--codes-out", help="also save the codes as int64 [frames, 16] .npy")
    v = sub.add_parser("voice", help="voice prompts for Base models")
    vsub = v.add_subparsers(dest="voice_command", required=True)
    c = vsub.add_parser("create", help="encode a reference recording once into a reusable voice prompt file")
    _model_args(c, "exported Base model artifacts")
    _clone_args(c, required=True)
    c.add_argument("--threads", type=int, help="CPU threads per session (default: $QWEN3_TTS_THREADS, else all cores)")
    c.add_argument("--out", required=True, help="voice prompt file to write (for `speak --voice`)")
    sv = sub.add_parser("serve", help="OpenAI-compatible speech server (POST /v1/audio/speech)")
    _model_args(sv, "exported artifacts")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--voices", help="directory of saved voice prompts (Base models): voice name = file name")
    sv.add_argument("--threads", type=int, help="CPU threads per session (default: $QWEN3_TTS_THREADS, else all cores)")
    sv.add_argument("--max-active", type=int, default=8, help="requests generating at once, batched (default 8)")
    sv.add_argument("--max-batch", type=int, default=8, help="rows (sentences) per batched frame loop (default 8)")
    sv.add_argument("--max-queue", type=int, default=16, help="requests waiting before 429 (default 16)")
    sv.add_argument("--cuda-graphs", action="store_true",
                    help="replay the talker step and the code predictor as CUDA graphs (CUDA provider, fp16 export; "
                        "not yet measured on a GPU: BENCHMARKS.md)")
    a = p.parse_args(argv)
    try:
        if a.command == "serve":
            from .server import serve

            serve(a.model, a.host, a.port, a.voices, a.threads, a.max_active, a.max_queue, a.max_batch,
                  cuda_graphs=a.cuda_graphs, revision=a.revision)
            return 0
        return _speak(a) if a.command == "speak" else _voice_create(a)
    except Qwen3TTSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
