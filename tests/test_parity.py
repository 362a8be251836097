"""End-to-end parity with the official qwen-tts 0.1.1 on tiny random checkpoints: greedy codes identical,
waveforms within 1e-4."""
from __future__ import annotations

import contextlib

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


def test_kv_cache_growth_keeps_the_codes(models, monkeypatch):
    """A KV cache that starts with room for 3 frames, and so moves to larger buffers on the way, gives the same
    codes (a batch: left padding included)."""
    from qwen3_tts_onnx import generate

    m = models("cv_wide")
    rows = m.ours._custom_voice_rows(["Short.", "A somewhat longer sentence."], ["ryan", "vivian"],
                                     ["english", "auto"], None, True)
    want = _ours(m, rows)
    grown = []
    real = generate.KVCache.reserve

    def reserve(self, total):
        before = self.capacity
        real(self, total)
        if self.capacity != before:
            grown.append(self.capacity)

    monkeypatch.setattr(generate, "KV_HEADROOM", 3)
    monkeypatch.setattr(generate.KVCache, "reserve", reserve)
    _assert_same(want, _ours(m, rows))
    assert len(grown) >= 2, grown  # the first allocation, then at least one move


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


# ------------------------------------------------------------------------------------------------ EOS
# The fixtures shrink the EOS row of the codec head (random_checkpoint eos_scale=0.1) so that greedy runs reach
# max_new_tokens and compare many frames. Here that row is scaled back up by the same power of two in the official
# model and in our talker graph (exact in float32 on both sides), so greedy runs end on EOS: no new export needed.
EOS_BOOST = 32.0


@contextlib.contextmanager
def _official_eos_boosted(ref):
    w = ref.model.talker.codec_head.weight
    eos = ref.model.config.talker_config.codec_eos_token_id
    saved = w.data[eos].clone()
    with torch.no_grad():
        w.data[eos] *= EOS_BOOST
    try:
        yield
    finally:
        with torch.no_grad():
            w.data[eos] = saved


def _ours_eos_boosted(m, tmp_path):
    """Our runtime with a talker graph whose codec head has the EOS row scaled as in _official_eos_boosted."""
    import onnx
    from onnx import numpy_helper

    from qwen3_tts_onnx import Qwen3TTS
    from qwen3_tts_onnx import sessions as sessions_mod

    cfg = m.ours.cfg
    h, vocab, eos = cfg["hidden_size"], cfg["vocab_size"], cfg["codec_eos_token_id"]
    graph = onnx.load(str(m.ours.artifacts.graph_path("talker")))
    heads = [i for i in graph.graph.initializer if sorted(i.dims) == sorted([h, vocab])]
    assert len(heads) == 1, [(i.name, list(i.dims)) for i in heads]  # the codec head, stored [H, V] or [V, H]
    w = numpy_helper.to_array(heads[0]).copy()
    assert w.dtype == np.float32
    if w.shape == (h, vocab):
        w[:, eos] *= np.float32(EOS_BOOST)
    else:
        w[eos] *= np.float32(EOS_BOOST)
    heads[0].CopyFrom(numpy_helper.from_array(w, heads[0].name))
    onnx.save(graph, str(tmp_path / "talker_eos.onnx"))
    talker = sessions_mod.create(tmp_path / "talker_eos.onnx")
    return Qwen3TTS.from_sessions(m.art, {**m.ours.sessions, "talker": talker})


def test_eos_ends_rows_at_different_frames(models, tmp_path):
    """Greedy generation that really stops on EOS, in a batch whose rows end at different frames (one row runs to
    max_new_tokens): the official package and ours give the same codes, EOS excluded, and the same lengths."""
    m = models("cv_wide")
    texts = ["Short.", TEXT, "A somewhat longer sentence, with a comma in it.", "Good morning to you all."]
    speakers, langs, max_new = ["ryan", "vivian", "dylan", "eric"], ["auto"] * 4, 24
    ours = _ours_eos_boosted(m, tmp_path)
    with _official_eos_boosted(m.ref):
        want = official_codes(m.ref, texts, langs, speakers, max_new_tokens=max_new)
    got = ours.generate_codes(ours._custom_voice_rows(texts, speakers, langs, None, True), max_new_tokens=max_new,
                              **GREEDY)
    lengths = [w.shape[0] for w in want]
    # N sampled tokens give N - 1 frames: a row that ran to the budget has max_new - 1 frames; fewer means EOS.
    ended = [n for n in lengths if n < max_new - 1]
    assert len(ended) >= 3 and len(set(ended)) == len(ended), f"EOS must end rows at different frames: {lengths}"
    assert [g.shape[0] for g in got] == lengths
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


# ------------------------------------------------------------------------------------------------ public API
def test_generate_voice_design_matches_official(models):
    m = models("vd")
    ins = "A bright, young female voice, speaking quickly."
    kw = dict(max_new_tokens=20, **GREEDY)
    want, sr_want = m.ref.generate_voice_design(TEXT, instruct=ins, language="english", **kw)
    got, sr = m.ours.generate_voice_design(TEXT, instruct=ins, language="english", **kw)
    assert sr == sr_want == 24000
    assert got[0].dtype == np.float32 and got[0].shape == want[0].shape == (19 * 1920,)
    assert np.abs(got[0] - want[0]).max() <= 1e-4


@pytest.mark.parametrize("name", ["cv_wide", "cv_equal", "vd"])
def test_supported_speakers_and_languages(models, name):
    m = models(name)
    assert m.ours.get_supported_speakers() == m.ref.get_supported_speakers()
    assert m.ours.get_supported_languages() == m.ref.get_supported_languages()
    if name != "vd":
        assert "ryan" in m.ours.get_supported_speakers() and "auto" in m.ours.get_supported_languages()


# A generation_config.json unlike the shipped one: greedy, its own top_k, temperature, repetition penalty and token
# budget; top_p and the subtalker_* sampling values are absent, so they come from the hard defaults. A penalty
# below 1 favours repeats: it changes these greedy codes, where any penalty above 1 would not (no group-0 code
# repeats within their 11 frames).
GEN_CONFIG = {"do_sample": False, "subtalker_dosample": False, "top_k": 7, "temperature": 0.7,
              "repetition_penalty": 0.5, "max_new_tokens": 12}


def test_generation_kwargs_merge_with_generation_config(models, tmp_path, monkeypatch):
    """Explicit kwarg -> the checkpoint's generation_config.json -> hard default, as the official wrapper's
    _merge_generate_kwargs resolves them; the export carries generation_config.json into the manifest."""
    import json
    from dataclasses import asdict

    from qwen3_tts_onnx import Qwen3TTS

    m = models("cv_wide")
    shipped = json.loads((m.ckpt / "generation_config.json").read_text())
    assert m.ours.generate_defaults == shipped == m.ref.generate_defaults
    # the same artifacts with another generation config in the manifest (graph files linked, not copied)
    art = tmp_path / "onnx"
    art.mkdir()
    for f in m.art.iterdir():
        if f.name != "manifest.json":
            (art / f.name).symlink_to(f)
    manifest = json.loads((m.art / "manifest.json").read_text())
    manifest["generation_defaults"] = GEN_CONFIG
    (art / "manifest.json").write_text(json.dumps(manifest))
    ours = Qwen3TTS.from_sessions(art, m.ours.sessions, verify=True)
    monkeypatch.setattr(m.ref, "generate_defaults", dict(GEN_CONFIG))  # what the official reads from the file

    for kw in ({}, {"max_new_tokens": 6, "repetition_penalty": 1.05}, {"do_sample": True, "top_p": 0.8},
               {"temperature": None, "subtalker_temperature": 0.5, "subtalker_top_k": 3}):
        assert asdict(ours._options(dict(kw))) == m.ref._merge_generate_kwargs(**kw), kw
    assert asdict(ours._options({}))["top_p"] == 1.0 and asdict(ours._options({}))["subtalker_top_k"] == 50

    # end to end with no generation kwargs at all: greedy, repetition penalty 0.5 and 12 tokens from the config
    want, _ = m.ref.generate_custom_voice(TEXT, speaker="ryan", language="english")
    got, _ = ours.generate_custom_voice(TEXT, speaker="ryan", language="english")
    assert got[0].shape == want[0].shape == (11 * 1920,)
    assert np.abs(got[0] - want[0]).max() <= 1e-4
    other, _ = ours.generate_custom_voice(TEXT, speaker="ryan", language="english", repetition_penalty=1.05)
    assert np.abs(other[0] - got[0]).max() > 1e-2  # the config's penalty changes the codes: it was really used
