"""An official checkpoint exported once into a cache, for `Qwen3TTS.from_checkpoint("Qwen/Qwen3-TTS-12Hz-0.6B-...")`.

    checkpoint (directory or hub id) ─► export stage (qwen3_tts_export: torch, the export extra) ─► cache entry
                                        └ once per (checkpoint, precision, decoder); reused while its manifest
                                          says this package's format and graph revision and the same source

The runtime itself stays torch-free: only this path imports the export stage, and says what to install when it is
missing. An entry is written under a temporary name and renamed when complete, so an interrupted export is redone,
never loaded. The cache lives in $QWEN3_TTS_CACHE, else ~/.cache/qwen3-tts-onnx.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from .errors import ArtifactError


def cache_root() -> Path:
    return Path(os.environ.get("QWEN3_TTS_CACHE") or Path.home() / ".cache" / "qwen3-tts-onnx").expanduser()


def _variant(precision: str, decoder: str) -> str:
    return precision + ("" if decoder == "fp32" else f"-dec{decoder.removeprefix('int')}")


def ensure_export(model, precision: str = "fp32", decoder: str = "fp32", cache_dir=None) -> Path:
    """The artifacts directory of `model` (a checkpoint directory or hub id) at `precision`/`decoder`, exported
    now unless the cache holds a current one."""
    try:
        from qwen3_tts_export.checkpoint import CheckpointError, resolve
        from qwen3_tts_export.export import ExportCheckError, export_all
        from qwen3_tts_export.precision import DECODER_PRECISIONS, PRECISIONS, is_current, make_variant
    except ImportError as e:
        raise ArtifactError(f"from_checkpoint exports the checkpoint first, which needs the export stage and torch "
                            f"({e}): `pip install 'qwen3-tts-onnx[export]'`, or export on another machine with `make "
                            f"export MODEL=...` and load that directory with from_pretrained") from e
    if precision not in PRECISIONS or decoder not in DECODER_PRECISIONS:
        raise ArtifactError(f"precision must be one of {PRECISIONS} and decoder one of {DECODER_PRECISIONS}, got "
                            f"{precision!r} and {decoder!r}")
    try:
        source = resolve(model).resolve()  # a hub id is downloaded here (its snapshot folder names the commit)
    except CheckpointError as e:
        raise ArtifactError(str(e)) from e
    name = re.sub(r"[^A-Za-z0-9._-]+", "--", str(model).strip("/")).strip("-.") or "checkpoint"
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:10]
    out = Path(cache_dir or cache_root()).expanduser() / f"{name}-{digest}" / _variant(precision, decoder)
    if is_current(out, precision, decoder, source):
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        export_all(source, partial)
        if precision != "fp32" or decoder != "fp32":
            make_variant(partial, partial, precision, decoder)
    except (CheckpointError, ExportCheckError) as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise ArtifactError(f"exporting {model} failed: {e}") from e
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out

