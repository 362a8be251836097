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
