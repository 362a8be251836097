"""Text -> token ids -> talker prompt, exactly as the official package builds it (SPEC §3.1-§3.5).

A prompt position is a text-track id plus a codec-track id (-1 = track absent); the text_embedder graph turns
both rows into embeddings in one run. What is fed after the prompt, one vector per generated frame, is the
"trailing" text (streaming-text layout: the remaining text tokens, then tts_eos; non-streaming: tts_pad).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer

from .errors import InputError

MAX_TEXT_TOKENS = 4096  # ~5 minutes of speech; longer texts should be split (the server splits sentences)
# Checked before tokenizing, so absurd input is refused at once: 16 characters per token, beyond what natural text
# averages in any language (English about 5, Chinese and Japanese about 1-1.5; only long runs of one character, such
# as spaces or dashes, tokenize denser), so a text this long is over MAX_TEXT_TOKENS anyway.
MAX_TEXT_CHARS = 16 * MAX_TEXT_TOKENS


def assistant_text(text: str) -> str:
    return f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"


def instruct_text(instruct: str) -> str:
    return f"<|im_start|>user\n{instruct}<|im_end|>\n"


def reference_text(text: str) -> str:
    """The ICL reference transcript template; its ids [3:-2] are the transcript tokens."""
    return f"<|im_start|>assistant\n{text}<|im_end|>\n"


class TextTokenizer:
    """The exported tokenizer.json (the official local-directory load, regex quirk included) plus input checks."""

    def __init__(self, path):
        self.tok = Tokenizer.from_file(str(path))
        self.added = sorted((t.content for t in self.tok.get_added_tokens_decoder().values()), key=len, reverse=True)

    def check_text(self, text, what: str = "text") -> str:
        if not isinstance(text, str):
            raise InputError(f"{what} must be a string, got {type(text).__name__}")
        if len(text) > MAX_TEXT_CHARS:
            hint = (": split it into sentences and synthesize them one by one, or send it to the server (`qwen3-tts "
                    "serve`, up to 20000 characters a request), which splits long text into sentences itself"
                    if what == "text" else "")
            raise InputError(f"{what} is {len(text)} characters long; the limit is {MAX_TEXT_CHARS} characters "
                             f"({MAX_TEXT_TOKENS} tokens){hint}")
        if not text.strip():
            raise InputError(f"{what} is empty; pass the words to speak")
        for token in self.added:
            if token in text:
                raise InputError(f"{what} contains the special token {token!r}, which would be read as a control "
                                 "token and corrupt the prompt; remove it from the text")
        return text

    def encode(self, s: str) -> list[int]:
        return self.tok.encode(s, add_special_tokens=False).ids


@dataclass
class PromptRows:
    """One sample's prompt: parallel text/codec id rows, and the trailing text ids fed per generated frame.

    Voice cloning puts vectors on the codec track (the x-vector, the reference frames): `codec_vectors` holds
    (first position, float32 [n, H]) pairs added to the embeddings there, where codec_ids is -1."""
    text_ids: list
    codec_ids: list
    trailing_ids: list  # text ids; the runtime feeds tts_pad once they run out
    codec_vectors: list = field(default_factory=list)


@dataclass
class ICLReference:
    """The in-context part of a voice-clone prompt: transcript ids (reference_text(...) ids [3:-2]) and the reference
    frames as talker inputs (each the sum of its 16 group embeddings, from the codec_embedder graph)."""
    text_ids: list
    frame_embeds: np.ndarray  # [F, H]


def language_id(cfg: dict, language: str, speaker: str | None) -> int | None:
    """The codec language id for a validated (lower-case) language, with the dialect override (SPEC §3.3)."""
    lid = None if language == "auto" else cfg["codec_language_id"][language]
    if speaker and language in ("chinese", "auto"):
        dialect = cfg["spk_is_dialect"].get(speaker, False)
        if dialect:
            lid = cfg["codec_language_id"][dialect]
    return lid


def build_rows(cfg: dict, text_ids: list, language: str, speaker: str | None, instruct_ids: list | None,
               non_streaming_mode: bool, x_vector: np.ndarray | None = None,
               icl: ICLReference | None = None) -> PromptRows:
    """text_ids: ids of assistant_text(text); instruct_ids: ids of instruct_text(instruct) or None.
    speaker (CustomVoice) or x_vector (Base) fills the speaker slot; icl adds the reference transcript and frames."""
    lid = language_id(cfg, language, speaker)
    if lid is None:
        prefix = [cfg["codec_nothink_id"], cfg["codec_think_bos_id"], cfg["codec_think_eos_id"]]
    else:
        prefix = [cfg["codec_think_id"], cfg["codec_think_bos_id"], lid, cfg["codec_think_eos_id"]]
    slot = [cfg["spk_id"][speaker]] if speaker else ([-1] if x_vector is not None else [])
    codec = prefix + slot + [cfg["codec_pad_id"], cfg["codec_bos_id"]]
    pad, bos, eos = cfg["tts_pad_token_id"], cfg["tts_bos_token_id"], cfg["tts_eos_token_id"]
    codec_pad, codec_bos = cfg["codec_pad_id"], cfg["codec_bos_id"]

    text_row, codec_row, vectors = [], [], []
    if instruct_ids:
        text_row += list(instruct_ids)
        codec_row += [-1] * len(instruct_ids)
    text_row += text_ids[:3]  # <|im_start|>assistant\n
    codec_row += [-1] * 3
    n = len(codec)
    text_row += [pad] * (n - 2) + [bos]
    if x_vector is not None:
        vectors.append((len(codec_row) + len(prefix), np.asarray(x_vector, np.float32)[None]))
    codec_row += codec[:-1]
    body = text_ids[3:-5]
    if icl is not None:
        # ┌ text track: reference transcript, target text, tts_eos ┐ against ┌ codec track: bos, reference frames ┐
        t_ids = list(icl.text_ids) + body + [eos]
        t1, t2 = len(t_ids), icl.frame_embeds.shape[0] + 1
        if non_streaming_mode:  # all text first (over codec pad), then the frames (over tts_pad)
            text_row += t_ids
            codec_row += [codec_pad] * t1
            text_row += [pad] * t2
            trailing = [pad]
        else:  # text and frames side by side; leftover text trails, or tts_pad pads the text
            text_row += t_ids[:t2] + [pad] * max(0, t2 - t1)
            trailing = t_ids[t2:] if t1 > t2 else [pad]
        vectors.append((len(codec_row) + 1, icl.frame_embeds))
        codec_row += [codec_bos] + [-1] * (t2 - 1)
    elif non_streaming_mode:
        text_row += body + [eos, pad]
        codec_row += [codec_pad] * (len(body) + 1) + [codec_bos]
        trailing = [pad]
    else:
        text_row.append(body[0])
        codec_row.append(codec_bos)
        trailing = body[1:] + [eos]
    return PromptRows(text_row, codec_row, trailing, vectors)


def right_pad(embeds: list, hidden: int):
    """Per-sample [L_i, H] prompts -> embeds [B, L, H] (zeros after each row), attention_mask [B, L] (1 = real):
    each row's positions start at 0, as the official model's left-padded rows do (it counts positions from the
    first real one), and as ONNX Runtime's GroupQueryAttention keeps rows of different lengths (seqlens_k)."""
    lmax = max(e.shape[0] for e in embeds)
    b = len(embeds)
    out = np.zeros((b, lmax, hidden), dtype=np.float32)
    mask = np.zeros((b, lmax), dtype=np.int64)
    for i, e in enumerate(embeds):
        out[i, :e.shape[0]] = e
        mask[i, :e.shape[0]] = 1
    return out, mask
