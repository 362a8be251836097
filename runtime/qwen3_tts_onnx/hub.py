"""Exported artifacts from the Hugging Face hub: `Qwen3TTS.from_pretrained("owner/name")`.

A hub repository of exported artifacts holds what `make export` writes (manifest.json, the graphs, tokenizer.json),
at its root or in a subfolder, one per variant for example (`owner/name/int4`, or `subfolder="int4"`). Publishing
an export is one command: `hf upload owner/name artifacts/X [int4]`.

    owner/name[/subfolder] ─► manifest.json (and config.json, to recognise a checkpoint) ─► the files the
                              manifest lists, from the manifest's own commit ─► a local directory

Only the listed files are fetched, all from the commit the manifest came from, so a repository updated between the
two requests cannot mix versions; huggingface_hub keeps them in its cache (HF_HOME), so the next load needs no
network (HF_HUB_OFFLINE=1, or local_files_only=True, forbids it). The sha256 check of artifacts.load() then runs
on the downloaded files as on a local export.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import contracts as C
from .errors import ArtifactError

EXPORT_HINT = "`make export MODEL=<hub id or checkpoint dir> OUT=<dir>` writes one"

CHECKPOINT_CONFIG = "config.json"  # what an official checkpoint has at its root and an export has not


def split_hub_id(text: str) -> tuple[str, str | None] | None:
    """'owner/name' or 'owner/name/sub/folder' -> (repo id, subfolder or None); None if it cannot be a hub id."""
    if text.startswith((".", "/", "~", "\\")) or "\\" in text or ":" in text:
        return None
    parts = text.split("/")
    if len(parts) < 2 or not all(parts):
        return None
    return "/".join(parts[:2]), "/".join(parts[2:]) or None


def fetch(repo_id: str, subfolder: str | None = None, revision: str | None = None, cache_dir=None,
          local_files_only: bool = False) -> Path:
    """Download (or find in the cache) one export from the hub; returns its local directory."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub import errors as hf

    offline = local_files_only or constants.HF_HUB_OFFLINE
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    where = repo_id + (f" (subfolder {subfolder})" if subfolder else "") + (f" at revision {revision}" if revision
                                                                           else "")
    kw = dict(repo_id=repo_id, cache_dir=cache_dir, local_files_only=local_files_only)
    try:
        snap = Path(snapshot_download(revision=revision, allow_patterns=[prefix + C.MANIFEST,
                                                                         prefix + CHECKPOINT_CONFIG], **kw))
        root = snap / prefix
        manifest = root / C.MANIFEST
        if not manifest.is_file():
            if (root / CHECKPOINT_CONFIG).is_file():
                raise ArtifactError(
                    f"{where} is a Qwen3-TTS checkpoint, not exported ONNX artifacts: export it first with "
                    f"`make export MODEL={repo_id} [PRECISION=int4]` (or `python -m qwen3_tts_export --model "
                    f"{repo_id} --out DIR`) and load the directory it writes")
            raise ArtifactError(f"{where} on the Hugging Face hub has no {C.MANIFEST}: it holds no exported "
                                f"Qwen3-TTS artifacts (name the subfolder that does, e.g. owner/name/int4)")
        try:
            files = list(json.loads(manifest.read_text(encoding="utf-8")).get("files", {}))
        except (ValueError, AttributeError) as e:
            raise ArtifactError(f"{where}: its {C.MANIFEST} is not a valid manifest ({e}); re-upload the export") from e
        # snapshot folders are named by commit: the listed files come from the manifest's own commit
        snap = Path(snapshot_download(revision=snap.name, allow_patterns=[prefix + f for f in files], **kw))
    except hf.RepositoryNotFoundError as e:  # also a gated or private repository without access
        raise ArtifactError(f"no local directory {repo_id}{'/' + subfolder if subfolder else ''}, and no repository "
                            f"{repo_id!r} on the Hugging Face hub that this login may read: check the path or the id, "
                            f"log in (`hf auth login`) for a private or gated repository, or export ({EXPORT_HINT})"
                            ) from e
    except hf.RevisionNotFoundError as e:
        raise ArtifactError(f"{repo_id} has no revision {revision!r} on the Hugging Face hub") from e
    except hf.LocalEntryNotFoundError as e:
        raise ArtifactError(f"no local directory {repo_id}{'/' + subfolder if subfolder else ''}, and as a hub id "
                            f"{where} is not in the local Hugging Face cache and the hub cannot be reached "
                            f"({'offline mode' if offline else 'no network'}): connect once to download it, or "
                            f"pass a local artifacts directory ({EXPORT_HINT})") from e
    except (hf.HfHubHTTPError, OSError) as e:
        raise ArtifactError(f"could not download {where} from the Hugging Face hub ({type(e).__name__}: {e}); "
                            f"check the network, or download it yourself (`hf download {repo_id} --local-dir "
                            f"DIR`) and pass that directory") from e
    root = snap / prefix
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise ArtifactError(f"{where}: {', '.join(missing)} listed in its {C.MANIFEST} but not "
                            f"{'in the local cache' if offline else 'in the repository'}; "
                            f"{'connect once to download them' if offline else 're-upload the export'}")
    return root
