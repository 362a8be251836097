"""End-to-end parity with the official qwen-tts 0.1.1 on tiny random checkpoints: greedy codes identical,
waveforms within 1e-4."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oracle import GREEDY, official_codes

MIN_FRAMES = 30
TEXT = "Hello world, this is a test of the parity harness."

SPEAKER_CASES = [  # every preset speaker; both text layouts; explicit languages, auto, and the dialect override
    ("serena", "chinese", True), ("vivian", "auto", False), ("uncle_fu", "chinese", False),
    ("ryan", "english", True), ("aiden", "english", False), ("ono_anna", "japanese", True),
    ("sohee", "korean", False), ("eric", "chinese", True), ("eric", "auto", False),
    ("dylan", "auto", True), ("dylan", "english", False), ("ryan", "german", False), ("Ryan", "French", True),
]


def _ours(m, rows, max_new_tokens=40):
    return m.ours.generate_codes(rows, max_new_tokens=max_new_tokens, **GREEDY)


def _assert_same(want, got):
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.shape == g.shape, (w.shape, g.shape)
        assert w.shape[0] >= MIN_FRAMES
        np.testing.assert_array_equal(w, g)


@pytest.mark.parametrize("speaker,language,nsm", SPEAKER_CASES)
def test_custom_voice_speakers(models, speaker, language, nsm):
    m = models("cv_wide")
    want = official_codes(m.ref, [TEXT], [language], [speaker], non_streaming_mode=nsm)
    _assert_same(want, _ours(m, m.ours._custom_voice_rows(TEXT, speaker, language, None, nsm)))


@pytest.mark.parametrize("nsm", [True, False])
def test_custom_voice_instruct(models, nsm):
    m = models("cv_wide")
    ins = "Speak slowly, in a calm and warm voice."
    want = official_codes(m.ref, [TEXT], ["english"], ["aiden"], [ins], non_streaming_mode=nsm)
    _assert_same(want, _ours(m, m.ours._custom_voice_rows(TEXT, "aiden", "english", ins, nsm)))


@pytest.mark.parametrize("speaker,language,nsm", [("ryan", "english", True), ("eric", "auto", False),
                                                  ("sohee", "korean", True)])
def test_custom_voice_equal_width(models, speaker, language, nsm):
    m = models("cv_equal")
    want = official_codes(m.ref, [TEXT], [language], [speaker], non_streaming_mode=nsm)
    _assert_same(want, _ours(m, m.ours._custom_voice_rows(TEXT, speaker, language, None, nsm)))


@pytest.mark.parametrize("language,nsm", [("auto", True), ("english", False), ("chinese", True)])
def test_voice_design(models, language, nsm):
    m = models("vd")
    ins = "A deep, gravelly male voice, slightly amused."
    want = official_codes(m.ref, [TEXT], [language], None, [ins], non_streaming_mode=nsm)
    _assert_same(want, _ours(m, m.ours._voice_design_rows(TEXT, ins, language, nsm)))


@pytest.mark.parametrize("nsm", [True, False])
def test_batch_of_three_equals_one_by_one(models, nsm):
    m = models("cv_wide")
    texts = ["Short.", "A somewhat longer sentence, with a comma in it.", "这是一个用于测试批处理的中文句子。"]
    speakers, langs = ["ryan", "vivian", "dylan"], ["english", "auto", "chinese"]
    batch = _ours(m, m.ours._custom_voice_rows(texts, speakers, langs, None, nsm))
    singles = [_ours(m, m.ours._custom_voice_rows(t, s, la, None, nsm))[0] for t, s, la in zip(texts, speakers, langs)]
    _assert_same(singles, batch)
    _assert_same(official_codes(m.ref, texts, langs, speakers, non_streaming_mode=nsm), batch)


def test_waveform_matches_official_generate(models):
    m = models("cv_wide")
    kw = dict(max_new_tokens=40, **GREEDY)
    want, sr_want = m.ref.generate_custom_voice(TEXT, speaker="ryan", language="english", **kw)
    got, sr = m.ours.generate_custom_voice(TEXT, speaker="ryan", language="english", **kw)
    assert sr == sr_want == 24000
    assert got[0].dtype == np.float32 and got[0].shape == want[0].shape
    assert np.abs(got[0] - want[0]).max() <= 1e-4


@pytest.mark.parametrize("frames", [1, 299, 300, 301, 650])
def test_windowed_decode_matches_official(models, frames):
    m = models("cv_wide")
    codes = np.random.default_rng(frames).integers(0, 2048, size=(frames, 16), dtype=np.int64)
    want, _ = m.ref.model.speech_tokenizer.decode([{"audio_codes": torch.from_numpy(codes)}])
    got = m.ours.decode(codes)
    assert got.shape == want[0].shape == (frames * 1920,)
    assert np.abs(got - want[0]).max() <= 1e-4


@pytest.mark.parametrize("frames", [120, 650])
def test_exact_decode_is_one_pass_of_the_official_decoder(models, frames):
    """decode_mode="exact" equals the official decoder run once over the whole sequence (no 300/25 windows), and
    the windowed default up to 300 frames."""
    m = models("cv_wide")
    codes = np.random.default_rng(frames + 1).integers(0, 2048, size=(frames, 16), dtype=np.int64)
    with torch.no_grad():
        want = m.ref.model.speech_tokenizer.model.decoder(torch.from_numpy(codes.T[None].copy()))[0, 0].numpy()
    got = m.ours.decode(codes, decode_mode="exact")
    assert got.shape == want.shape == (frames * 1920,)
    assert np.abs(got - want).max() <= 1e-4
    windowed = m.ours.decode(codes)
    if frames <= 300:
        assert np.abs(got - windowed).max() <= 1e-5
    else:  # the windows' seams: a real difference past frame 300, none before
        assert np.abs(got[:300 * 1920] - windowed[:300 * 1920]).max() <= 1e-5
        assert np.abs(got - windowed).max() > 1e-3
