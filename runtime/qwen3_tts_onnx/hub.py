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
from .errors import EXPORT_HINT, ArtifactError

CHECKPOINT_CONFIG = "config.json"  # what an official checkpoint has at its root and an export has not


def split_hub_id(text: str) -> tuple[str, str | None] | None:
    """'owner/name' or 'owner/name/sub/folder' -> (repo id, subfolder or None); None if it cannot be a hub id: a
    path-like string, an id huggingface_hub would refuse, a '..' in the subfolder, or a first part that is a local
    directory (a mistyped path under it, such as 'artifacts/0.6b-int5', is no hub id)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = text.rstrip("/")
    if text.startswith((".", "/", "~", "\\")) or "\\" in text or ":" in text:
        return None
    parts = text.split("/")
    if len(parts) < 2 or not all(parts) or ".." in parts or Path(parts[0]).is_dir():
        return None
    repo = "/".join(parts[:2])
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return None
    return repo, "/".join(parts[2:]) or None


def fetch(repo_id: str, subfolder: str | None = None, revision: str | None = None, cache_dir=None,
          local_files_only: bool = False) -> Path:
    """Download (or find in the cache) one export from the hub; returns its local directory. HF_HUB_OFFLINE=1
    counts as local_files_only."""
    import glob

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub import errors as hf

    if subfolder and ".." in subfolder.split("/"):
        raise ArtifactError(f"subfolder {subfolder!r} leaves the repository; name a folder inside it")
    # passed explicitly: huggingface_hub reads HF_HUB_OFFLINE when it makes its HTTP session, which may be older
    offline = local_files_only or constants.HF_HUB_OFFLINE
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    asked = repo_id + (f"/{subfolder}" if subfolder else "")  # as a local path it would have been
    where = repo_id + (f" (subfolder {subfolder})" if subfolder else "") + (f" at revision {revision}" if revision
                                                                           else "")
    kw = dict(repo_id=repo_id, cache_dir=cache_dir, local_files_only=offline)
    try:
        snap = Path(snapshot_download(revision=revision, allow_patterns=[glob.escape(prefix + C.MANIFEST),
                                                                         glob.escape(prefix + CHECKPOINT_CONFIG)],
                                      **kw))
        root = snap / prefix
        manifest = root / C.MANIFEST
        if not manifest.is_file():
            if (root / CHECKPOINT_CONFIG).is_file():
                raise ArtifactError(
                    f"{where} is a Qwen3-TTS checkpoint, not exported ONNX artifacts: export it first with "
                    f"`make export MODEL={repo_id} [PRECISION=int4]` (or `python -m qwen3_tts_export --model "
                    f"{repo_id} --out DIR`) and load the directory it writes, or let "
                    f"Qwen3TTS.from_checkpoint({repo_id!r}) export it once into a cache")
            if offline:
                raise ArtifactError(f"{where} has no {C.MANIFEST} in the local Hugging Face cache (offline mode): "
                                    f"connect once to download it, or name the subfolder that holds the export")
            raise ArtifactError(f"{where} on the Hugging Face hub has no {C.MANIFEST}: it holds no exported "
                                f"Qwen3-TTS artifacts (name the subfolder that does, e.g. owner/name/int4)")
        try:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files")
        except (ValueError, AttributeError) as e:
            raise ArtifactError(f"{where}: its {C.MANIFEST} is not a valid manifest ({e}); re-upload the export") from e
        if not isinstance(files, dict):
            raise ArtifactError(f"{where}: its {C.MANIFEST} lists no files; re-upload the export")
        # snapshot folders are named by commit: the listed files come from the manifest's own commit
        snap = Path(snapshot_download(revision=snap.name, allow_patterns=[glob.escape(prefix + f) for f in files],
                                      **kw))
    except ArtifactError:
        raise
    except hf.GatedRepoError as e:
        raise ArtifactError(f"{repo_id} is a gated repository on the Hugging Face hub: accept its conditions on its "
                            f"page, with the account you are logged in as (`hf auth login`)") from e
    except hf.RepositoryNotFoundError as e:  # also a private repository without access
        raise ArtifactError(f"no local directory {asked}, and no repository "
                            f"{repo_id!r} on the Hugging Face hub that this login may read: check the path or the id, "
                            f"log in (`hf auth login`) for a private repository, or export ({EXPORT_HINT})") from e
    except hf.RevisionNotFoundError as e:
        raise ArtifactError(f"{repo_id} has no revision {revision or 'main'!r} on the Hugging Face hub") from e
    except hf.LocalEntryNotFoundError as e:
        raise ArtifactError(f"no local directory {asked}, and as a hub id "
                            f"{where} is not in the local Hugging Face cache and the hub cannot be reached "
                            f"({'offline mode' if offline else 'no network'}): connect once to download it, or "
                            f"pass a local artifacts directory ({EXPORT_HINT})") from e
    except Exception as e:  # HTTP, TLS, proxy, transfer (hf_xet) and 1.x's httpx errors alike
        raise ArtifactError(f"could not download {where} from the Hugging Face hub ({type(e).__name__}: {e}); "
                            f"check the network and your login, or download it yourself (`hf download {repo_id} "
                            f"--local-dir DIR`) and pass that directory") from e
    root = snap / prefix
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        why = ("offline mode: connect once to download them" if offline else
               "missing from the repository, or the hub could not be reached: connect and retry, or re-upload the export")
        raise ArtifactError(f"{where}: {', '.join(missing)} listed in its {C.MANIFEST} but not downloaded ({why})")
    return root
