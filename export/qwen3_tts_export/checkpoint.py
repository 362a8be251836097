"""A Qwen3-TTS checkpoint from a local directory or a Hugging Face hub id: configs and tensors (BF16 -> fp32).

Every missing or inconsistent file raises `CheckpointError` naming the file and what to do about it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Mapping
from pathlib import Path

REQUIRED_FILES = ("config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                  "speech_tokenizer/config.json", "speech_tokenizer/model.safetensors")
MODEL_TYPES = ("custom_voice", "voice_design", "base")


class CheckpointError(ValueError):
    """The checkpoint is missing a file or its files disagree with each other."""


@dataclass
class Checkpoint:
    path: Path
    config: dict
    generation_config: dict
    codec_config: dict
    weight_files: list

    @property
    def talker_config(self) -> dict:
        return self.config["talker_config"]

    @property
    def model_type(self) -> str:
        return self.config["tts_model_type"]

    @property
    def model_size(self) -> str:
        return self.config["tts_model_size"]

    def main_state(self) -> "TensorFiles":
        """All main-model tensors, each read as fp32 when it is looked up (see TensorFiles)."""
        return TensorFiles(self.weight_files)

    def codec_state(self) -> "TensorFiles":
        return TensorFiles([self.path / "speech_tokenizer" / "model.safetensors"])


class TensorFiles(Mapping):
    """Tensor name -> fp32 torch tensor, read from the memory-mapped safetensors files at each lookup, nothing kept.

    The export builds one graph's module at a time, and each module keeps its own copies of the tensors it uses, so
    a whole fp32 state dict held beside it would only add to the peak: the 1.7B checkpoint upcast to fp32 is 7.6 GB,
    which with the talker module (5.6 GB) and its export ran past 15 GB. Headers are read (and checked) up front, so
    a truncated or foreign file fails here, naming the file.
    """

    def __init__(self, files):
        from safetensors import safe_open

        self._handles, self._where = [], {}
        for f in files:
            try:
                h = safe_open(str(f), framework="pt")
                keys = list(h.keys())
            except Exception as e:  # truncated or not a safetensors file
                raise CheckpointError(f"{f}: cannot read it as safetensors ({e}); re-download the checkpoint") from e
            self._handles.append((f, h))
            self._where.update(dict.fromkeys(keys, len(self._handles) - 1))

    def __getitem__(self, name: str):
        f, h = self._handles[self._where[name]]
        try:
            return h.get_tensor(name).float()
        except Exception as e:
            raise CheckpointError(f"{f}: cannot read tensor {name} ({e}); re-download the checkpoint") from e

    def __contains__(self, name) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple:
        """The tensor's shape from the file header, without reading the tensor."""
        return tuple(self._handles[self._where[name]][1].get_slice(name).get_shape())

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def resolve(model: str | Path) -> Path:
    """A local directory as is; anything else that looks like `owner/name` is fetched with huggingface_hub."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p} is a file; pass the checkpoint directory that holds config.json")
    text = str(model)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download
        except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency of the export extra
            raise CheckpointError("install huggingface_hub to download checkpoints by hub id") from e
        try:
            return Path(snapshot_download(text))
        except Exception as e:
            raise CheckpointError(f"could not download {text!r} from the Hugging Face hub ({type(e).__name__}: {e}); "
                                  "check the network and the repository id, or download the checkpoint yourself "
                                  "(e.g. `huggingface-cli download <id> --local-dir DIR`) and pass that "
                                  "directory") from e
    raise CheckpointError(f"{model!r} is neither a local checkpoint directory nor a hub id like 'Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice'")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # broken text, or binary content
        raise CheckpointError(f"{path}: not valid JSON ({e}); re-download the checkpoint") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got a {type(data).__name__}; re-download the "
                              "checkpoint")
    return data


def load(model: str | Path) -> Checkpoint:
    path = resolve(model)
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"{path} is not a complete Qwen3-TTS 12 Hz checkpoint: missing {', '.join(missing)}")
    config = _read_json(path / "config.json")
    if config.get("model_type") != "qwen3_tts":
        raise CheckpointError(f"{path / 'config.json'}: model_type is {config.get('model_type')!r}, expected 'qwen3_tts'")
    if config.get("tokenizer_type") != "qwen3_tts_tokenizer_12hz":
        raise CheckpointError(f"{path / 'config.json'}: tokenizer_type {config.get('tokenizer_type')!r} is not "
                              "supported; only the 12 Hz tokenizer checkpoints are")
    if config.get("tts_model_type") not in MODEL_TYPES:
        raise CheckpointError(f"{path / 'config.json'}: unknown tts_model_type {config.get('tts_model_type')!r}")
    codec_config = _read_json(path / "speech_tokenizer/config.json")
    weight_files = _weight_files(path)
    return Checkpoint(path, config, _read_json(path / "generation_config.json"), codec_config, weight_files)


def _weight_files(path: Path) -> list:
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if not index.is_file():
        raise CheckpointError(f"{path}: no model.safetensors and no model.safetensors.index.json")
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: has no weight_map")
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"{index} names shards that are missing: {', '.join(missing)}")
    return [path / f for f in files]


def check_consistent(ckpt: Checkpoint, state: TensorFiles) -> None:
    """Tensors and config agree on the shapes the export relies on."""
    t = ckpt.talker_config
    h, cp = t["hidden_size"], t["code_predictor_config"]
    expect = {
        "talker.model.codec_embedding.weight": (t["vocab_size"], h),
        "talker.codec_head.weight": (t["vocab_size"], h),
        "talker.model.text_embedding.weight": (t["text_vocab_size"], t["text_hidden_size"]),
        "talker.model.norm.weight": (h,),
        f"talker.model.layers.{t['num_hidden_layers'] - 1}.self_attn.q_proj.weight":
            (t["num_attention_heads"] * t["head_dim"], h),
        "talker.code_predictor.model.codec_embedding.14.weight": (cp["vocab_size"], h),
        "talker.code_predictor.lm_head.14.weight": (cp["vocab_size"], cp["hidden_size"]),
    }
    if cp["hidden_size"] != h:
        expect["talker.code_predictor.small_to_mtp_projection.weight"] = (cp["hidden_size"], h)
    if ckpt.model_type == "base":
        spk = ckpt.config.get("speaker_encoder_config")
        if not isinstance(spk, dict) or spk.get("enc_dim") != h:
            raise CheckpointError(f"{ckpt.path / 'config.json'}: a Base model needs speaker_encoder_config with "
                                  f"enc_dim equal to the talker's hidden_size {h}")
        expect["speaker_encoder.fc.bias"] = (h,)
    for name, shape in expect.items():
        if name not in state:
            raise CheckpointError(f"{ckpt.path}: tensor {name} is missing from the model weights")
        if state.shape(name) != shape:
            raise CheckpointError(f"{ckpt.path}: tensor {name} has shape {state.shape(name)}, but config.json "
                                  f"implies {shape}")
