"""Long text: split into sentences (then clauses) for all 10 languages, a token budget per piece, and a guard
against runaway generation.

Sentences end at . ! ? … and their full-width forms 。！？ (Chinese, Japanese), and at line breaks; closing quotes and
brackets after the mark stay with their sentence. A Latin mark ends a sentence only where a space or the end follows
(so 3.14 stays whole), or, for ! and ?, Chinese or Japanese text; and a full stop or an ellipsis does not where a
lowercase word follows ("e.g. this", "wait... what"), nor after a single letter ("U.S.", "J.", "z. B.") or a title
("Dr.", "Mr."): a missed end only makes a longer piece, a wrong one a pause in mid-sentence. Pieces longer than
`max_chars` are cut at clause marks (, ; : before a space, so 1,000 and 3:45 stay whole; – and - between spaces; — ，
、 ； ： anywhere), then at spaces, then anywhere. Short neighbours are merged up to `max_chars` (a part that had to be
cut starts a new piece), joined with a space where the text had one (so Chinese and Japanese join without one,
Korean with one): each piece is a natural unit the model reads with its own prosody.
"""
from __future__ import annotations

import re

import numpy as np

DEFAULT_MAX_CHARS = 220
_CLOSERS = "\"'”’»›)）\\]］」』】〕〉》"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # kana and ideographs: written without spaces
# A Latin end: its marks, closing quotes (French » may follow a space), then a space or the end of the text. A CJK
# end (or a half-width ! ? right before Chinese or Japanese text): its marks and closers, nothing needed after.
_END = re.compile(rf"(?P<latin>[.!?…]+)(?:[{_CLOSERS}]|\s+[»›](?=\s|$))*(?=\s|$)"
                  rf"|(?:[。！？．]+|[!?]+(?=[{_CJK}]))[{_CLOSERS}]*|\n\s*")
_CLAUSE = re.compile(r"(?<=[,;:])(?=\s)|(?<=[，、；：—])|(?<=\s[-–])(?=\s)")
_SPACE = re.compile(r"(?<=\S)(?=\s)")
_OPENERS = "\"'“‘«‹(（[［「『【〔〈《¿¡"
_TITLES = {"mr", "mrs", "ms", "dr", "prof", "sr", "sra", "srta", "hr", "nr", "mme", "mlle", "st", "vs"}


def _is_end(text: str, m: re.Match) -> bool:
    """Whether a Latin end mark really ends a sentence (see the module docstring)."""
    marks = m.group("latin")
    if marks.strip(".…"):
        return True  # ! or ?
    after = text[m.end():m.end() + 64].lstrip()
    if after[:1].islower():
        return False
    if marks != ".":
        return True
    word = text[max(0, m.start() - 32):m.start()].rsplit(None, 1)[-1:] or [""]
    word = word[0].lstrip(_OPENERS)
    return not (re.fullmatch(r"(?:[^\W\d_]\.)*[^\W\d_]", word) or word.lower() in _TITLES)


def _parts(text: str, start: int, end: int, cuts) -> list[tuple[int, int]]:
    """text[start:end] cut at the positions `cuts` -> the (start, end) spans of its parts, stripped, none empty."""
    out, at = [], start
    for cut in [*cuts, end]:
        s, e = at, cut
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
        at = cut
    return out


def _pieces(text: str, s: int, e: int, max_chars: int, level: int = 0) -> list[tuple[str, int]]:
    """text[s:e] -> (piece, end in text) of at most max_chars characters: the parts at this level (0 sentences,
    1 clauses, 2 words, 3 characters), each joining the piece before it while that fits; a part too long is cut at
    the next level, and its first piece starts a new piece (no half clause is glued to the part before it)."""
    if level == 3:
        return [(text[i:min(i + max_chars, e)], min(i + max_chars, e)) for i in range(s, e, max_chars)]
    cuts = ([m.end() for m in _END.finditer(text, s, e) if not m.group("latin") or _is_end(text, m)] if level == 0
            else [m.end() for m in (_CLAUSE if level == 1 else _SPACE).finditer(text, s, e)])
    out: list[tuple[str, int]] = []
    for ps, pe in _parts(text, s, e, cuts):
        if pe - ps > max_chars:
            out += _pieces(text, ps, pe, max_chars, level + 1)
            continue
        if out:
            joined = out[-1][0] + (" " if ps > out[-1][1] else "") + text[ps:pe]  # a space where the text has one
            if len(joined) <= max_chars:
                out[-1] = (joined, pe)
                continue
        out.append((text[ps:pe], pe))
    return out


def split_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Text -> pieces of at most max_chars characters, in order, none empty; their concatenation keeps every
    non-space character of the text."""
    return [p for p, _ in _pieces(text, 0, len(text), max_chars)]


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
