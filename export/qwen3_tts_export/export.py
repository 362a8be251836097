"""Checkpoint -> ONNX graphs + tokenizer + manifest, one function per graph, each checked against torch.

    python -m qwen3_tts_export --model <hub id or dir> --out artifacts/<name>

Each graph is traced with the dynamo exporter from the plain modules in `modules/`, its I/O renamed to the
contract in `qwen3_tts_onnx.contracts`, saved (weights as external data when the graph passes 2 GB), then run in
ONNX Runtime on fresh random inputs of other shapes than the trace used; a mismatch with torch fails the export.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from qwen3_tts_onnx import contracts as C
from qwen3_tts_onnx.artifacts import sha256_file

from . import checkpoint as ckpt_mod
from .modules import gqa, skip_norm
from .modules.code_predictor import CodePredictor
from .modules.codec_embedder import CodecEmbedder
from .modules.speaker_encoder import SpeakerEncoder
from .modules.speech_decoder import SpeechDecoder, SpeechDecoderContext
from .modules.speech_encoder import SpeechEncoder
from .modules.talker import Talker
from .modules.text_embedder import TextEmbedder

ATOL = 1e-4
# Bumped when a graph's insides change but its contract (FORMAT_VERSION) does not: older exports still run, only
# slower, and `scripts/bench.py` re-exports the ones it caches. 2: the speech decoder's transposed convolutions in
# polyphase form. 3: the code predictor's attention through GroupQueryAttention (RoPE inside it), its sampler
# behind If nodes. 4: the talker's attention without query_seqlens (runs on onnxruntime 1.31). 5: group 0 sampled
# in the code predictor's graph (with FORMAT_VERSION 6, which changed its inputs). 6: the talker's RoPE inside its
# attention op, at cache positions (with FORMAT_VERSION 7: no position_ids input). 7: residual adds fused into the
# RMSNorms after them (modules/skip_norm.py). 8: the talker reads T from its mask's values (a mask of the cache's
# capacity, zeros past T, is a fixed shape for CUDA graph replay). 9: the talker's rows right-padded, no attention
# bias (ONNX Runtime's CUDA GroupQueryAttention refuses one), with FORMAT_VERSION 8.
GRAPH_REVISION = 9
TWO_GB = 2 * 1024**3
AUTO = torch.export.Dim.AUTO


class ExportCheckError(RuntimeError):
    """An exported graph disagrees with the torch module it was traced from."""


def _log(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


def _param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _export_graph(module, args, dynamic_shapes, spec: C.GraphSpec, out: Path) -> Path:
    t0 = time.time()
    with torch.no_grad():
        program = torch.onnx.export(module, args, None, input_names=spec.input_names, output_names=spec.output_names,
                                    dynamic_shapes=dynamic_shapes, dynamo=True, optimize=True, verbose=False,
                                    custom_translation_table={**gqa.translation_table(),
                                                              **skip_norm.translation_table()})
    _apply_contract(program.model, spec)
    path = out / spec.file
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    program.save(str(path), external_data=_param_bytes(module) > TWO_GB)
    _log(f"{spec.file}: {time.time() - t0:.1f} s")
    return path


def _apply_contract(model, spec: C.GraphSpec) -> None:
    """Give the graph's inputs and outputs the contract's names, dims and dtypes (or fail)."""
    import onnx_ir as ir

    for values, specs, kind in ((model.graph.inputs, spec.inputs, "input"), (model.graph.outputs, spec.outputs, "output")):
        names = [v.name for v in values]
        if names != [s.name for s in specs]:
            raise ExportCheckError(f"{spec.file}: {kind}s {names} differ from the contract {[s.name for s in specs]}")
        for v, s in zip(values, specs):
            if v.dtype != ir.DataType.from_numpy(np.dtype(s.dtype)):
                raise ExportCheckError(f"{spec.file}: {kind} {s.name} has dtype {v.dtype}, contract says {s.dtype}")
            if v.shape is None or len(v.shape) != len(s.shape):
                raise ExportCheckError(f"{spec.file}: {kind} {s.name} has rank {v.shape}, contract says {s.shape}")
            v.shape = ir.Shape(list(s.shape))


def _compare(spec: C.GraphSpec, path: Path, module, args, exact: tuple = ()) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {s.name: (a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
             for s, a in zip(spec.inputs, _flatten(args))}
    got = sess.run(None, feeds)
    with torch.no_grad():
        want = module(*args)
    want = want if isinstance(want, tuple) else (want,)
    worst = 0.0
    for s, w, g in zip(spec.outputs, want, got):
        w = w.numpy()
        if w.shape != g.shape:
            raise ExportCheckError(f"{spec.file}: output {s.name} has shape {g.shape}, torch gives {w.shape}")
        if s.name in exact:
            if not np.array_equal(w, g):
                raise ExportCheckError(f"{spec.file}: output {s.name} differs from torch in "
                                       f"{int((w != g).sum())} of {w.size} entries")
            continue
        err = float(np.abs(w - g).max()) if w.size else 0.0
        tol = ATOL * max(1.0, float(np.abs(w).max()) if w.size else 1.0)
        if not err <= tol:
            raise ExportCheckError(f"{spec.file}: output {s.name} differs from torch by {err:.3g} (tolerance {tol:.3g})")
        worst = max(worst, err)
    return worst


def _flatten(args):
    for a in args:
        if isinstance(a, (tuple, list)):
            yield from a
        else:
            yield a


# ---------------------------------------------------------------------------------------------------- the graphs

def _export_checked(module, spec: C.GraphSpec, out: Path, args, trace: tuple, checks: tuple, dynamic_shapes,
                    exact: tuple = ()) -> float:
    """Trace `module` on args(*trace), then compare ONNX Runtime with torch on args(*c) for every c in checks (other
    shapes than the trace's): outputs in `exact` must be equal, the others within ATOL. Returns the worst error."""
    path = _export_graph(module, args(*trace), dynamic_shapes, spec, out)
    err = max(_compare(spec, path, module, args(*c), exact=exact) for c in checks)
    same = f"{', '.join(exact)} identical" if exact else ""
    rest = "" if len(exact) == len(spec.outputs) else f"max abs {err:.2e}"
    _log(f"{spec.name} matches torch: {', '.join(x for x in (same, rest) if x)}")
    return err


def _talker_args(t: dict, g: torch.Generator):
    def args(b: int, s: int, p: int, tail: int = 0):
        """b rows of P + S positions, the first one position shorter when there is a past (right padding: rows of
        different lengths), then `tail` zeros up to the cache's capacity (a fixed-size mask)"""
        h, kv, d = t["hidden_size"], t["num_key_value_heads"], t["head_dim"]
        mask = torch.ones(b, p + s + tail, dtype=torch.int64)
        mask[:, p + s:] = 0
        if p > 0:
            mask[0, p + s - 1] = 0
        # cache buffers with room to spare: the past in front, zeros after it (ONNX Runtime leaves the positions
        # past P + S as it found them, torch's reference copies them: both must read zeros there)
        past = [torch.zeros(b, kv, p + s + max(tail, 3), d) for _ in range(2 * t["num_hidden_layers"])]
        for buf in past:
            buf[:, :, :p] = torch.randn(b, kv, p, d, generator=g)
        return (torch.randn(b, s, h, generator=g), mask, *past)

    return args


def export_talker(sd: dict, t: dict, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    ds = ({0: AUTO, 1: AUTO}, {0: AUTO, 1: AUTO}, tuple({0: AUTO, 2: AUTO} for _ in range(2 * t["num_hidden_layers"])))
    err = _export_checked(Talker(sd, t).eval(), spec, out, _talker_args(t, g), (2, 3, 4),
                          ((1, 9, 0), (3, 1, 7), (2, 1, 6, 5)), ds)
    return {"max_abs_vs_torch": err}


def _predictor_args(h: int, g: torch.Generator):
    def args(b: int, sample: bool, step: int):
        logits = torch.randn(b, C.TALKER_VOCAB, generator=g) * 3
        seen = torch.rand(b, C.TALKER_VOCAB, generator=g) < 0.05
        finished = torch.arange(b) == 1  # the second row (if any) is done: its group 0 must be EOS
        group0 = (torch.tensor(sample), torch.tensor(0.8), torch.tensor(30, dtype=torch.int64), torch.tensor(0.9))
        sub = (torch.tensor(sample), torch.tensor(0.9), torch.tensor(50, dtype=torch.int64), torch.tensor(0.8))
        return (torch.randn(b, h, generator=g), logits, seen, torch.tensor(step, dtype=torch.int64), finished,
                torch.randn(b, h, generator=g), torch.rand(b, C.NUM_CODE_GROUPS, generator=g), *group0,
                torch.tensor(1.05), *sub)

    return args


def export_code_predictor(sd: dict, t: dict, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    module = CodePredictor(sd, dict(t["code_predictor_config"]), eos=t["codec_eos_token_id"]).eval()
    ds = ({0: AUTO},) * 3 + (None, {0: AUTO}, {0: AUTO}, {0: AUTO}) + (None,) * 9
    # checks: greedy and sampled, EOS blocked (step 0) and allowed (step 5), batches of 1 and 3
    err = _export_checked(module, spec, out, _predictor_args(t["hidden_size"], g), (2, True, 3),
                          ((1, False, 0), (3, False, 5), (3, True, 1)), ds, exact=("codes", "seen_next"))
    return {"max_abs_vs_torch": err}


def export_text_embedder(sd: dict, t: dict, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    def args(b, s):
        text = torch.randint(-1, 151676, (b, s), generator=g)
        codec = torch.randint(-1, t["vocab_size"], (b, s), generator=g)
        return (text, codec)

    err = _export_checked(TextEmbedder(sd).eval(), spec, out, args, (2, 5), ((1, 1), (3, 17)),
                          ({0: AUTO, 1: AUTO}, {0: AUTO, 1: AUTO}))
    return {"max_abs_vs_torch": err}


def _decoder_args(module: SpeechDecoder, g: torch.Generator):
    """Random codes and a random state: conv contexts, and past keys/values of `p` positions (0 = fresh)."""
    att = module.attention_layout()

    def args(b: int, f: int, p: int):
        state = [torch.randn(b, ch, ctx, generator=g) for ch, ctx in module.conv_state_layout()]
        state += [torch.randn(b, att["heads"], p, att["head_dim"], generator=g) for _ in range(2 * att["layers"])]
        return (torch.randint(0, C.CODEBOOK_SIZE, (b, C.NUM_CODE_GROUPS, f), generator=g), torch.tensor(p + 3),
                *state)

    return args


def export_speech_decoder(module: SpeechDecoder, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    n_conv, n_kv = len(module.conv_state_layout()), 2 * module.attention_layout()["layers"]
    ds = ({0: AUTO, 2: AUTO}, None, (*({0: AUTO} for _ in range(n_conv)), *({0: AUTO, 2: AUTO} for _ in range(n_kv))))
    # a fresh decode, one frame on a full window, and a long chunk whose keys overflow the window
    err = _export_checked(module, spec, out, _decoder_args(module, g), (2, 6, 5), ((1, 1, 0), (2, 1, 71), (1, 90, 30)),
                          ds)
    return {"max_abs_vs_torch": err}


def export_speech_decoder_context(module: SpeechDecoder, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    n_conv, n_kv = len(module.conv_state_layout()), 2 * module.attention_layout()["layers"]
    full = _decoder_args(module, g)

    def args(b: int, f: int, p: int):  # the full graph's arguments less the convolution stack's states
        a = full(b, f, p)
        return (a[0], a[1], a[2], *a[2 + n_conv:])

    ds = ({0: AUTO, 2: AUTO}, None, {0: AUTO}, tuple({0: AUTO, 2: AUTO} for _ in range(n_kv)))
    err = _export_checked(SpeechDecoderContext(module).eval(), spec, out, args, (2, 6, 5),
                          ((1, 1, 0), (2, 1, 71), (1, 90, 30)), ds)
    return {"max_abs_vs_torch": err}


def export_speaker_encoder(sd: dict, scfg: dict, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    def args(b, frames):  # log-mel values: natural log of magnitudes, roughly -11.5 (silence) .. 3
        return (torch.randn(b, frames, C.MEL_BINS, generator=g) * 2.0 - 4.0,)

    err = _export_checked(SpeakerEncoder(sd, scfg).eval(), spec, out, args, (2, 40), ((1, 9), (3, 300)),
                          ({0: AUTO, 1: AUTO},))
    return {"max_abs_vs_torch": err}


def export_speech_encoder(csd: dict, ecfg: dict, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    def args(b, n):
        return (torch.randn(b, n, generator=g) * 0.1,)

    # 11 s runs past Mimi's configured 250-frame window, which the reference does not apply
    _export_checked(SpeechEncoder(csd, ecfg).eval(), spec, out, args, (2, 4000),
                    ((1, 1), (2, 3 * C.SAMPLES_PER_FRAME + 7), (1, 24000 * 11)), ({0: AUTO, 1: AUTO},),
                    exact=("codes",))
    return {"codes_identical": True}


def export_codec_embedder(sd: dict, spec: C.GraphSpec, out: Path, g: torch.Generator) -> dict:
    def args(b, f):
        return (torch.randint(0, C.CODEBOOK_SIZE, (b, f, C.NUM_CODE_GROUPS), generator=g),)

    err = _export_checked(CodecEmbedder(sd).eval(), spec, out, args, (2, 5), ((1, 1), (3, 40)), ({0: AUTO, 1: AUTO},))
    return {"max_abs_vs_torch": err}


# ---------------------------------------------------------------------------------------------------- tokenizer

def export_tokenizer(ckpt_path: Path, out: Path) -> None:
    """Write tokenizer.json exactly as the official package loads the tokenizer from a local directory.

    qwen-tts 0.1.1 loads with `fix_mistral_regex=True`, which under transformers 4.57.3 swaps the Qwen2
    pre-tokenizer regex for the Mistral one for this config (SPEC §1.6); we save what that load produces.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ckpt_path), fix_mistral_regex=True)
    tok.backend_tokenizer.save(str(out / C.TOKENIZER))


# ---------------------------------------------------------------------------------------------------- manifest

def _versions() -> dict:
    import onnx
    import onnxruntime
    import transformers

    from . import __version__

    return {"qwen3_tts_export": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def write_manifest(ckpt: ckpt_mod.Checkpoint, t: dict, out: Path, specs: list, checks: dict) -> dict:
    """t: the talker config plus what the export derived (speech_decoder_state)."""
    config = {k: t[k] for k in C.MANIFEST_CONFIG_KEYS if k in t}
    config.update({k: ckpt.config[k] for k in C.MANIFEST_CONFIG_KEYS if k in ckpt.config})
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != C.MANIFEST)
    manifest = {
        "format_version": C.FORMAT_VERSION,
        "graph_revision": GRAPH_REVISION,
        "model": {"type": ckpt.model_type, "size": ckpt.model_size, "source": str(ckpt.path)},
        "config": config,
        "generation_defaults": ckpt.generation_config,
        "graphs": {s.name: s.to_json() for s in specs},
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
        "export_checks": checks,
        "versions": _versions(),
    }
    (out / C.MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


def export_all(model: str | Path, out: str | Path, seed: int = 0) -> dict:
    """Export every graph the checkpoint needs into `out` and write the manifest; returns the manifest."""
    ckpt = ckpt_mod.load(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / C.MANIFEST).unlink(missing_ok=True)  # a half-written export must not look complete
    _log(f"{ckpt.path}: {ckpt.model_type} {ckpt.model_size}")
    sd = ckpt.main_state()
    ckpt_mod.check_consistent(ckpt, sd)
    t = ckpt.talker_config
    g = torch.Generator().manual_seed(seed)
    csd = ckpt.codec_state()
    decoder = SpeechDecoder(csd, ckpt.codec_config["decoder_config"]).eval()
    layout = {"conv": decoder.conv_state_layout(), **decoder.attention_layout(), "stack_frames": decoder.stack_frames()}
    t = {**t, "speech_decoder_state": layout}
    specs = C.graph_specs({**t, "tts_model_type": ckpt.model_type})  # the graphs this model type needs
    checks = {
        "text_embedder": export_text_embedder(sd, t, specs["text_embedder"], out, g),
        "talker": export_talker(sd, t, specs["talker"], out, g),
        "code_predictor": export_code_predictor(sd, t, specs["code_predictor"], out, g),
    }
    if "codec_embedder" in specs:
        checks["codec_embedder"] = export_codec_embedder(sd, specs["codec_embedder"], out, g)
    if "speaker_encoder" in specs:
        checks["speaker_encoder"] = export_speaker_encoder(sd, ckpt.config["speaker_encoder_config"],
                                                           specs["speaker_encoder"], out, g)
    del sd
    checks["speech_decoder"] = export_speech_decoder(decoder, specs["speech_decoder"], out, g)
    checks["speech_decoder_context"] = export_speech_decoder_context(decoder, specs["speech_decoder_context"], out, g)
    del decoder
    if "speech_encoder" in specs:
        checks["speech_encoder"] = export_speech_encoder(csd, ckpt.codec_config["encoder_config"],
                                                         specs["speech_encoder"], out, g)
    del csd
    export_tokenizer(ckpt.path, out)
    manifest = write_manifest(ckpt, t, out, list(specs.values()), checks)
    _log(f"wrote {out / C.MANIFEST}")
    return manifest
