"""Random checkpoints in exactly the official layout, for tests, the demo and benchmarks.

The configs are the real ones (bundled under `reference_data/`) with dimensions shrunk for tests, or untouched for
benchmarks; the tensors come from instantiating the official classes, so names and shapes cannot drift from what
the released checkpoints hold. Weights are re-drawn so that logits are decisive (not near-uniform): greedy
comparisons against the reference are then meaningful.

    python -m qwen3_tts_export.random_checkpoint --kind custom_voice --size tiny --out /tmp/ckpt
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
from pathlib import Path

REFERENCE_DATA = Path(__file__).parent / "reference_data"
REAL_CHECKPOINTS = {
    ("base", "0b6"): "Qwen3-TTS-12Hz-0.6B-Base",
    ("custom_voice", "0b6"): "Qwen3-TTS-12Hz-0.6B-CustomVoice",
    ("base", "1b7"): "Qwen3-TTS-12Hz-1.7B-Base",
    ("custom_voice", "1b7"): "Qwen3-TTS-12Hz-1.7B-CustomVoice",
    ("voice_design", "1b7"): "Qwen3-TTS-12Hz-1.7B-VoiceDesign",
}
# Tiny test sizes. "wide": the talker is wider than the code predictor (small_to_mtp_projection, as in 1.7B);
# "equal": both have the same width (Identity projection, as in 0.6B).
TINY_TALKER_WIDTH = {"wide": 96, "equal": 64}
TINY_PREDICTOR_WIDTH = 64


def _shrink_main_config(cfg: dict, width: str) -> dict:
    cfg = copy.deepcopy(cfg)
    t = cfg["talker_config"]
    h = TINY_TALKER_WIDTH[width]
    t.update(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, text_hidden_size=32)
    t["rope_scaling"] = dict(t["rope_scaling"], mrope_section=[3, 3, 2])  # sums to head_dim / 2
    cp = t["code_predictor_config"]
    cp.update(hidden_size=TINY_PREDICTOR_WIDTH, intermediate_size=2 * TINY_PREDICTOR_WIDTH, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16,
              layer_types=["full_attention"] * 2)
    if cfg["tts_model_type"] == "base":
        cfg["speaker_encoder_config"] = {
            "enc_dim": h, "sample_rate": 24000, "mel_dim": 128,
            "enc_channels": [32, 32, 32, 32, 96], "enc_kernel_sizes": [5, 3, 3, 3, 1],
            "enc_dilations": [1, 2, 3, 4, 1], "enc_attention_channels": 16, "enc_res2net_scale": 8,
            "enc_se_channels": 16,
        }
    return cfg


def _shrink_codec_config(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["decoder_config"].update(latent_dim=64, codebook_dim=32, decoder_dim=64, hidden_size=32, intermediate_size=64,
                                 num_attention_heads=2, num_key_value_heads=2, head_dim=16, num_hidden_layers=2)
    cfg["encoder_config"].update(hidden_size=32, num_filters=4, intermediate_size=64, num_attention_heads=2,
                                 num_key_value_heads=2, head_dim=16, num_hidden_layers=2, codebook_dim=16,
                                 vector_quantization_hidden_dimension=16, upsample_groups=32)
    return cfg


def _redraw_(state: dict, seed: int, eos_id: int | None, eos_scale: float) -> None:
    """Re-draw every tensor in place so activations keep unit scale and the heads give decisive logits."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for name in sorted(state):
        t = state[name]
        if not t.is_floating_point():
            continue
        shape = t.shape
        if name.endswith("cluster_usage"):
            new = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("embed_sum") or name.endswith("embedding_sum"):
            new = torch.randn(shape, generator=g)
        elif name.endswith("initialized"):
            new = torch.ones(shape)
        elif ("embedding" in name and t.dim() == 2):
            new = torch.randn(shape, generator=g)
        elif name.endswith("codec_head.weight") or ".lm_head." in name:
            new = torch.randn(shape, generator=g) * (4.0 / math.sqrt(shape[1]))
        elif t.dim() >= 2:
            fan_in = shape[1] * (math.prod(shape[2:]) if t.dim() > 2 else 1)
            if "decoder.decoder." in name and "block.1.conv" in name and t.dim() == 3 and "upsample" not in name:
                fan_in = shape[0] * shape[2] // 2  # ConvTranspose1d weights are [in, out, k]
            new = torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
        elif name.endswith("bias"):
            new = torch.randn(shape, generator=g) * 0.02
        elif name.endswith(("alpha", "beta")):
            new = torch.randn(shape, generator=g) * 0.1
        elif name.endswith("scale") or name.endswith("gamma"):
            new = torch.full(shape, 0.1) + torch.randn(shape, generator=g) * 0.01
        else:  # norm weights
            new = 1.0 + torch.randn(shape, generator=g) * 0.1
        state[name] = new.to(t.dtype)
    if "decoder.decoder.6.conv.weight" in state:
        # Speech-like output level (peaks around 0.3, RMS under 0.1) instead of noise saturating the final clamp to
        # [-1, 1]: clamped samples would hide decoder differences from the waveform comparisons.
        state["decoder.decoder.6.conv.weight"] *= 0.005
    if eos_id is not None:
        head = state["talker.codec_head.weight"]
        head[eos_id] *= eos_scale


def build(out: str | Path, kind: str = "custom_voice", size: str = "tiny", width: str = "wide", seed: int = 0,
          eos_scale: float = 0.1, shards: int = 1) -> Path:
    """Write a random checkpoint to `out` and return its path.

    kind: custom_voice | voice_design | base. size: tiny (tests) or 0b6 / 1b7 (the real dimensions).
    width (tiny only): wide (talker wider than the code predictor, as 1.7B) or equal (as 0.6B).
    eos_scale shrinks the EOS row of the codec head (1.0 keeps it as drawn); shards > 1 writes an indexed shard set.
    """
    import torch
    from safetensors.torch import save_file

    from .reference import official_classes

    Qwen3TTSConfig, Qwen3TTSForConditionalGeneration, TokConfig, TokModel = official_classes()
    # A tiny "wide" checkpoint derives from the 1.7B config (instruct supported), "equal" from the 0.6B one.
    real_size = size if size != "tiny" else ("1b7" if (width == "wide" or kind == "voice_design") else "0b6")
    if (kind, real_size) not in REAL_CHECKPOINTS:
        raise ValueError(f"no released checkpoint has kind={kind!r} size={real_size!r}; "
                         f"known: {sorted(REAL_CHECKPOINTS)}")
    src = REFERENCE_DATA / REAL_CHECKPOINTS[(kind, real_size)]
    main_cfg = json.loads((src / "config.json").read_text())
    codec_cfg = json.loads((src / "speech_tokenizer" / "config.json").read_text())
    if size == "tiny":
        main_cfg = _shrink_main_config(main_cfg, width)
        codec_cfg = _shrink_codec_config(codec_cfg)

    out = Path(out)
    (out / "speech_tokenizer").mkdir(parents=True, exist_ok=True)
    for name in ("generation_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        shutil.copyfile(src / name, out / name)
    shutil.copyfile(src / "speech_tokenizer" / "preprocessor_config.json", out / "speech_tokenizer" / "preprocessor_config.json")
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(REFERENCE_DATA / name, out / name)
    (out / "config.json").write_text(json.dumps(main_cfg, indent=2, ensure_ascii=False))
    (out / "speech_tokenizer" / "config.json").write_text(json.dumps(codec_cfg, indent=2))

    with torch.device("cpu"):
        model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**main_cfg))
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        del model
        _redraw_(state, seed, main_cfg["talker_config"]["codec_eos_token_id"], eos_scale)
        state = {k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}  # stored BF16 like the release
        _save_main(state, out, shards, save_file)
        del state
        codec = TokModel(TokConfig(**codec_cfg))
        cstate = {k: v.detach().clone() for k, v in codec.state_dict().items()}
        del codec
        _redraw_(cstate, seed + 1, None, 1.0)
        save_file({k: v.float().contiguous() for k, v in cstate.items()}, str(out / "speech_tokenizer" / "model.safetensors"),
                  metadata={"format": "pt"})
    return out


def _save_main(state: dict, out: Path, shards: int, save_file) -> None:
    if shards <= 1:
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    names = sorted(state)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    total = 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k] for k in part}, str(out / fname), metadata={"format": "pt"})
        for k in part:
            weight_map[k] = fname
            total += state[k].numel() * state[k].element_size()
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--kind", default="custom_voice", choices=["custom_voice", "voice_design", "base"])
    p.add_argument("--size", default="tiny", choices=["tiny", "0b6", "1b7"])
    p.add_argument("--width", default="wide", choices=sorted(TINY_TALKER_WIDTH))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eos-scale", type=float, default=0.1)
    p.add_argument("--shards", type=int, default=1)
    a = p.parse_args(argv)
    path = build(a.out, a.kind, a.size, a.width, a.seed, a.eos_scale, a.shards)
    print(f"wrote a random {a.kind} checkpoint ({a.size}) to {path}")


if __name__ == "__main__":
    main()
