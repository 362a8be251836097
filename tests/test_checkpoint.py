"""Checkpoint loading: the official layout (single or sharded weights) and clear errors for broken ones."""
from __future__ import annotations

import json
import shutil

import pytest

from qwen3_tts_export import checkpoint
from qwen3_tts_export.random_checkpoint import build


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build(tmp_path_factory.mktemp("ck") / "c", kind="voice_design", width="equal", shards=3)


def test_sharded_checkpoint_loads(ckpt):
    c = checkpoint.load(ckpt)
    assert len(c.weight_files) == 3 and c.model_type == "voice_design"
    state = c.main_state()
    checkpoint.check_consistent(c, state)
    assert all(t.dtype.is_floating_point and t.dtype.itemsize == 4 for t in state.values())


@pytest.mark.parametrize("victim", ["config.json", "generation_config.json", "vocab.json", "merges.txt",
                                    "tokenizer_config.json", "speech_tokenizer/config.json",
                                    "speech_tokenizer/model.safetensors"])
def test_missing_file_is_named(ckpt, tmp_path, victim):
    bad = tmp_path / "c"
    shutil.copytree(ckpt, bad)
    (bad / victim).unlink()
    with pytest.raises(checkpoint.CheckpointError, match=f"missing {victim}"):
        checkpoint.load(bad)


def test_missing_shard_is_named(ckpt, tmp_path):
    bad = tmp_path / "c"
    shutil.copytree(ckpt, bad)
    (bad / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(checkpoint.CheckpointError, match="model-00002-of-00003.safetensors"):
        checkpoint.load(bad)


def test_config_disagreeing_with_weights(ckpt, tmp_path):
    bad = tmp_path / "c"
    shutil.copytree(ckpt, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["talker_config"]["hidden_size"] *= 2
    (bad / "config.json").write_text(json.dumps(cfg))
    c = checkpoint.load(bad)
    with pytest.raises(checkpoint.CheckpointError, match="has shape .* but config.json implies"):
        checkpoint.check_consistent(c, c.main_state())


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="neither a local checkpoint directory nor a hub id"):
        checkpoint.load(tmp_path / "missing" / "deeper" / "dir")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(checkpoint.CheckpointError, match="is a file"):
        checkpoint.load(tmp_path / "f.txt")


def _copy(ckpt, tmp_path):
    bad = tmp_path / "c"
    shutil.copytree(ckpt, bad)
    return bad


def test_no_weights_at_all(ckpt, tmp_path):
    bad = _copy(ckpt, tmp_path)
    for f in [bad / "model.safetensors.index.json", *bad.glob("model-*.safetensors")]:
        f.unlink()
    with pytest.raises(checkpoint.CheckpointError, match="no model.safetensors and no model.safetensors.index.json"):
        checkpoint.load(bad)


@pytest.mark.parametrize("victim", ["model-00002-of-00003.safetensors", "speech_tokenizer/model.safetensors"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors_is_named(ckpt, tmp_path, victim, damage):
    bad = _copy(ckpt, tmp_path)
    f = bad / victim
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"\x00not a safetensors file" * 100)
    c = checkpoint.load(bad)
    read = c.codec_state if victim.startswith("speech_tokenizer") else c.main_state
    with pytest.raises(checkpoint.CheckpointError, match=f"{victim}: cannot read it as safetensors"):
        read()


@pytest.mark.parametrize("victim", ["config.json", "generation_config.json", "speech_tokenizer/config.json",
                                    "model.safetensors.index.json"])
@pytest.mark.parametrize("content", [b'{"talker_config": {', b"\xff\xfe\x00\x01binary", b"[1, 2, 3]"],
                         ids=["broken", "binary", "not-an-object"])
def test_invalid_json_is_named(ckpt, tmp_path, victim, content):
    bad = _copy(ckpt, tmp_path)
    (bad / victim).write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError, match=f"{victim}: (not valid JSON|expected a JSON object)"):
        checkpoint.load(bad)


def test_hub_id_is_downloaded_with_snapshot_download(ckpt, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(repo_id)
        return str(ckpt)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    c = checkpoint.load("Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign")
    assert calls == ["Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign"]
    assert c.path == ckpt and c.model_type == "voice_design"


def test_hub_unreachable(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, **kwargs):  # what snapshot_download raises without a network and without a cached copy
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub and we cannot "
                                      "find the appropriate snapshot folder for the specified revision on the local "
                                      "disk.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"could not download 'Qwen/Qwen3-TTS-12Hz-0.6B-Base' from the Hugging Face hub "
                             r"\(LocalEntryNotFoundError: .*\); check the network .* pass that directory"):
        checkpoint.load("Qwen/Qwen3-TTS-12Hz-0.6B-Base")
