"""Find, load and verify exported artifacts: a local directory or a hub id (hub.py), manifest, graph files and
their hashes."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import contracts as C
from . import hub
from .errors import EXPORT_HINT, ArtifactError


@dataclass
class Artifacts:
    root: Path
    manifest: dict

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def model_type(self) -> str:
        return self.manifest["model"]["type"]

    @property
    def model_size(self) -> str:
        return self.manifest["model"]["size"]

    def graph_path(self, name: str) -> Path:
        return self.root / self.manifest["graphs"][name]["file"]

    @property
    def graph_names(self) -> list[str]:
        return list(C.graph_specs(self.config))

    def spec(self, name: str) -> C.GraphSpec:
        """The contract's spec for this graph, built from the manifest's dimensions."""
        return C.graph_specs(self.config)[name]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def locate(model, revision: str | None = None, subfolder: str | None = None, cache_dir=None,
           local_files_only: bool = False) -> Path:
    """model: an artifacts directory, or a Hugging Face hub id 'owner/name' (optionally '/subfolder') that is no
    local path, fetched by hub.py. Returns the local directory."""
    root = Path(model).expanduser()
    if root.exists():
        if revision is not None:
            raise ArtifactError(f"revision={revision!r} applies to hub ids, and {root} is a local directory")
        return root / subfolder if subfolder else root
    hub_id = hub.split_hub_id(str(model))
    if hub_id is None:
        raise ArtifactError(f"no artifacts directory at {root}; {EXPORT_HINT}")
    repo, sub = hub_id
    if sub and subfolder:
        raise ArtifactError(f"{model!r} names subfolder {sub!r} and subfolder={subfolder!r} names another; give one")
    return hub.fetch(repo, sub or subfolder, revision, cache_dir, local_files_only)


def load(root: str | Path, verify_hashes: bool = True) -> Artifacts:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ArtifactError(f"no artifacts directory at {root}; {EXPORT_HINT}")
    mpath = root / C.MANIFEST
    if not mpath.is_file():
        hint = (" (this looks like a checkpoint, not exported artifacts)" if (root / "config.json").is_file() else "")
        raise ArtifactError(f"{root} has no {C.MANIFEST}{hint}; {EXPORT_HINT}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{mpath} is not valid JSON ({e}); re-export: {EXPORT_HINT}") from e
    version = manifest.get("format_version")
    if version != C.FORMAT_VERSION:
        raise ArtifactError(f"{mpath} has format version {version!r}, this runtime reads version {C.FORMAT_VERSION}; "
                            f"re-export with the matching qwen3-tts-onnx: {EXPORT_HINT}")
    arts = Artifacts(root, manifest)
    for name, spec in C.graph_specs(arts.config).items():
        if name not in manifest.get("graphs", {}):
            raise ArtifactError(f"{mpath} lists no {name} graph; {EXPORT_HINT}")
        if manifest["graphs"][name] != spec.to_json():
            raise ArtifactError(f"{mpath}: the {name} graph's inputs/outputs differ from what this runtime expects; "
                                f"re-export: {EXPORT_HINT}")
    for fname, info in manifest.get("files", {}).items():
        path = root / fname
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (listed in {C.MANIFEST}); {EXPORT_HINT}")
        if path.stat().st_size != info["bytes"]:
            raise ArtifactError(f"{path} has {path.stat().st_size} bytes, the manifest says {info['bytes']}: the file "
                                f"is truncated or replaced; {EXPORT_HINT}")
        if verify_hashes and sha256_file(path) != info["sha256"]:
            raise ArtifactError(f"{path} does not match its sha256 in {C.MANIFEST}: the file is corrupt or replaced; "
                                f"{EXPORT_HINT}")
    return arts
