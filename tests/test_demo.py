"""`make demo` speaks through the CLI and says plainly that random weights give noise and how to export a real
checkpoint. The tiny export it would build is the tests' cv_wide export, put where the demo looks for it, so the test
runs the demo's speaking part without a second export (the demo reuses a current export, as on a second run)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import soundfile as sf


def test_demo_speaks_and_says_what_it_is(models, tmp_path):
    shutil.copytree(models("cv_wide").art, tmp_path / "artifacts/demo/onnx")
    r = subprocess.run([sys.executable, "-m", "qwen3_tts_export.demo"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert "building" not in r.stdout  # the current export was reused
    assert "noise, not speech" in r.stdout and "make export MODEL=" in r.stdout
    info = sf.info(tmp_path / "artifacts/demo/demo.wav")
    assert info.samplerate == 24000 and info.channels == 1 and info.frames > 0 and info.frames % 1920 == 0
