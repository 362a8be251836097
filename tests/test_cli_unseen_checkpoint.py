"""A checkpoint no other test has seen (other seed, sharded weights, 0.6B-like widths) through `make export` and
`qwen3-tts speak --greedy --codes-out`: the codes equal the official greedy codes."""
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
