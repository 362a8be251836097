"""A checkpoint no other test has seen (other seed, sharded weights, 0.6B-like widths) through `make export` and
`qwen3-tts speak --greedy --codes-out`: the codes equal the official greedy codes. The CLI's --instruct and --seed
on the tests' VoiceDesign export (1.7B-like widths): greedy codes equal the official ones, seeded ones the API's."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from oracle import official_codes

CLI = [sys.executable, "-m", "qwen3_tts_onnx.cli"]


@pytest.fixture(scope="module")
def unseen(shared):
    return shared.get("unseen_custom_voice")  # built by conftest.BUILDERS through `make export`


@pytest.fixture(scope="module")
def vd_export(shared):
    return shared.get("vd")  # conftest's VoiceDesign export (a new unseen one would cost CI about 3 minutes)


@pytest.mark.parametrize("speaker,language,layout", [("vivian", "chinese", []), ("ryan", "english", ["--streaming-text"])])
def test_speak_greedy_codes_equal_official(unseen, speaker, language, layout):
    from qwen3_tts_export.reference import qwen_tts

    text = "An unseen checkpoint speaks these words."
    wav, codes = unseen / f"{speaker}.wav", unseen / f"{speaker}.npy"
    subprocess.run(CLI + ["speak", "--model", str(unseen / "onnx"), "--text", text, "--speaker", speaker,
                          "--language", language, "--greedy", "--max-new-tokens", "40", "--out", str(wav),
                          "--codes-out", str(codes), *layout], check=True)
    got = np.load(codes)
    ref = qwen_tts().Qwen3TTSModel.from_pretrained(str(unseen / "ckpt"))
    want = official_codes(ref, [text], [language], [speaker], non_streaming_mode=not layout)[0]
    assert got.dtype == np.int64 and got.shape == want.shape and got.shape[0] >= 30
    np.testing.assert_array_equal(got, want)
    audio, sr = sf.read(wav)
    assert sr == 24000 and len(audio) == got.shape[0] * 1920


def test_speak_reports_bad_input(unseen):
    r = subprocess.run(CLI + ["speak", "--model", str(unseen / "onnx"), "--text", "Hi", "--speaker", "nobody",
                              "--out", str(unseen / "x.wav")], capture_output=True, text=True)
    assert r.returncode == 2 and "unsupported speaker 'nobody'" in r.stderr and "Traceback" not in r.stderr


DESIGN = dict(text="A voice described in words reads this sentence.", instruct="A bright, fast-talking young woman.")


def _speak_design(root, name, *flags):
    codes = root / f"{name}.npy"
    subprocess.run(CLI + ["speak", "--model", str(root / "onnx"), "--text", DESIGN["text"], "--instruct",
                          DESIGN["instruct"], "--language", "english", "--max-new-tokens", "40", "--out",
                          str(root / f"{name}.wav"), "--codes-out", str(codes), *flags], check=True)
    return np.load(codes)


def test_speak_voice_design_instruct_greedy_codes_equal_official(vd_export):
    """VoiceDesign through the CLI: --instruct (the voice description) with --greedy gives the official greedy
    codes of generate_voice_design's call."""
    from qwen3_tts_export.reference import qwen_tts

    got = _speak_design(vd_export, "design_greedy", "--greedy")
    ref = qwen_tts().Qwen3TTSModel.from_pretrained(str(vd_export / "ckpt"))
    want = official_codes(ref, [DESIGN["text"]], ["english"], None, [DESIGN["instruct"]])[0]
    assert got.dtype == np.int64 and got.shape == want.shape and got.shape[0] >= 30
    np.testing.assert_array_equal(got, want)


def test_speak_seed_reproduces_the_api(vd_export):
    """--seed 7 without --greedy: two runs give the same sampled codes, and they are the API's codes for seed 7
    (and its waveform, to 16-bit rounding); another seed and greedy decoding give other codes."""
    from qwen3_tts_onnx import Qwen3TTS

    first, second = (_speak_design(vd_export, f"design_seed7_{i}", "--seed", "7") for i in range(2))
    np.testing.assert_array_equal(first, second)
    tts = Qwen3TTS.from_pretrained(vd_export / "onnx")
    rows = tts._voice_design_rows(DESIGN["text"], DESIGN["instruct"], "english", True)
    np.testing.assert_array_equal(first, tts.generate_codes(rows, seed=7, max_new_tokens=40)[0])
    (wav,), sr = tts.generate_voice_design(DESIGN["text"], DESIGN["instruct"], language="english", seed=7,
                                           max_new_tokens=40)
    audio, file_sr = sf.read(vd_export / "design_seed7_0.wav", dtype="float32")
    assert sr == file_sr == 24000 and audio.shape == wav.shape == (first.shape[0] * 1920,)
    assert np.abs(audio - wav).max() <= 2 / 32768  # the WAV is 16-bit
    other = tts.generate_codes(rows, seed=8, max_new_tokens=40)[0]
    greedy = tts.generate_codes(rows, max_new_tokens=40, do_sample=False, subtalker_dosample=False)[0]
    assert not np.array_equal(first[:10], other[:10]) and not np.array_equal(first[:10], greedy[:10])
