"""Artifacts by Hugging Face hub id (runtime/qwen3_tts_onnx/hub.py), without a network: the hub's cache layout built
in a temporary folder (what huggingface_hub itself reads offline), and a stand-in for snapshot_download that serves
a local "remote" repository to check what is asked for online."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from oracle import GREEDY
from qwen3_tts_onnx import Qwen3TTS
from qwen3_tts_onnx.cli import main as cli_main
from qwen3_tts_onnx.errors import ArtifactError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "someone/qwen3-tts-tiny-onnx"


def _cache(tmp_path: Path, layout: dict[str, Path], repo: str = REPO) -> Path:
    """A hub cache holding `repo` at COMMIT (refs/main): each layout entry copies a directory to that subfolder."""
    cache = tmp_path / "hub-cache"
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(COMMIT)
    for sub, src in layout.items():
        shutil.copytree(src, entry / "snapshots" / COMMIT / sub)
    return cache


def _codes(tts) -> np.ndarray:
    return tts.generate_codes(tts.prepare("Hello from the hub.", speaker="ryan", language="english").rows,
                              max_new_tokens=6, **GREEDY)[0]


def test_hub_id_loads_from_the_cache_root_and_subfolder(models, tmp_path):
    m = models("cv_wide")
    cache = _cache(tmp_path, {".": m.art, "int8-like": m.art})
    local = Qwen3TTS.from_pretrained(m.art)
    for model, kw in [(REPO, {}), (f"{REPO}/int8-like", {}), (REPO, {"subfolder": "int8-like"})]:
        tts = Qwen3TTS.from_pretrained(model, cache_dir=cache, local_files_only=True, **kw)
        assert COMMIT in str(tts.artifacts.root)
        assert tts.get_supported_speakers() == local.get_supported_speakers()
        np.testing.assert_array_equal(_codes(tts), _codes(local))


def test_hub_checkpoint_is_refused_with_the_export_command(models, tmp_path):
    cache = _cache(tmp_path, {".": models("cv_wide").ckpt}, repo="Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    with pytest.raises(ArtifactError, match=r"is a Qwen3-TTS checkpoint, not exported ONNX artifacts: export it first "
                                            r"with `make export MODEL=Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"):
        Qwen3TTS.from_pretrained("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice", cache_dir=cache, local_files_only=True)


def test_hub_errors_name_the_problem(models, tmp_path, monkeypatch):
    m = models("cv_wide")
    cache = _cache(tmp_path, {"v1": m.art})
    with pytest.raises(ArtifactError, match=r"no local directory someone/elsewhere, and as a hub id someone/elsewhere "
                                            r"is not in the local Hugging Face cache .*offline mode.*make export"):
        Qwen3TTS.from_pretrained("someone/elsewhere", cache_dir=cache, local_files_only=True)
    with pytest.raises(ArtifactError, match=r"has no manifest.json in the local Hugging Face cache \(offline mode\): "
                                            r"connect once to download it, or name the subfolder"):
        Qwen3TTS.from_pretrained(REPO, cache_dir=cache, local_files_only=True)  # the export is in v1/
    (cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / "v1" / "talker.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"talker.onnx listed in its manifest.json but not downloaded \(offline "
                                            r"mode: connect once"):
        Qwen3TTS.from_pretrained(f"{REPO}/v1", cache_dir=cache, local_files_only=True)
    with pytest.raises(ArtifactError, match="names subfolder 'v1' and subfolder='v2'"):
        Qwen3TTS.from_pretrained(f"{REPO}/v1", subfolder="v2", cache_dir=cache, local_files_only=True)
    with pytest.raises(ArtifactError, match="revision='v2' applies to hub ids"):
        Qwen3TTS.from_pretrained(m.art, revision="v2")
    with pytest.raises(ArtifactError, match="leaves the repository"):
        Qwen3TTS.from_pretrained(REPO, subfolder="../elsewhere", cache_dir=cache, local_files_only=True)
    # no hub id: names huggingface_hub refuses, and a missing path under an existing local directory, are told as
    # missing local directories, without asking the hub
    (tmp_path / "exports").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ("my exports/x", "someone/x.git", "exports/0.6b-int5"):
        with pytest.raises(ArtifactError, match="no artifacts directory at .*make export"):
            Qwen3TTS.from_pretrained(name, cache_dir=cache, local_files_only=True)


def test_online_fetch_takes_the_manifest_then_its_files_from_one_commit(models, tmp_path, monkeypatch):
    """What is asked of the hub: the manifest (and config.json) first, then exactly the files the manifest lists,
    from the commit the manifest came from; another variant beside it and other files are not downloaded."""
    import huggingface_hub
    from huggingface_hub import errors as hf

    m = models("cv_wide")
    remote = tmp_path / "remote"
    shutil.copytree(m.art, remote / "int4")
    shutil.copytree(m.art, remote / "fp32")
    (remote / "README.md").write_text("model card")
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None, cache_dir=None, local_files_only=False):
        calls.append((repo_id, revision, sorted(allow_patterns)))
        if repo_id != REPO:
            raise hf.RepositoryNotFoundError("404 Client Error: Repository Not Found")
        if revision not in (None, "main", COMMIT):
            raise hf.RevisionNotFoundError("404 Client Error: Revision Not Found")
        snap = tmp_path / "downloaded" / COMMIT
        for f in remote.rglob("*"):
            rel = f.relative_to(remote).as_posix()
            if f.is_file() and rel in allow_patterns:
                (snap / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, snap / rel)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    tts = Qwen3TTS.from_pretrained(f"{REPO}/int4")
    listed = sorted(f"int4/{f}" for f in tts.artifacts.manifest["files"])
    assert calls == [(REPO, None, ["int4/config.json", "int4/manifest.json"]), (REPO, COMMIT, listed)]
    assert not (tmp_path / "downloaded" / COMMIT / "fp32").exists()
    assert not (tmp_path / "downloaded" / COMMIT / "README.md").exists()
    with pytest.raises(ArtifactError, match=r"no local directory other/repo, and no repository 'other/repo' on the "
                                            r"Hugging Face hub that this login may read.*hf auth login"):
        Qwen3TTS.from_pretrained("other/repo")
    with pytest.raises(ArtifactError, match=f"{REPO} has no revision 'v9'"):
        Qwen3TTS.from_pretrained(f"{REPO}/int4", revision="v9")
    with pytest.raises(ArtifactError, match=r"\(subfolder int8\) on the Hugging Face hub has no manifest.json: it "
                                            r"holds no exported Qwen3-TTS artifacts"):
        Qwen3TTS.from_pretrained(f"{REPO}/int8")


def test_cli_speaks_from_a_hub_id(models, tmp_path, monkeypatch):
    from huggingface_hub import constants

    m = models("cv_wide")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(_cache(tmp_path, {".": m.art})))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    codes = tmp_path / "codes.npy"
    assert cli_main(["speak", "--model", REPO, "--revision", "main", "--text", "Hello from the hub.", "--speaker",
                     "ryan", "--language", "english", "--greedy", "--max-new-tokens", "6", "--out",
                     str(tmp_path / "out.wav"), "--codes-out", str(codes)]) == 0
    np.testing.assert_array_equal(np.load(codes), _codes(Qwen3TTS.from_pretrained(m.art)))
