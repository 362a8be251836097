"""Shared fixtures: tiny random checkpoints in the official layout, their exports, and the official oracle.

Each (kind, width) checkpoint is built and exported once per test session (per worker under pytest-xdist: the
files that share checkpoints form one xdist group, so a checkpoint is exported by one worker only).
"""
from __future__ import annotations

import os

import pytest

from qwen3_tts_export.export import export_all
from qwen3_tts_export.random_checkpoint import build

# `make test` runs two xdist workers on two cores: one ONNX Runtime thread each (their CLI subprocesses inherit it),
# so that the workers' spinning threads never fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("QWEN3_TTS_THREADS", "1")

CASES = {
    "cv_wide": dict(kind="custom_voice", width="wide"),    # 1.7B-like: projection into the code predictor
    "cv_equal": dict(kind="custom_voice", width="equal"),  # 0.6B-like: identity projection, instruct dropped
    "vd": dict(kind="voice_design", width="wide"),
    "base_wide": dict(kind="base", width="wide"),    # 1.7B-like Base: voice cloning
    "base_equal": dict(kind="base", width="equal"),  # 0.6B-like Base
}


# Test files that share exported checkpoints run on the same xdist worker (`make test` runs two workers).
XDIST_GROUPS = {
    "test_parity.py": "custom_voice", "test_errors.py": "custom_voice", "test_graphs.py": "custom_voice",
    "test_runtime_without_torch.py": "custom_voice", "test_streaming.py": "custom_voice",
    "test_precision.py": "custom_voice", "test_server.py": "custom_voice", "test_longform.py": "custom_voice",
    "test_batching.py": "custom_voice",
    "test_voice_clone.py": "base", "test_voice_clone_errors.py": "base", "test_server_voices.py": "base",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group(XDIST_GROUPS.get(item.path.name, item.path.stem)))


class Model:
    def __init__(self, ckpt, art):
        self.ckpt, self.art = ckpt, art
        self._ref = self._ours = None

    @property
    def ref(self):
        """The official Qwen3TTSModel on this checkpoint (fp32, CPU)."""
        if self._ref is None:
            from qwen3_tts_export.reference import qwen_tts

            self._ref = qwen_tts().Qwen3TTSModel.from_pretrained(str(self.ckpt))
        return self._ref

    @property
    def ours(self):
        if self._ours is None:
            from qwen3_tts_onnx import Qwen3TTS

            self._ours = Qwen3TTS.from_pretrained(self.art)
        return self._ours


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    cache = {}

    def get(name: str) -> Model:
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            build(root / "ckpt", size="tiny", **CASES[name])
            export_all(root / "ckpt", root / "onnx")
            cache[name] = Model(root / "ckpt", root / "onnx")
        return cache[name]

    return get
