"""Reduced-precision variants of an fp32 export, made with ONNX Runtime's own weight-only quantizer.

    python -m qwen3_tts_export.quantize --src artifacts/X --out artifacts/X-int4 --precision int4

int8 / int4: the talker's and code predictor's MatMul weights become MatMulNBits (8 or 4 bits, symmetric, blocks of
128 along the input dimension, accuracy level 4 = int8 activations on the CPU's integer dot-product units).
Embeddings (Gather), the output heads (talker codec_head, code predictor heads) and every other graph stay fp32:
the heads decide the tokens, and the speech decoder's and encoders' convolutions are not MatMuls. Graph inputs and
outputs do not change, so the runtime drives every variant the same way; the manifest records the precision.
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

from .export import TWO_GB

PRECISIONS = ("fp32", "int8", "int4")
QUANTIZED_GRAPHS = ("talker", "code_predictor")
BLOCK_SIZE = 128
ACCURACY_LEVEL = 4  # MatMulNBits computes with int8 activations (AVX-512 VNNI / AVX2 here)
KEEP_FP32 = ("codec_head", "heads.")  # output heads: weights whose MatMul stays fp32


def _log(msg: str) -> None:
    print(f"[quantize] {msg}", flush=True)


def quantize_graph(src: Path, dst: Path, bits: int) -> dict:
    """One graph: every MatMul on a constant weight except the output heads -> MatMulNBits."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    model = onnx.load(str(src))
    weights = {i.name for i in model.graph.initializer}
    keep = [n.name for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in weights and any(k in n.input[1] for k in KEEP_FP32)]
    quantized = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights and n.name not in keep]
    cfg = DefaultWeightOnlyQuantConfig(block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=ACCURACY_LEVEL,
                                       bits=bits)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    q = MatMulNBitsQuantizer(model, bits=bits, block_size=BLOCK_SIZE, is_symmetric=True,
                             accuracy_level=ACCURACY_LEVEL, nodes_to_exclude=keep, algo_config=cfg)
    q.process()
    for stale in (dst, dst.with_name(dst.name + ".data")):
        stale.unlink(missing_ok=True)
    big = sum(len(i.raw_data) for i in q.model.model.graph.initializer) > TWO_GB
    q.model.save_model_to_file(str(dst), use_external_data_format=big)
    return {"matmuls_quantized": len(quantized), "matmuls_kept_fp32": len(keep), "bits": bits,
            "block_size": BLOCK_SIZE, "accuracy_level": ACCURACY_LEVEL}


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def quantize_artifacts(src: str | Path, out: str | Path, precision: str) -> dict:
    """A copy of the fp32 export in `src` with the talker and code predictor at `precision`; returns the manifest."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    src, out = Path(src), Path(out)
    manifest = json.loads((src / C.MANIFEST).read_text())
    if manifest.get("precision", "fp32") != "fp32":
        raise ValueError(f"{src} is a {manifest['precision']} export; quantize from the fp32 export")
    out.mkdir(parents=True, exist_ok=True)
    (out / C.MANIFEST).unlink(missing_ok=True)
    replaced = {manifest["graphs"][g]["file"] for g in QUANTIZED_GRAPHS} if precision != "fp32" else set()
    for name in manifest["files"]:
        if name not in replaced and name.removesuffix(".data") not in replaced and src != out:
            _link_or_copy(src / name, out / name)
    checks = {}
    for g in QUANTIZED_GRAPHS if precision != "fp32" else ():
        f = manifest["graphs"][g]["file"]
        checks[g] = quantize_graph(src / f, out / f, int(precision[3:]))
        _log(f"{g}: {checks[g]['matmuls_quantized']} MatMuls -> {precision}, "
             f"{checks[g]['matmuls_kept_fp32']} output heads kept fp32")
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != C.MANIFEST)
    manifest["files"] = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files}
    manifest["precision"] = precision
    manifest["quantization"] = checks
    (out / C.MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    _log(f"wrote {out / C.MANIFEST}")
    return manifest


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m qwen3_tts_export.quantize", description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="an fp32 export (directory with manifest.json)")
    p.add_argument("--out", required=True, help="where to write the variant (may equal --src: in place)")
    p.add_argument("--precision", required=True, choices=PRECISIONS)
    a = p.parse_args(argv)
    quantize_artifacts(a.src, a.out, a.precision)


if __name__ == "__main__":
    main()
