"""The runtime runs with torch absent: a fresh interpreter whose import system refuses torch (and the official
package, transformers and onnx tooling) synthesizes audio through the API and the CLI."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

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


def test_api_runs_with_torch_blocked(models, tmp_path):
    m = models("cv_wide")
    script = BLOCKER + textwrap.dedent(f"""
        import numpy as np
        from qwen3_tts_onnx import Qwen3TTS
        tts = Qwen3TTS.from_pretrained({str(m.art)!r})
        wavs, sr = tts.generate_custom_voice("Hello there.", speaker="ryan", language="english",
                                             do_sample=False, subtalker_dosample=False, max_new_tokens=12)
        np.save({str(tmp_path / "wav.npy")!r}, wavs[0])
        assert "torch" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    ref, _ = m.ours.generate_custom_voice("Hello there.", speaker="ryan", language="english",
                                          do_sample=False, subtalker_dosample=False, max_new_tokens=12)
    np.testing.assert_array_equal(np.load(tmp_path / "wav.npy"), ref[0])


def test_blocker_really_blocks():
    """Guard against a blocker that blocks nothing: importing torch under it must fail."""
    r = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "blocked" in r.stderr
