"""A Base checkpoint no other test has seen (other seed, sharded weights, 1.7B-like widths) through `make export`
and `qwen3-tts speak --greedy --codes-out --ref-audio/--ref-text`: the codes equal the official greedy clone codes,
and a voice saved with `qwen3-tts voice create` speaks with the same codes."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audio_clips import write
from oracle import official_clone_codes

CLI = [sys.executable, "-m", "qwen3_tts_onnx.cli"]
TEXT = "An unseen voice says these words."
REF_TEXT = "This is how I sound when I read aloud."


@pytest.fixture(scope="module")
def unseen(shared):
    return shared.get("unseen_base")  # built by conftest.BUILDERS through `make export`


@pytest.fixture(scope="module")
def official(unseen):
    from qwen3_tts_export.reference import qwen_tts

    return qwen_tts().Qwen3TTSModel.from_pretrained(str(unseen / "ckpt"))


def _speak(unseen, name, *extra):
    wav, codes = unseen / f"{name}.wav", unseen / f"{name}.npy"
    r = subprocess.run(CLI + ["speak", "--model", str(unseen / "onnx"), "--text", TEXT, "--language", "english",
                              "--greedy", "--max-new-tokens", "32", "--out", str(wav), "--codes-out", str(codes),
                              *extra], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return np.load(codes), wav


@pytest.mark.parametrize("mode", ["icl", "x_vector_only"])
def test_speak_clone_greedy_codes_equal_official(unseen, official, mode):
    ref = str(unseen / "ref.flac")
    if mode == "icl":  # official default layout for cloning: streaming text
        got, wav = _speak(unseen, mode, "--ref-audio", ref, "--ref-text", REF_TEXT)
        items = official.create_voice_clone_prompt(ref_audio=ref, ref_text=REF_TEXT)
        want = official_clone_codes(official, [TEXT], ["english"], items, non_streaming_mode=False,
                                    max_new_tokens=32)[0]
    else:
        got, wav = _speak(unseen, mode, "--ref-audio", ref, "--x-vector-only", "--non-streaming-text")
        items = official.create_voice_clone_prompt(ref_audio=ref, x_vector_only_mode=True)
        want = official_clone_codes(official, [TEXT], ["english"], items, non_streaming_mode=True,
                                    max_new_tokens=32)[0]
    assert got.dtype == np.int64 and got.shape == want.shape and got.shape[0] >= 30
    np.testing.assert_array_equal(got, want)
    audio, sr = sf.read(wav)
    assert sr == 24000 and len(audio) >= got.shape[0] * 1920 - 1


def test_voice_create_then_speak(unseen):
    voice = unseen / "me.qvoice"
    r = subprocess.run(CLI + ["voice", "create", "--model", str(unseen / "onnx"), "--ref-audio",
                              str(unseen / "ref.flac"), "--ref-text", REF_TEXT, "--out", str(voice)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from_voice, _ = _speak(unseen, "from_voice", "--voice", str(voice))
    from_audio, _ = _speak(unseen, "from_audio", "--ref-audio", str(unseen / "ref.flac"), "--ref-text", REF_TEXT)
    np.testing.assert_array_equal(from_voice, from_audio)


def test_voice_create_x_vector_only_then_speak(unseen):
    """`voice create --x-vector-only` saves an x-vector-only voice (no reference codes, no transcript), and
    `speak --voice` with it gives the codes of `speak --ref-audio --x-vector-only`."""
    from qwen3_tts_onnx import VoicePrompt

    voice = unseen / "me_xvec.qvoice"
    r = subprocess.run(CLI + ["voice", "create", "--model", str(unseen / "onnx"), "--ref-audio",
                              str(unseen / "ref.flac"), "--x-vector-only", "--out", str(voice)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "x-vector only" in r.stderr, r.stderr
    saved = VoicePrompt.load(voice)
    assert saved.x_vector_only_mode and saved.ref_codes is None and saved.ref_text is None
    from_voice, _ = _speak(unseen, "xvec_from_voice", "--voice", str(voice))
    from_audio, _ = _speak(unseen, "xvec_from_audio", "--ref-audio", str(unseen / "ref.flac"), "--x-vector-only")
    assert from_voice.shape[0] >= 30
    np.testing.assert_array_equal(from_voice, from_audio)


@pytest.mark.parametrize("args,message", [
    (["--ref-audio", "missing.wav", "--x-vector-only"], "does not exist"),
    (["--ref-audio", "REF"], "ref_text is required"),
    ([], "needs the voice to clone"),
    (["--speaker", "ryan", "--ref-audio", "REF", "--x-vector-only"], "not speaker"),
])
def test_speak_clone_bad_input(unseen, args, message):
    args = [str(unseen / "ref.flac") if a == "REF" else a for a in args]
    r = subprocess.run(CLI + ["speak", "--model", str(unseen / "onnx"), "--text", "Hi.", "--out",
                              str(unseen / "x.wav"), *args], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
