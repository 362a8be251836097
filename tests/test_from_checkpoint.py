"""Qwen3TTS.from_checkpoint: an official-layout checkpoint exported once into a cache, then reused
(runtime/qwen3_tts_onnx/checkpoint_export.py)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import qwen3_tts_export.export as export_mod
from oracle import GREEDY
from qwen3_tts_onnx import Qwen3TTS
from qwen3_tts_onnx import contracts as C
from qwen3_tts_onnx.errors import ArtifactError


def _codes(tts) -> np.ndarray:
    return tts.generate_codes(tts.prepare("Exported on first use.", speaker="ryan", language="english").rows,
                              max_new_tokens=6, **GREEDY)[0]


def test_exports_once_then_reuses_the_cache(models, tmp_path, monkeypatch):
    m = models("cv_wide")
    tts = Qwen3TTS.from_checkpoint(m.ckpt, cache_dir=tmp_path)
    root = tts.artifacts.root
    assert root.parent.parent == tmp_path and root.name == "fp32"
    assert not list(tmp_path.rglob("*.partial"))
    np.testing.assert_array_equal(_codes(tts), _codes(Qwen3TTS.from_pretrained(m.art)))

    calls = []

    def no_export(src, out, *a, **k):
        calls.append(out)
        raise RuntimeError("stop")

    monkeypatch.setattr(export_mod, "export_all", no_export)
    assert Qwen3TTS.from_checkpoint(m.ckpt, cache_dir=tmp_path).artifacts.root == root  # cached: no export
    assert calls == []
    manifest = json.loads((root / C.MANIFEST).read_text())
    manifest["graph_revision"] -= 1  # an entry this code would export differently is exported again
    (root / C.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RuntimeError, match="stop"):
        Qwen3TTS.from_checkpoint(m.ckpt, cache_dir=tmp_path)
    assert calls == [root.with_name("fp32.partial")]  # written beside, renamed only when complete


def test_clear_errors(models, tmp_path, monkeypatch):
    with pytest.raises(ArtifactError, match="precision must be one of"):
        Qwen3TTS.from_checkpoint(models("cv_wide").ckpt, precision="int3", cache_dir=tmp_path)
    with pytest.raises(ArtifactError, match="neither a local checkpoint directory nor a hub id"):
        Qwen3TTS.from_checkpoint(tmp_path / "nowhere", cache_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "qwen3_tts_export.checkpoint", None)  # the export extra not installed
    with pytest.raises(ArtifactError, match=r"needs the export stage and torch .*pip install 'qwen3-tts-onnx\[export\]'"):
        Qwen3TTS.from_checkpoint(models("cv_wide").ckpt, cache_dir=tmp_path)
