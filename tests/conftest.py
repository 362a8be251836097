"""Shared fixtures: tiny random checkpoints in the official layout, their exports, and the official oracle.

A tiny export costs a worker one to two minutes (the dynamo trace of the unrolled code predictor is most of it), and
pytest-xdist hands tests to whichever worker is free, so one test run builds each checkpoint and export once, in a
directory both workers share (`shared`), under a file lock: the first worker to need it builds it, and a worker
that finds it being built builds, meanwhile, another one this run's tests use instead of waiting.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from audio_clips import write
from make_export import build_and_make_export
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


def _export_case(name: str):
    def make(root: Path) -> None:
        build(root / "ckpt", size="tiny", **CASES[name])
        export_all(root / "ckpt", root / "onnx")
    return make


def _unseen_custom_voice(root: Path) -> None:
    build_and_make_export(root, kind="custom_voice", width="equal", seed=1234, shards=2)


def _unseen_base(root: Path) -> None:
    build_and_make_export(root, kind="base", width="wide", seed=4321, shards=2)
    write(root / "ref.flac", 3, 44100, channels=2, seed=99, subtype="PCM_24")


# Everything `shared` can build: a name -> a function filling the directory it is given. The unseen_* checkpoints
# (other seeds, sharded) are exported through `make export`, as a user does, for the test_cli_unseen_* files.
BUILDERS = {name: _export_case(name) for name in CASES}
BUILDERS.update(unseen_custom_voice=_unseen_custom_voice, unseen_base=_unseen_base)


class Shared:
    """Directories built once per test run for all xdist workers: get(name) returns root/name, building it first
    if no worker has. While another worker holds a wanted name's lock, this one builds the next unbuilt name that
    the collected test files mention (their text names it in quotes), so two workers that start on the same export
    do not wait for each other."""

    def __init__(self, root: Path, mentioned):
        self.root = root
        self.mentioned = mentioned  # () -> names the collected test files use, in the order they appear

    def _state(self, name: str):
        d = self.root / name
        return "done" if (d / ".done").exists() else "failed" if (d / ".failed").exists() else None

    def _try_build(self, name: str, blocking: bool) -> bool:
        lock = FileLock(str(self.root / f"{name}.lock"))
        try:
            lock.acquire(timeout=-1 if blocking else 0)
        except Timeout:
            return False
        try:
            if self._state(name) is None:
                d = self.root / name
                d.mkdir(parents=True, exist_ok=True)
                try:
                    BUILDERS[name](d)
                except BaseException:
                    (d / ".failed").write_text(traceback.format_exc())
                    raise
                (d / ".done").touch()
        finally:
            lock.release()
        return True

    def get(self, name: str) -> Path:
        if name not in BUILDERS:
            raise KeyError(f"no shared build named {name!r}; add it to BUILDERS")
        while self._state(name) != "done":
            if self._state(name) == "failed":
                raise RuntimeError(f"building the shared {name!r} failed (maybe in another worker):\n"
                                   f"{(self.root / name / '.failed').read_text()}")
            if self._try_build(name, blocking=False):
                continue
            for other in self.mentioned():
                if other != name and other in BUILDERS and self._state(other) is None:
                    try:
                        if self._try_build(other, blocking=False):
                            break
                    except Exception:  # recorded in its .failed, for the tests that need it
                        break
            else:
                self._try_build(name, blocking=True)  # nothing else to build: wait for the other worker
        return self.root / name


@pytest.fixture(scope="session")
def shared(tmp_path_factory, request) -> Shared:
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(exist_ok=True)
    names = []

    def mentioned():
        if not names:
            seen = []
            for path in dict.fromkeys(item.path for item in request.session.items):
                text = path.read_text()
                seen += sorted((text.find(f'"{n}"'), n) for n in BUILDERS if f'"{n}"' in text)
            names.extend(dict.fromkeys(n for _, n in seen))
        return names

    return Shared(root, mentioned)


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
def models(shared):
    """models(name) -> the Model of CASES[name], exported once per test run (see Shared)."""
    cache = {}

    def get(name: str) -> Model:
        if name not in cache:
            root = shared.get(name)
            cache[name] = Model(root / "ckpt", root / "onnx")
        return cache[name]

    return get
