"""Build a random checkpoint and export it the way a user does: through `make export`."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from qwen3_tts_export.random_checkpoint import build

ROOT = Path(__file__).resolve().parents[1]


def build_and_make_export(root: Path, **build_kwargs) -> Path:
    """Checkpoint in root/ckpt, artifacts in root/onnx (via `make export`, with this interpreter's venv)."""
    build(root / "ckpt", size="tiny", **build_kwargs)
    make = shutil.which("make")
    assert make, "make is needed to run `make export`"
    subprocess.run([make, "-C", str(ROOT), "export", f"MODEL={root / 'ckpt'}", f"OUT={root / 'onnx'}",
                    f"BIN={Path(sys.executable).parent}"], check=True)
    return root
