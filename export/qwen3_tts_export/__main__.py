"""python -m qwen3_tts_export --model <hub id or checkpoint dir> --out <artifacts dir> [--precision fp32|int8|int4|fp16]
[--decoder fp32|int8]"""
from __future__ import annotations

import argparse
import sys

from .checkpoint import CheckpointError
from .export import ExportCheckError, export_all
from .precision import DECODER_PRECISIONS, PRECISIONS, make_variant


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m qwen3_tts_export", description=__doc__)
    p.add_argument("--model", required=True, help="local checkpoint directory or Hugging Face hub id")
    p.add_argument("--out", required=True, help="directory for the graphs, tokenizer.json and manifest.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs used to check the graphs")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="int8/int4: the talker and code predictor weights as MatMulNBits (CPU); fp16: their weight "
                        "MatMuls in fp16 (CUDA). See precision.py")
    p.add_argument("--decoder", default="fp32", choices=DECODER_PRECISIONS,
                   help="int8: the speech decoder's convolutions in int8, calibrated at export (CPU; faster, with a "
                        "loss: see precision.py and BENCHMARKS.md); default fp32")
    a = p.parse_args(argv)
    try:
        export_all(a.model, a.out, seed=a.seed)
        if a.precision != "fp32" or a.decoder != "fp32":
            make_variant(a.out, a.out, a.precision, a.decoder)
    except (CheckpointError, ExportCheckError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
