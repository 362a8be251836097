"""Reduced-precision variants of an fp32 export, made with ONNX Runtime's own tools.

    python -m qwen3_tts_export.precision --src artifacts/X --out artifacts/X-int4 --precision int4 [--decoder int8]

`precision` changes the talker and the code predictor; the text embedder and the encoders stay fp32, and so do
the embeddings (Gather) and the output heads (talker codec_head, code predictor heads), which decide the tokens.
The speech decoder stays fp32 unless `decoder` asks for int8 (below). Graph inputs and outputs do not change (fp32), except the fp16 variant's KV cache (fp16, recorded as
`kv_cache_dtype` in the manifest's config, which the runtime allocates accordingly); the manifest records the
precision.

    precision   weight MatMuls become                             meant for
    int8/int4   MatMulNBits, symmetric, blocks of 128 along the   CPU: accuracy level 4 = int8 activations on the
                input dimension                                   integer dot-product units (AVX-512 VNNI / AVX2)
    fp16        fp16 MatMuls between Casts: weights and matrix    CUDA (tensor cores; the CPU provider runs them
                products in fp16, and the attention (the          as fp32 after casting, which is how the tests
                talker's KV cache I/O included); the residual     check the rounding without a GPU); the graphs
                stream, norms and sampling in fp32                replayable as CUDA graphs (graph_capture.py)

fp16 keeps fp32 where fp16 overflows (LESSONS.md): the 0.6B code predictor's MLP down-projection, whose activation
peaks near twice the fp16 maximum, stays fp32 (the 1.7B has six times the headroom and gets fp16).

    decoder     speech_decoder becomes                            meant for
    int8        the Convs as int8 (QDQ: per-channel symmetric    CPU: ONNX Runtime fuses each into a QLinearConv
                int8 weights, uint8 activations with ranges       on its integer matrix-product kernels (VNNI,
                calibrated on the fp32 decoder's own              AMX); the Snakes on dequantized int8 outputs
                activations); everything else fp32                become table lookups (snake_lut.py: the same
                                                                  bytes);
                                                                  2x the fp32 decoder on the Intel bench machine,
                                                                  with a loss the SNR guard states

The convolution stack is nearly all of the decoder's work (5 GFLOP per frame at full size) and the fp32 decoder
runs at its compute floor, so int8 convolutions are the only lever left on the CPU. Each quantized activation adds
rounding noise, and a random-weight decoder amplifies early noise through its four upsampling blocks: the measured
SNR against fp32 is in BENCHMARKS.md and tests/test_precision.py; no real checkpoint could be measured here. Opt-in
for that reason (`make export ... DECODER=int8`), never the default.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

from qwen3_tts_onnx import contracts as C
from qwen3_tts_onnx.artifacts import sha256_file

from .export import GRAPH_REVISION, TWO_GB
from .graph_capture import make_capturable
from .snake_lut import snake_luts

# Bumped when a variant's graphs change for the same fp32 export (scripts/bench.py re-makes the ones it caches).
# 2: the int8 decoder's inner Snakes as table lookups (snake_lut.py). 3: also the Snakes after the upsampling
# convolutions and before the first block. 4: fp16's code predictor without If nodes (graph_capture.py).
VARIANT_REVISION = 4
PRECISIONS = ("fp32", "int8", "int4", "fp16")
DECODER_PRECISIONS = ("fp32", "int8")
CONVERTED_GRAPHS = ("talker", "code_predictor")
# int8 decoder: random code sequences (frames each) whose decode gives the activation ranges; random codes
# exercise every codebook entry, and speech codes are a subset of them
CALIBRATION_FRAMES = (50, 50)
# the Snake lookups (snake_lut.py) give the bytes the nodes they replace give; ONNX Runtime's Sin may round the odd
# value differently in a table than in a whole tensor, moving one uint8 step: tolerance on the waveform, relative to
# its peak
SNAKE_LUT_ATOL = 1e-3
BLOCK_SIZE = 128
ACCURACY_LEVEL = 4  # MatMulNBits computes with int8 activations (AVX-512 VNNI / AVX2 here)
KEEP_FP32 = ("codec_head", "heads.")  # output heads: weights whose MatMul stays fp32
# fp16 only: weights whose MatMul stays fp32 because its activations overflow fp16, per (graph, model size)
FP16_OVERFLOW = {("code_predictor", "0b6"): ("down_proj",)}


def _log(msg: str) -> None:
    print(f"[precision] {msg}", flush=True)


def _weight_matmuls(model, keep: tuple) -> tuple[list, list]:
    """(names of the MatMuls on a constant weight to convert, names of those kept fp32 because their weight name
    contains one of `keep`)."""
    weights = {i.name for i in model.graph.initializer}
    on_weights = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    kept = [n.name for n in on_weights if any(k in n.input[1] for k in keep)]
    return [n.name for n in on_weights if n.name not in kept], kept


def _subgraphs(node):
    """The graphs a node holds (an If's branches)."""
    for a in node.attribute:
        yield from ([a.g] if a.type == a.GRAPH else []) + list(a.graphs)


def _all_nodes(graph):
    """Every node of `graph`, those inside If branches (the sampler's) included."""
    for n in graph.node:
        yield n
        for g in _subgraphs(n):
            yield from _all_nodes(g)


def _drop_repeated_nodes(model) -> None:
    """ONNX Runtime 1.31's converter can insert the same Cast twice (same input, same output), which a model may
    not hold; 1.32's does not. Keep the first of identical nodes, then give any remaining namesakes their own name."""
    seen, nodes = set(), []
    for n in model.graph.node:
        key = n.SerializeToString()
        if key not in seen:
            seen.add(key)
            nodes.append(n)
    if len(nodes) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    names: set = set()
    for n in _all_nodes(model.graph):
        if n.name and n.name in names:
            i = 1
            while f"{n.name}_{i}" in names:
                i += 1
            n.name = f"{n.name}_{i}"
        names.add(n.name)


def _save(model, dst: Path) -> None:
    import onnx

    for stale in (dst, dst.with_name(dst.name + ".data")):
        stale.unlink(missing_ok=True)
    big = sum(len(i.raw_data) for i in model.graph.initializer) > TWO_GB
    onnx.save(model, str(dst), save_as_external_data=big, location=dst.name + ".data" if big else None)


def quantize_graph(src: Path, dst: Path, bits: int) -> dict:
    """int8/int4: every MatMul on a constant weight except the output heads -> MatMulNBits."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    model = onnx.load(str(src))
    quantized, keep = _weight_matmuls(model, KEEP_FP32)
    cfg = DefaultWeightOnlyQuantConfig(block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=ACCURACY_LEVEL,
                                       bits=bits)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    q = MatMulNBitsQuantizer(model, bits=bits, block_size=BLOCK_SIZE, is_symmetric=True,
                             accuracy_level=ACCURACY_LEVEL, nodes_to_exclude=keep, algo_config=cfg)
    q.process()
    _save(q.model.model, dst)
    return {"matmuls_quantized": len(quantized), "matmuls_kept_fp32": len(keep), "bits": bits,
            "block_size": BLOCK_SIZE, "accuracy_level": ACCURACY_LEVEL}


def fp16_graph(src: Path, dst: Path, keep: tuple) -> dict:
    """fp16: every MatMul on a constant weight whose weight name contains none of `keep` runs in fp16 (weight
    stored fp16, input cast to fp16, output cast back), and so does every GroupQueryAttention, the talker's with its
    KV cache inputs/outputs in fp16 (ONNX Runtime's CUDA GroupQueryAttention is fp16/bf16 only; an fp32 one would
    run on the CPU, the cache copied across every step). Every other node stays fp32 (ONNX Runtime's converter
    with all other nodes on its block list). The graph is first made replayable as a CUDA graph
    (graph_capture.py: the sampler's If nodes inlined; same results)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    capture = make_capturable(model)
    if capture["capture_blockers"]:
        _log(f"{src.name} cannot be captured as a CUDA graph: {'; '.join(capture['capture_blockers'])}")
    converted, kept = _weight_matmuls(model, keep)
    chosen = set(converted) | {n.name for n in model.graph.node if n.op_type == "GroupQueryAttention"}
    block = [n.name for n in _all_nodes(model.graph) if n.name not in chosen]
    fp32_io = [v.name for v in (*model.graph.input, *model.graph.output)
               if not v.name.startswith((C.PAST_PREFIX, C.PRESENT_PREFIX))]  # the KV cache goes fp16
    model = convert_float_to_float16(model, keep_io_types=fp32_io, node_block_list=block, op_block_list=[])
    _drop_repeated_nodes(model)
    _save(model, dst)
    return {"matmuls_fp16": len(converted), "matmuls_kept_fp32": len(kept), "kept_fp32": list(keep), **capture}


class _DropPreprocessingAdvice(logging.Filter):
    """quantize_static advises shape pre-processing (on the root logger), which these graphs do not need."""

    def filter(self, record) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _int8_convs(model) -> int:
    """Convs whose data and weight come through DequantizeLinear: those ONNX Runtime runs as QLinearConv."""
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return sum(n.op_type == "Conv" and n.input[0] in dequantized and n.input[1] in dequantized
               for n in model.graph.node)


def int8_decoder_graph(src: Path, dst: Path, layout: dict, context: Path, seed: int = 0) -> dict:
    """int8 decoder: the Convs of the speech_decoder graph quantized statically (ONNX Runtime's quantize_static,
    QDQ format), activation ranges (min/max) from the fp32 graph decoding random codes the way the runtime does
    (calls of STEP_FRAMES frames, the state carried), so the calibrated activations include the state inputs.
    The Convs that the fp32 `context` graph (speech_decoder_context: pre_conv) also holds stay fp32, so that a
    state made by skipping frames through it is the state decoding them gives (decode.py)."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from qwen3_tts_onnx import sessions
    from qwen3_tts_onnx.decode import SpeechDecoder

    class Recorder:  # the session as SpeechDecoder drives it, keeping each call's feeds
        def __init__(self, session):
            self.session, self.feeds = session, []

        def run(self, names, feeds):
            self.feeds.append(dict(feeds))
            return self.session.run(names, feeds)

    rec = Recorder(sessions.create(src, ["CPUExecutionProvider"]))
    decoder = SpeechDecoder(rec, layout)
    rng = np.random.default_rng(seed)
    for frames in CALIBRATION_FRAMES:
        decoder.feed(rng.integers(0, C.CODEBOOK_SIZE, (frames, C.NUM_CODE_GROUPS)), decoder.new_state())

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.calls = iter(rec.feeds)

        def get_next(self):
            return next(self.calls, None)

    shared = {n.input[1] for n in onnx.load(str(context), load_external_data=False).graph.node if n.op_type == "Conv"}
    convs = [(n.name, n.input[1]) for n in onnx.load(str(src), load_external_data=False).graph.node
             if n.op_type == "Conv"]
    # the two graphs name a weight by its module path, the context graph from one level up ("decoder.pre_conv...")
    kept = [name for name, w in convs if any(c == w or c.endswith("." + w) for c in shared)]
    if len(kept) != len(shared):
        raise RuntimeError(f"{context.name}'s convolutions {sorted(shared)} not all found in {src.name}")
    for stale in (dst, dst.with_name(dst.name + ".data")):
        stale.unlink(missing_ok=True)
    advice = _DropPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=kept, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.getLogger().removeFilter(advice)
    model = onnx.load(str(dst))
    luts = snake_luts(model)
    qdq = sessions.create(dst, ["CPUExecutionProvider"], graph="speech_decoder")
    _save(model, dst)
    lookup = sessions.create(dst, ["CPUExecutionProvider"], graph="speech_decoder")
    feeds = rec.feeds[-1]  # a call with a carried state
    want, got = qdq.run(["waveform"], feeds)[0], lookup.run(["waveform"], feeds)[0]
    diff = float(np.abs(want - got).max())
    if diff > SNAKE_LUT_ATOL * max(1.0, float(np.abs(want).max())):
        raise RuntimeError(f"int8 decoder: the Snake lookups changed the waveform by {diff:.2e} (max abs)")
    return {"convs_int8": _int8_convs(model), "convs_kept_fp32": kept, "snake_lookups": luts,
            "snake_lookup_max_diff": diff,
            "calibration_calls": len(rec.feeds), "calibration_frames": list(CALIBRATION_FRAMES),
            "weights": "int8 per channel, symmetric", "activations": "uint8 per tensor, min/max calibrated"}


def is_current(out: str | Path, precision: str = "fp32", decoder: str = "fp32", source: str | Path | None = None
               ) -> bool:
    """Whether `out` holds a complete export (its manifest is written last) that this code would write the same
    way: this format version and graph revision, the given precision and decoder at this VARIANT_REVISION, and,
    when given, exported from `source`. Caches of exports (scripts/bench.py, the runtime's from_checkpoint) reuse
    an export only then."""
    try:
        m = json.loads((Path(out) / C.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    variant = precision != "fp32" or decoder != "fp32"
    return (m.get("format_version") == C.FORMAT_VERSION and m.get("graph_revision", 1) == GRAPH_REVISION
            and m.get("precision", "fp32") == precision and m.get("decoder_precision", "fp32") == decoder
            and (not variant or m.get("variant_revision", 1) == VARIANT_REVISION)
            and (source is None or m.get("model", {}).get("source") == str(source)))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def make_variant(src: str | Path, out: str | Path, precision: str, decoder: str = "fp32") -> dict:
    """A copy of the fp32 export in `src` with the talker and code predictor at `precision` and the speech decoder
    at `decoder`; returns the manifest."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if decoder not in DECODER_PRECISIONS:
        raise ValueError(f"decoder must be one of {DECODER_PRECISIONS}, got {decoder!r}")
    src, out = Path(src), Path(out)
    manifest = json.loads((src / C.MANIFEST).read_text())
    if manifest.get("precision", "fp32") != "fp32" or manifest.get("decoder_precision", "fp32") != "fp32":
        raise ValueError(f"{src} is a {manifest.get('precision', 'fp32')} export (decoder "
                         f"{manifest.get('decoder_precision', 'fp32')}); make variants from the fp32 export")
    out.mkdir(parents=True, exist_ok=True)
    (out / C.MANIFEST).unlink(missing_ok=True)
    replaced = {manifest["graphs"][g]["file"] for g in CONVERTED_GRAPHS} if precision != "fp32" else set()
    if decoder != "fp32":
        replaced.add(manifest["graphs"]["speech_decoder"]["file"])
    for name in manifest["files"]:
        if name not in replaced and name.removesuffix(".data") not in replaced and src != out:
            _link_or_copy(src / name, out / name)
    checks = {}
    for g in CONVERTED_GRAPHS if precision != "fp32" else ():
        f = manifest["graphs"][g]["file"]
        if precision == "fp16":
            keep = KEEP_FP32 + FP16_OVERFLOW.get((g, manifest["model"]["size"]), ())
            checks[g] = fp16_graph(src / f, out / f, keep)
            _log(f"{g}: {checks[g]['matmuls_fp16']} MatMuls -> fp16, {checks[g]['matmuls_kept_fp32']} kept fp32 "
                 f"({', '.join(keep)})")
        else:
            checks[g] = quantize_graph(src / f, out / f, int(precision[3:]))
            _log(f"{g}: {checks[g]['matmuls_quantized']} MatMuls -> {precision}, "
                 f"{checks[g]['matmuls_kept_fp32']} output heads kept fp32")
    if decoder == "int8":
        f = manifest["graphs"]["speech_decoder"]["file"]
        tmp = out / (f + ".int8.tmp")  # src and out may be one directory
        try:
            checks["speech_decoder"] = int8_decoder_graph(src / f, tmp, manifest["config"]["speech_decoder_state"],
                                                          src / manifest["graphs"]["speech_decoder_context"]["file"])
            tmp.replace(out / f)
        finally:
            tmp.unlink(missing_ok=True)
        d = checks["speech_decoder"]
        _log(f"speech_decoder: {d['convs_int8']} Convs -> int8, {len(d['convs_kept_fp32'])} kept fp32 (shared with "
             f"the context graph), {d['snake_lookups']} Snakes -> lookups")
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != C.MANIFEST)
    manifest["files"] = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files}
    if precision == "fp16":  # the talker's KV cache is fp16 now: the contract says so, and the manifest
        manifest["config"]["kv_cache_dtype"] = "float16"
        manifest["graphs"]["talker"] = C.graph_specs(manifest["config"])["talker"].to_json()
    manifest["precision"] = precision
    manifest["decoder_precision"] = decoder
    manifest["precision_details"] = checks
    manifest["variant_revision"] = VARIANT_REVISION
    (out / C.MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    _log(f"wrote {out / C.MANIFEST}")
    return manifest


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m qwen3_tts_export.precision", description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="an fp32 export (directory with manifest.json)")
    p.add_argument("--out", required=True, help="where to write the variant (may equal --src: in place)")
    p.add_argument("--precision", required=True, choices=PRECISIONS)
    p.add_argument("--decoder", default="fp32", choices=DECODER_PRECISIONS)
    a = p.parse_args(argv)
    make_variant(a.src, a.out, a.precision, a.decoder)


if __name__ == "__main__":
    main()
