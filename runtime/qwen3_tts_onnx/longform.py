"""Long text: split into sentences (then clauses) for all 10 languages, a token budget per piece, and a guard
against runaway generation.

Sentences end at . ! ? … and their full-width forms 。！？ (Chinese, Japanese), at ; ； and at line breaks; a
Latin full stop only counts when a space or the end follows (3.14, e.g. "U.S." mid-word stay whole). Pieces
longer than `max_chars` are cut at clause marks (, ， 、 : ： - —), then at spaces, then anywhere; short
sentences are merged up to `max_chars`, so each piece is a natural unit the model reads with its own prosody.
"""
from __future__ import annotations

import re

import numpy as np

DEFAULT_MAX_CHARS = 220
# A Latin sentence end needs whitespace (or the end) after it; CJK ends and line breaks always end a sentence.
_SENTENCE = re.compile(r"(?<=[.!?…;])[\"'”’)\]]*\s+|(?<=[。！？；])[」』”’）]*|\n+")
_CLAUSE = re.compile(r"(?<=[,，、:：;；—–])\s*|\s+-\s+")


def _cut(piece: str, max_chars: int, pattern: re.Pattern) -> list[str]:
    parts = [p for p in pattern.split(piece) if p and p.strip()]
    out, cur = [], ""
    for p in parts:
        if cur and len(cur) + len(p) + 1 > max_chars:
            out.append(cur)
            cur = ""
        cur = f"{cur} {p}".strip() if cur and not _is_cjk(cur[-1]) else cur + p.strip()
    if cur:
        out.append(cur)
    return out


def _is_cjk(ch: str) -> bool:
    return "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uff00" <= ch <= "\uffef"


def split_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Text -> pieces of at most max_chars characters, in order, none empty; their concatenation keeps every
    non-space character of the text."""
    pieces = []
    for sentence in (s.strip() for s in _SENTENCE.split(text)):
        if not sentence:
            continue
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _cut(sentence, max_chars, _CLAUSE):
            if len(clause) <= max_chars:
                pieces.append(clause)
                continue
            for words in _cut(clause, max_chars, re.compile(r"\s+")):
                pieces += [words[i:i + max_chars] for i in range(0, len(words), max_chars)]
    merged: list[str] = []
    for p in pieces:  # merge short neighbours into natural-length pieces
        if merged and len(merged[-1]) + len(p) + 1 <= max_chars:
            merged[-1] = merged[-1] + ("" if _is_cjk(p[0]) else " ") + p
        else:
            merged.append(p)
    return merged


def token_budget(num_text_tokens: int, cap: int) -> int:
    """max_new_tokens for a piece: speech runs about 3-4 text tokens per second (12.5 frames), so 10 frames per
    token plus 2 s of slack is 2.5-3x what the text needs, yet stops a piece that never ends within seconds."""
    return int(min(cap, 10 * num_text_tokens + 25))


class RunawayGuard:
    """Flags generation that has stopped making speech: the same frame (all 16 codes) `max_repeats` times in a row,
    or group-0 codes cycling with a period of 2-4 frames for `max_cycle_frames` frames."""

    def __init__(self, max_repeats: int = 38, max_cycle_frames: int = 75):
        self.max_repeats, self.max_cycle_frames = max_repeats, max_cycle_frames
        self._frames: list = []
        self.reason: str | None = None

    def feed(self, codes: np.ndarray) -> bool:
        """Add frames [n, 16]; True once generation looks runaway (then `reason` says why)."""
        self._frames.extend(np.asarray(codes).tolist())
        f = self._frames[-(self.max_cycle_frames + 4):]
        self._frames = f
        n = self.max_repeats
        if len(f) >= n and all(x == f[-1] for x in f[-n:]):
            self.reason = f"the same frame repeated {n} times ({n / 12.5:.1f} s)"
        else:
            g0 = [x[0] for x in f]
            m = self.max_cycle_frames
            for period in (2, 3, 4):
                if len(g0) >= m + period and all(g0[-i] == g0[-i - period] for i in range(1, m + 1)):
                    self.reason = f"group-0 codes cycling with period {period} for {m / 12.5:.1f} s"
                    break
        return self.reason is not None
