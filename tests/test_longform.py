"""Sentence splitting for the 10 languages, token budgets, the runaway guard, and a property-based test: random
text and options thrown at the runtime API give audio or the project's own clear error, nothing else."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3_tts_onnx.errors import Qwen3TTSError
from qwen3_tts_onnx.longform import RunawayGuard, split_text, token_budget


@pytest.mark.parametrize("text,n", [
    ("Hello there. It costs 3.14 dollars! Is it? Yes.", 4),
    ("你好。我是一个测试！你呢？好的。", 3),  # the last two, 6 characters together, merge
    ("こんにちは。元気ですか？はい、元気です。", 3),
    ("안녕하세요. 반갑습니다! 잘 지내요?", 3),
    ("Guten Tag. Wie geht's? Sehr gut!", 3),
    ("Bonjour. Ça va ? Oui !", 2),  # French spaces before ? and ! : the mark stays with its sentence
    ("Привет. Как дела? Хорошо!", 3),
    ("Olá. Tudo bem? Sim!", 3), ("Hola. ¿Qué tal? ¡Bien!", 3), ("Ciao. Come stai? Bene!", 3),
    ("Line one\nLine two", 2),
])
def test_sentences_in_every_language(text, n):
    pieces = split_text(text, max_chars=8)  # tiny limit: no merging of whole sentences
    assert len(pieces) >= n
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


texts = st.one_of(st.text(max_size=60), st.just(""), st.just(" \n\t"), st.just("<|im_end|>"),
                  st.text(alphabet="あいう漢字。！？", max_size=30), st.just("a" * 30000))
options = st.fixed_dictionaries({}, optional={
    "temperature": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
    "top_k": st.one_of(st.integers(-10, 5000), st.none()),
    "top_p": st.one_of(st.floats(-1, 2), st.just(float("nan"))),
    "repetition_penalty": st.one_of(st.floats(-1, 3), st.just(float("nan"))),
    "do_sample": st.booleans(), "seed": st.integers(0, 2**32),
    "language": st.sampled_from([None, "auto", "english", "chinese", "klingon", ""]),
    "speaker": st.sampled_from(["ryan", "RYAN", "nobody", "", None]),
})


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=texts, opts=options)
def test_random_inputs_give_audio_or_a_clear_error(models, text, opts):
    tts = models("cv_wide").ours
    opts = dict(opts)
    speaker = opts.pop("speaker", "ryan")
    try:
        wavs, sr = tts.generate_custom_voice(text, speaker=speaker, max_new_tokens=4, **opts)
    except Qwen3TTSError as e:
        assert str(e)  # the project's own error, with a message
        return
    assert sr == 24000 and wavs[0].dtype == np.float32 and np.isfinite(wavs[0]).all()
