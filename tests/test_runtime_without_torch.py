"""The runtime runs with torch absent: a fresh interpreter whose import system refuses torch (and the official
package, transformers and onnx tooling) synthesizes audio through the API and the CLI."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import soundfile as sf

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("torch", "qwen_tts", "transformers", "onnx", "onnxscript", "qwen3_tts_export", "librosa")
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the runtime must not need it")
    sys.meta_path.insert(0, Blocker())
    for mod in list(sys.modules):
        if mod.split(".")[0] in BLOCKED:
            del sys.modules[mod]
""")


def test_api_and_cli_run_with_torch_blocked(models, tmp_path):
    """One interpreter with torch blocked synthesizes through the API, then runs `qwen3-tts speak` as
    `python -m qwen3_tts_onnx.cli` does (runpy, module run as __main__): the CLI's codes and 16-bit WAV are the
    API's."""
    m = models("cv_wide")
    args = ["speak", "--model", str(m.art), "--text", "Hello there.", "--speaker", "ryan", "--language", "english",
            "--greedy", "--max-new-tokens", "12", "--out", str(tmp_path / "cli.wav"),
            "--codes-out", str(tmp_path / "cli.npy")]
    script = BLOCKER + textwrap.dedent(f"""
        import runpy
        import numpy as np
        from qwen3_tts_onnx import Qwen3TTS
        tts = Qwen3TTS.from_pretrained({str(m.art)!r})
        wavs, sr = tts.generate_custom_voice("Hello there.", speaker="ryan", language="english",
                                             do_sample=False, subtalker_dosample=False, max_new_tokens=12)
        np.save({str(tmp_path / "wav.npy")!r}, wavs[0])
        sys.argv = ["qwen3_tts_onnx.cli", *{args!r}]
        try:
            runpy.run_module("qwen3_tts_onnx.cli", run_name="__main__", alter_sys=True)
        except SystemExit as e:
            assert e.code == 0, f"the CLI exited with {{e.code}}"
        else:
            raise AssertionError("the CLI did not exit")
        assert "torch" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    ref, _ = m.ours.generate_custom_voice("Hello there.", speaker="ryan", language="english",
                                          do_sample=False, subtalker_dosample=False, max_new_tokens=12)
    np.testing.assert_array_equal(np.load(tmp_path / "wav.npy"), ref[0])
    codes = np.load(tmp_path / "cli.npy")
    want = m.ours.generate_codes(m.ours._custom_voice_rows("Hello there.", "ryan", "english", None, True),
                                 do_sample=False, subtalker_dosample=False, max_new_tokens=12)[0]
    assert codes.dtype == np.int64 and codes.shape == (11, 16)
    np.testing.assert_array_equal(codes, want)
    sf.write(str(tmp_path / "api.wav"), ref[0], 24000, subtype="PCM_16")
    wav, sr = sf.read(str(tmp_path / "cli.wav"), dtype="int16")
    assert sr == 24000 and wav.shape == ref[0].shape
    np.testing.assert_array_equal(wav, sf.read(str(tmp_path / "api.wav"), dtype="int16")[0])


def test_blocker_really_blocks():
    """Guard against a blocker that blocks nothing: importing torch under it must fail."""
    r = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "blocked" in r.stderr
