"""Voice-clone prompts: a reference voice encoded once (x-vector, and for ICL the reference codes and transcript),
saved to a file and reused without the reference audio (SPEC §3.8).

The file is a numpy .npz archive without pickles: `x_vector` [H] float32, `ref_codes` [F, 16] int64 (ICL only)
and a JSON header naming the model it belongs to.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import contracts as C
from .errors import InputError

VOICE_FORMAT = "qwen3-tts-onnx voice prompt"
VOICE_VERSION = 1


@dataclass
class VoicePrompt:
    """The official `VoiceClonePromptItem`, numpy-backed: x-vector, ICL reference codes and transcript."""
    x_vector: np.ndarray  # [H] float32: the speaker encoder's output for the reference audio
    ref_codes: np.ndarray | None  # [F, 16] int64: the reference audio's codes (ICL mode only)
    ref_text: str | None  # the reference transcript (ICL mode only)
    x_vector_only_mode: bool
    model_size: str  # "0b6" | "1b7": the x-vector lives in that model's talker space

    @property
    def icl_mode(self) -> bool:
        return not self.x_vector_only_mode

    # aliases with the official item's field names
    @property
    def ref_spk_embedding(self) -> np.ndarray:
        return self.x_vector

    @property
    def ref_code(self) -> np.ndarray | None:
        return self.ref_codes

    def save(self, path) -> Path:
        path = Path(path)
        header = {"format": VOICE_FORMAT, "version": VOICE_VERSION, "model_type": "base",
                  "model_size": self.model_size, "hidden_size": int(self.x_vector.shape[0]),
                  "x_vector_only_mode": bool(self.x_vector_only_mode), "ref_text": self.ref_text}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                  "x_vector": self.x_vector.astype(np.float32)}
        if self.ref_codes is not None:
            arrays["ref_codes"] = self.ref_codes.astype(np.int64)
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz" to the name
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "VoicePrompt":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"voice prompt file {path} does not exist; create one with `qwen3-tts voice create`")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                x_vector = np.array(z["x_vector"], dtype=np.float32)
                ref_codes = np.array(z["ref_codes"], dtype=np.int64) if "ref_codes" in z.files else None
        except Exception as e:
            raise InputError(f"{path} is not a voice prompt file ({e}); create one with `qwen3-tts voice create`") from None
        if header.get("format") != VOICE_FORMAT:
            raise InputError(f"{path} is not a voice prompt file; create one with `qwen3-tts voice create`")
        if header.get("version") != VOICE_VERSION:
            raise InputError(f"{path} is a voice prompt of version {header.get('version')}, this runtime reads "
                             f"version {VOICE_VERSION}; create it again from the reference audio")
        prompt = cls(x_vector, ref_codes, header.get("ref_text"), bool(header["x_vector_only_mode"]),
                     header["model_size"])
        prompt.validate()
        return prompt

    def validate(self) -> None:
        if self.x_vector.ndim != 1 or not np.isfinite(self.x_vector).all():
            raise InputError("voice prompt x-vector must be a finite 1-D vector")
        if self.icl_mode:
            if not self.ref_text:
                raise InputError("an ICL voice prompt needs its reference transcript (ref_text)")
            c = self.ref_codes
            if c is None or c.ndim != 2 or c.shape[1] != C.NUM_CODE_GROUPS or c.shape[0] == 0:
                raise InputError(f"an ICL voice prompt needs reference codes [frames, {C.NUM_CODE_GROUPS}]")
            if c.min() < 0 or c.max() >= C.CODEBOOK_SIZE:
                raise InputError(f"voice prompt reference codes must lie in 0..{C.CODEBOOK_SIZE - 1}")

    def check_model(self, model_size: str, hidden_size: int) -> None:
        """Refuse a prompt made by a model of another size (its x-vector lives in another talker's space)."""
        if self.model_size != model_size or self.x_vector.shape[0] != hidden_size:
            raise InputError(f"this voice prompt was made with a {self.model_size} Base model (x-vector of "
                             f"{self.x_vector.shape[0]}), but the model is {model_size} (hidden size {hidden_size}); "
                             "create the prompt again with this model from the reference audio")


OFFICIAL_DICT_KEYS = ("ref_code", "ref_spk_embedding", "x_vector_only_mode", "icl_mode")


def _numpy(x, dtype, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (bf16 included), without importing torch
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise InputError(f"voice_clone_prompt dict: {what} is not a numeric array ({e})") from None


def prompts_from_dict(d: dict, model_size: str) -> list[VoicePrompt]:
    """The official dict form of voice_clone_prompt (what the official `_prompt_items_to_voice_clone_prompt` builds:
    lists `ref_code`, `ref_spk_embedding`, `x_vector_only_mode`, `icl_mode`, one entry per voice) -> VoicePrompts.
    The official dict carries no transcript, so the official package fails on ICL entries; here an optional
    `ref_text` list supplies it."""
    missing = [k for k in OFFICIAL_DICT_KEYS if k not in d]
    unknown = sorted(set(d) - set(OFFICIAL_DICT_KEYS) - {"ref_text"})
    if missing or unknown:
        raise InputError(f"voice_clone_prompt dict needs the keys {list(OFFICIAL_DICT_KEYS)} (+ optional ref_text), "
                         f"one list entry per voice; missing {missing}, unknown {unknown}")
    entries = {k: d.get(k) for k in (*OFFICIAL_DICT_KEYS, "ref_text")}
    n = len(entries["ref_spk_embedding"]) if isinstance(entries["ref_spk_embedding"], (list, tuple)) else 0
    for k in ("ref_code", "ref_text"):  # the official dict holds ref_code None when no entry is ICL
        if entries[k] is None:
            entries[k] = [None] * n
    if n == 0 or any(not isinstance(v, (list, tuple)) or len(v) != n for v in entries.values()):
        raise InputError("voice_clone_prompt dict: ref_code, ref_spk_embedding, x_vector_only_mode, icl_mode (and "
                         "ref_text) must be lists of the same non-zero length, one entry per voice")
    prompts = []
    for i, (code, xvec, xonly, icl, rtext) in enumerate(zip(*entries.values())):
        if not isinstance(xonly, (bool, np.bool_)) or not isinstance(icl, (bool, np.bool_)) or xonly == icl:
            raise InputError(f"voice_clone_prompt dict entry {i}: x_vector_only_mode and icl_mode must be booleans, "
                             f"exactly one of them True; got {xonly!r} and {icl!r}")
        if xonly and code is not None:
            raise InputError(f"voice_clone_prompt dict entry {i}: an x-vector-only entry must have ref_code None "
                             "(the official package would still put its codes in front of the decode)")
        if icl and (code is None or not rtext):
            raise InputError(f"voice_clone_prompt dict entry {i} is ICL: it needs its ref_code and its transcript in "
                             "a ref_text list (the official dict has no transcript, and the official package fails "
                             "on it); or pass the items of create_voice_clone_prompt")
        codes = None if code is None else _numpy(code, np.int64, f"ref_code[{i}]")
        prompt = VoicePrompt(_numpy(xvec, np.float32, f"ref_spk_embedding[{i}]"), codes, rtext if icl else None,
                             bool(xonly), model_size)
        prompt.validate()
        prompts.append(prompt)
    return prompts
