"""Sentence splitting for the 10 languages (exact pieces; any text keeps its characters), token budgets, the runaway
guard, and a property-based test: random text and options thrown at the runtime API (generate_* and stream_*,
CustomVoice and VoiceDesign) give audio or the project's own clear error, nothing else."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3_tts_onnx.errors import Qwen3TTSError
from qwen3_tts_onnx.longform import RunawayGuard, split_text, token_budget


SPLIT_CASES = [
    # abbreviations, a decimal point and a closing quote; each wrong end would glue its first half to the short
    # sentence before it ("Yes. See e.g.", "Yes. See e.g. the U.S.")
    ("en", 'Yes. See e.g. the U.S. map! It costs 3.14 dollars. He said "Stop." Was it Dr. Lee?', 22,
     ["Yes.", "See e.g. the U.S. map!", "It costs 3.14 dollars.", 'He said "Stop."', "Was it Dr. Lee?"]),
    ("en", "one two three, four five six; seven eight", 16, ["one two three,", "four five six;", "seven eight"]),
    ("en", "It was 1,000 dollars, or so they say.", 21, ["It was 1,000 dollars,", "or so they say."]),
    ("en", "Title\nFirst line here.\r\nSecond", 16, ["Title", "First line here.", "Second"]),
    ("zh", "你好，欢迎光临。今天天气很好！你要去哪里？他说：“走吧。”好。", 8,
     ["你好，欢迎光临。", "今天天气很好！", "你要去哪里？", "他说：“走吧。”", "好。"]),
    ("zh", "一二三四五，六七八九十，甲乙丙丁。\n第二行", 8, ["一二三四五，", "六七八九十，", "甲乙丙丁。", "第二行"]),
    ("ja", "こんにちは。元気ですか？「はい、元気です。」本当?そうです。", 10,  # half-width ? before kana
     ["こんにちは。", "元気ですか？", "「はい、元気です。」", "本当?そうです。"]),  # merged without a space
    ("ja", "春夏秋冬、東西南北、上下左右。", 8, ["春夏秋冬、", "東西南北、", "上下左右。"]),
    ("ko", "안녕하세요. 반갑습니다! 잘 지내셨어요? 네, 잘 지냈어요.", 10,
     ["안녕하세요.", "반갑습니다!", "잘 지내셨어요?", "네, 잘 지냈어요."]),
    ("ko", "안녕하세요. 반갑습니다! 잘 지내셨어요?", 30, ["안녕하세요. 반갑습니다! 잘 지내셨어요?"]),  # merged with spaces
    ("de", "Ja. Herr Dr. Weber kam an. Wie geht's? Gut. Sehr gut, z. B. heute!", 22,
     ["Ja.", "Herr Dr. Weber kam an.", "Wie geht's? Gut.", "Sehr gut, z. B. heute!"]),
    ("fr", "Bonjour. Ça va ? « Oui. » Il est parti.", 13, ["Bonjour.", "Ça va ?", "« Oui. »", "Il est parti."]),
    ("ru", "Да. Т.е. всё хорошо! Как дела? Привет.", 16, ["Да.", "Т.е. всё хорошо!", "Как дела?", "Привет."]),
    ("pt", "Olá. Tudo bem? Custa 2,50 euros, mais ou menos, por dia.", 20,
     ["Olá. Tudo bem?", "Custa 2,50 euros,", "mais ou menos,", "por dia."]),
    ("es", "Hola. ¿Qué tal? El Sr. García llegó tarde; nadie lo esperaba, así que se fue.", 26,
     ["Hola. ¿Qué tal?", "El Sr. García llegó tarde;", "nadie lo esperaba,", "así que se fue."]),
    ("it", "Sì. Ciao... come stai? Bene, grazie!", 18, ["Sì.", "Ciao... come stai?", "Bene, grazie!"]),
]


@pytest.mark.parametrize("lang,text,max_chars,pieces", SPLIT_CASES)
def test_sentences_in_every_language(lang, text, max_chars, pieces):
    """The exact pieces, sentence by sentence (max_chars below any two neighbours, except where a merge is the
    point), with clause cuts where a sentence is longer than max_chars."""
    assert split_text(text, max_chars) == pieces
    assert re.sub(r"\s", "", "".join(pieces)) == re.sub(r"\s", "", text)


SPLIT_LANGUAGES = {"en": "english", "zh": "chinese", "ja": "japanese", "ko": "korean", "de": "german", "fr": "french",
                   "ru": "russian", "pt": "portuguese", "es": "spanish", "it": "italian"}


def test_split_cases_cover_every_language(models):
    """The cases above are the model's languages, all of them."""
    assert {case[0] for case in SPLIT_CASES} == set(SPLIT_LANGUAGES)
    assert sorted(SPLIT_LANGUAGES.values()) == [x for x in models("cv_wide").ours.get_supported_languages()
                                                 if x != "auto"]


SPLIT_ALPHABET = list("ab Zé漢字かカ한글 3.,;:!?…。！？，、；：—–-\"'”’»«)(」「\n\t")


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=80), st.lists(st.sampled_from(SPLIT_ALPHABET), max_size=80).map("".join)),
       max_chars=st.integers(1, 40))
def test_split_keeps_every_character(text, max_chars):
    """Any text: pieces within max_chars, none empty or padded, every non-space character kept, in order."""
    pieces = split_text(text, max_chars)
    assert all(p and p == p.strip() and len(p) <= max_chars for p in pieces), pieces
    assert re.sub(r"\s", "", "".join(pieces)) == re.sub(r"\s", "", text)


def test_merges_short_and_cuts_long():
    assert split_text("One. Two. Three.", 100) == ["One. Two. Three."]
    long = "word, " * 200
    pieces = split_text(long, 50)
    assert all(0 < len(p) <= 50 for p in pieces) and len(pieces) >= 24
    assert all(len(p) <= 30 for p in split_text("x" * 100, 30))
    assert split_text("   \n  ") == []


def test_token_budget():
    assert token_budget(10, 2048) == 125 and token_budget(1000, 2048) == 2048


def test_runaway_guard():
    g = RunawayGuard(max_repeats=10, max_cycle_frames=20)
    rng = np.random.default_rng(0)
    assert not g.feed(rng.integers(0, 2048, (50, 16)))
    assert g.feed(np.tile(rng.integers(0, 2048, (1, 16)), (10, 1))) and "repeated" in g.reason
    g = RunawayGuard(max_repeats=10, max_cycle_frames=20)
    cyc = rng.integers(0, 2048, (30, 16))
    cyc[:, 0] = np.tile([5, 9, 11], 10)
    assert g.feed(cyc) and "period 3" in g.reason


# Values of every kind, for any argument: the API must refuse them with its own error.
OBJECTS = st.sampled_from([b"x", [1, 2], {"a": 1}, np.array([1.0, 2.0]), np.float32(0.5), np.int64(3), object()])
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8), OBJECTS,
                 OBJECTS)
# (no large float among them: one that got through would run for minutes instead of failing)
NOT_A_BUDGET = st.one_of(st.integers(-2**70, 0), st.floats(max_value=6.5),
                         st.sampled_from([float("nan"), float("inf"), True, "4", b"x", [1], np.float32(2), object()]))
POSITIVE = st.one_of(st.floats(1e-3, 3), st.sampled_from([1e-30, 1e30]))
# Per argument: valid values (any length of budget for stream_*, at most 6 frames for generate_*: the tiny random
# model never ends by itself, so a large budget would run for minutes; streams are closed after their first chunk)
VALID = {
    "text": st.one_of(st.text(min_size=1, max_size=60), st.text(alphabet="あいう漢字。！？", min_size=1, max_size=30)),
    "language": st.sampled_from([None, "auto", "English", "chinese", "Japanese"]),
    "speaker": st.sampled_from(["ryan", "RYAN", "Vivian", None, ""]),
    "instruct": st.one_of(st.none(), st.just(""), st.text(max_size=30)),
    "max_new_tokens": st.integers(1, 6),
    "stream_max_new_tokens": st.one_of(st.none(), st.integers(1, 6), st.sampled_from([10**6, 2**70])),
    "temperature": POSITIVE, "subtalker_temperature": POSITIVE, "repetition_penalty": POSITIVE,
    "top_p": st.floats(1e-30, 1), "subtalker_top_p": st.floats(1e-30, 1),
    "top_k": st.integers(-10, 10**30), "subtalker_top_k": st.integers(-10, 10**30),
    "do_sample": st.booleans(), "subtalker_dosample": st.booleans(), "non_streaming_mode": st.booleans(),
    "seed": st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    "first_chunk_frames": st.integers(1, 3), "chunk_frames": st.integers(1, 3),
    "decode_mode": st.sampled_from(["windowed", "exact"]),
}
# Per argument: wrong values, out of range or of another type (chunk sizes not huge: a stream with a huge budget
# would run to its end before its first chunk; decode_mode only strings: decode.check_mode takes those)
WILD = {
    "text": st.one_of(JUNK, st.lists(st.text(max_size=12), max_size=3),
                      st.sampled_from(["", " \n\t", "<|im_end|>", "Hi <|endoftext|> there", "a" * 65537,
                                       "ab " * 12000])),
    "instruct": st.one_of(JUNK, st.sampled_from(["<|im_start|>", "x" * 70000])),
    "language": st.one_of(JUNK, st.text(max_size=8)), "speaker": st.one_of(JUNK, st.text(max_size=8)),
    "max_new_tokens": NOT_A_BUDGET, "stream_max_new_tokens": NOT_A_BUDGET,
    "first_chunk_frames": st.one_of(st.integers(-3, 0), st.sampled_from([1.5, "2", True, None])),
    "decode_mode": st.sampled_from(["fast", "", "EXACT", None]),
    "num_beams": st.integers(1, 4),  # not an argument of this API
}
# (model, method): four calls in five on the model they are for
CALLS = [("cv_wide", "generate_custom_voice"), ("cv_wide", "stream_custom_voice"), ("vd", "generate_voice_design"),
         ("vd", "stream_voice_design")] * 2 + [("cv_wide", "generate_voice_design"), ("vd", "stream_custom_voice")]


@st.composite
def api_calls(draw):
    """(model, method, keyword arguments): valid arguments (some left out), then up to two of them wild."""
    model, method = draw(st.sampled_from(CALLS))
    stream = method.startswith("stream")
    names = ["text", "max_new_tokens", "language", "instruct", "temperature", "subtalker_temperature",
             "repetition_penalty", "top_p", "subtalker_top_p", "top_k", "subtalker_top_k", "do_sample",
             "subtalker_dosample", "non_streaming_mode", "seed"]
    names += ["speaker"] if method.endswith("custom_voice") else []
    names += ["first_chunk_frames", "chunk_frames"] if stream else ["decode_mode"]
    required = {"text", "max_new_tokens", "speaker", "instruct"}
    budget = "stream_max_new_tokens" if stream else "max_new_tokens"
    args = {n: draw(VALID[budget if n == "max_new_tokens" else n]) for n in names
            if n in required or draw(st.booleans())}
    for n in draw(st.lists(st.sampled_from(names + ["num_beams"]), max_size=2, unique=True)):
        args[n] = draw(WILD[budget if n == "max_new_tokens" else n] if n in WILD else JUNK)
    return model, method, args


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(call=api_calls())
def test_random_inputs_give_audio_or_a_clear_error(models, call):
    """Random text, instruct, speaker, language, budget, sampling and chunking values (valid, out of range, or of
    any type) through generate_* and stream_* of a CustomVoice and a VoiceDesign model (a fifth of the calls on
    the wrong one): audio, or the project's own error with a message, and nothing else."""
    model, method, args = call
    args = dict(args)
    text = args.pop("text")
    try:
        out = getattr(models(model).ours, method)(text, **args)
        if method.startswith("stream"):
            first = next(out, None)  # the first chunk (none when the budget gives no frame)
            out.close()
            assert first is None or (first.sample_rate == 24000 and first.samples.dtype == np.float32
                                     and np.isfinite(first.samples).all())
            return
        wavs, sr = out
    except Qwen3TTSError as e:
        assert str(e)  # the project's own error, with a message
        return
    assert sr == 24000 and all(w.dtype == np.float32 and w.ndim == 1 and np.isfinite(w).all() for w in wavs)
