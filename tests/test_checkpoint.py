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


@pytest.mark.parametrize("victim", ["config.json", "vocab.json", "speech_tokenizer/model.safetensors"])
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
