"""Voice cloning (Base models) against the official qwen-tts 0.1.1 on tiny random Base checkpoints: x-vectors
within 1e-4, reference codes identical, greedy clone codes identical in x-vector-only and ICL modes in both text
layouts, the final waveform (after the ICL cut) within 1e-4 and of the same length; saved voice prompts."""
from __future__ import annotations

import numpy as np
import pytest

from audio_clips import write
from oracle import GREEDY, official_clone_codes

TOL = 1e-4
TEXT = "Hello world, this is a cloned voice speaking."
REF_TEXT = "Okay. Yeah. I resent you."


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    out = {}
    for seconds in (1, 5, 12):
        for sr in (16000, 24000, 44100, 48000):
            for ch in (1, 2):
                out[(seconds, sr, ch)] = write(root / f"{seconds}s_{sr}_{ch}ch.wav", seconds, sr, ch,
                                               seed=seconds * 7 + ch)
    return out


def _check_prompt(m, path):
    want = m.ref.create_voice_clone_prompt(ref_audio=str(path), ref_text=REF_TEXT, x_vector_only_mode=False)[0]
    got = m.ours.create_voice_clone_prompt(str(path), ref_text=REF_TEXT)[0]
    xv = want.ref_spk_embedding.numpy()
    assert got.x_vector.shape == xv.shape
    assert np.abs(got.x_vector - xv).max() <= TOL, np.abs(got.x_vector - xv).max()
    np.testing.assert_array_equal(got.ref_codes, want.ref_code.numpy())


@pytest.mark.parametrize("seconds", [1, 5, 12])
@pytest.mark.parametrize("sr", [16000, 24000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_x_vector_and_codes_match_official(models, clips, seconds, sr, channels):
    _check_prompt(models("base_equal"), clips[(seconds, sr, channels)])


def test_x_vector_and_codes_wide(models, clips):
    _check_prompt(models("base_wide"), clips[(12, 44100, 2)])


def test_array_input_equals_file_input(models, clips):
    import soundfile as sf

    m = models("base_equal")
    wav, sr = sf.read(str(clips[(5, 48000, 2)]), dtype="float32")
    a = m.ours.create_voice_clone_prompt((wav, sr), ref_text=REF_TEXT)[0]
    b = m.ours.create_voice_clone_prompt(str(clips[(5, 48000, 2)]), ref_text=REF_TEXT)[0]
    np.testing.assert_array_equal(a.x_vector, b.x_vector)
    np.testing.assert_array_equal(a.ref_codes, b.ref_codes)
    raw = open(clips[(5, 48000, 2)], "rb").read()
    c = m.ours.create_voice_clone_prompt(raw, x_vector_only_mode=True)[0]
    np.testing.assert_array_equal(a.x_vector, c.x_vector)


# (reference clip, text layout): a 1 s reference gives fewer frames than text tokens in the streaming layout
# (leftover text trails), a 5 s one more frames than text tokens (the text is padded).
CLONE_CASES = [("base_equal", 1, False), ("base_equal", 5, False), ("base_equal", 1, True),
               ("base_wide", 5, False), ("base_wide", 1, True), ("base_wide", 5, True)]


@pytest.mark.parametrize("name,seconds,nsm", CLONE_CASES)
def test_icl_clone_greedy_codes_and_waveform(models, clips, name, seconds, nsm):
    m = models(name)
    path = str(clips[(seconds, 24000, 1)])
    items = m.ref.create_voice_clone_prompt(ref_audio=path, ref_text=REF_TEXT, x_vector_only_mode=False)
    want = official_clone_codes(m.ref, [TEXT], ["english"], items, non_streaming_mode=nsm, max_new_tokens=32)[0]
    rows, prompts = m.ours._voice_clone_rows(TEXT, "english", path, REF_TEXT, False, None, nsm)
    got = m.ours.generate_codes(rows, max_new_tokens=32, **GREEDY)[0]
    assert got.shape[0] >= 30
    np.testing.assert_array_equal(got, want)
    wref, sr = m.ref.generate_voice_clone(TEXT, language="english", ref_audio=path, ref_text=REF_TEXT,
                                          non_streaming_mode=nsm, max_new_tokens=32, **GREEDY)
    wours, sr2 = m.ours.generate_voice_clone(TEXT, language="english", ref_audio=path, ref_text=REF_TEXT,
                                             non_streaming_mode=nsm, max_new_tokens=32, **GREEDY)
    assert sr == sr2 == 24000 and wours[0].shape == wref[0].shape
    assert np.abs(wours[0] - wref[0]).max() <= TOL


@pytest.mark.parametrize("name,nsm", [("base_equal", False), ("base_wide", True)])
def test_x_vector_only_clone_greedy_codes(models, clips, name, nsm):
    m = models(name)
    path = str(clips[(5, 16000, 2)])
    items = m.ref.create_voice_clone_prompt(ref_audio=path, x_vector_only_mode=True)
    want = official_clone_codes(m.ref, [TEXT], ["auto"], items, non_streaming_mode=nsm)[0]
    rows, _ = m.ours._voice_clone_rows(TEXT, None, path, None, True, None, nsm)
    got = m.ours.generate_codes(rows, max_new_tokens=40, **GREEDY)[0]
    assert got.shape[0] >= 30
    np.testing.assert_array_equal(got, want)


def test_batch_of_clones_equals_one_by_one(models, clips):
    m = models("base_equal")
    texts = ["Short one.", TEXT, "A third, somewhat longer sentence for the batch."]
    refs = [str(clips[(1, 24000, 1)]), str(clips[(5, 44100, 1)]), str(clips[(1, 48000, 2)])]
    items = m.ours.create_voice_clone_prompt(refs, ref_text=[REF_TEXT, None, REF_TEXT],
                                             x_vector_only_mode=[False, True, False])
    batch, _ = m.ours.generate_voice_clone(texts, language="english", voice_clone_prompt=items, max_new_tokens=20,
                                           **GREEDY)
    for text, item, wav in zip(texts, items, batch):
        alone, _ = m.ours.generate_voice_clone(text, language="english", voice_clone_prompt=item, max_new_tokens=20,
                                               **GREEDY)
        assert alone[0].shape == wav.shape
        assert np.abs(alone[0] - wav).max() <= 1e-5


def test_saved_prompt_gives_the_same_codes(models, clips, tmp_path):
    from qwen3_tts_onnx import VoicePrompt

    m = models("base_equal")
    path = str(clips[(5, 24000, 1)])
    for xonly in (False, True):
        prompt = m.ours.create_voice_clone_prompt(path, ref_text=REF_TEXT, x_vector_only_mode=xonly)[0]
        file = prompt.save(tmp_path / f"voice_{xonly}.qvoice")
        loaded = VoicePrompt.load(file)
        from_audio, _ = m.ours._voice_clone_rows(TEXT, "english", path, REF_TEXT, xonly, None, False)
        from_file, _ = m.ours._voice_clone_rows(TEXT, "english", None, None, False, str(file), False)
        a = m.ours.generate_codes(from_audio, max_new_tokens=20, **GREEDY)[0]
        b = m.ours.generate_codes(from_file, max_new_tokens=20, **GREEDY)[0]
        np.testing.assert_array_equal(a, b)
        assert loaded.ref_text == REF_TEXT and loaded.x_vector_only_mode == xonly
        np.testing.assert_array_equal(loaded.x_vector, prompt.x_vector)


def test_clone_runs_with_torch_blocked(models, clips, tmp_path):
    """Voice cloning (audio front end, encoders, saved prompts) needs neither torch nor librosa."""
    import subprocess
    import sys
    import textwrap

    from test_runtime_without_torch import BLOCKER

    m = models("base_equal")
    path = str(clips[(5, 44100, 2)])
    script = BLOCKER + textwrap.dedent(f"""
        import numpy as np
        from qwen3_tts_onnx import Qwen3TTS
        tts = Qwen3TTS.from_pretrained({str(m.art)!r})
        wavs, sr = tts.generate_voice_clone("Hello there.", language="english", ref_audio={path!r},
                                            ref_text={REF_TEXT!r}, do_sample=False, subtalker_dosample=False,
                                            max_new_tokens=12)
        np.save({str(tmp_path / "wav.npy")!r}, wavs[0])
        assert "torch" not in sys.modules and "librosa" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    ref, _ = m.ours.generate_voice_clone("Hello there.", language="english", ref_audio=path, ref_text=REF_TEXT,
                                         max_new_tokens=12, **GREEDY)
    np.testing.assert_array_equal(np.load(tmp_path / "wav.npy"), ref[0])


@pytest.mark.parametrize("xonly", [False, True])
def test_streamed_clone(models, clips, xonly):
    """Streaming a clone gives the non-streaming codes; in ICL mode the reference codes warm the decoder, so the
    chunks are the exact decode of reference + generated codes minus exactly ref_frames * 1920 samples."""
    m = models("base_equal")
    prompt = m.ours.create_voice_clone_prompt(str(clips[(5, 24000, 1)]), ref_text=REF_TEXT,
                                              x_vector_only_mode=xonly)[0]
    kw = dict(language="english", voice_clone_prompt=prompt, max_new_tokens=24, **GREEDY)
    chunks = list(m.ours.stream_voice_clone(TEXT, first_chunk_frames=2, chunk_frames=7, **kw))
    rows, _ = m.ours._voice_clone_rows(TEXT, "english", None, None, False, prompt, False)
    codes = m.ours.generate_codes(rows, max_new_tokens=24, **GREEDY)[0]
    np.testing.assert_array_equal(np.concatenate([c.codes for c in chunks]), codes)
    assert chunks[0].frame_start == 0 and chunks[0].frame_end == 2
    streamed = np.concatenate([c.samples for c in chunks])
    full = codes if xonly else np.concatenate([prompt.ref_codes, codes])
    want = m.ours.decode(full, "exact")[full.shape[0] * 1920 - codes.shape[0] * 1920:]
    assert streamed.shape == want.shape == (codes.shape[0] * 1920,)
    assert np.abs(streamed - want).max() <= 1.5e-5


# (ref_len, gen_len) frames: the first four hit the rounding edge of the official cut
# int(ref_len / total_len * wav_len), which keeps one reference sample (cut = ref_len * 1920 - 1); the last two do not.
CUT_CASES = [(13, 10), (15, 7), (17, 6), (1, 48), (13, 4), (5, 20)]


def test_icl_cut_matches_official_at_the_rounding_edge(models, monkeypatch):
    """decode_clone cuts the reference part off exactly where the official generate_voice_clone does, including
    the lengths whose float arithmetic keeps one extra sample. Both run their own cut code on a stand-in decode
    (sample i has value i) and stand-in codes, so any (ref_len, gen_len) is cheap."""
    import torch

    from qwen3_tts_export.reference import qwen_tts
    from qwen3_tts_onnx import VoicePrompt

    VoiceClonePromptItem = qwen_tts().VoiceClonePromptItem

    m = models("base_equal")
    h = m.ours.cfg["hidden_size"]
    gen = {}

    def ramp(frames):
        return np.arange(frames * 1920, dtype=np.float32)  # exact in float32 below 2**24 samples

    monkeypatch.setattr(m.ref.model, "generate", lambda **kw: ([torch.zeros(gen["len"], 16, dtype=torch.long)], None))
    monkeypatch.setattr(m.ref.model.speech_tokenizer, "decode",
                        lambda items: ([ramp(it["audio_codes"].shape[0]) for it in items], 24000))
    monkeypatch.setattr(m.ours.decoder, "decode",  # decodes from frame `start` on (the reference is skipped through)
                        lambda codes, mode="windowed", start=0: ramp(codes.shape[0])[start * 1920:])
    extra = []
    for ref_len, gen_len in CUT_CASES:
        gen["len"] = gen_len
        item = VoiceClonePromptItem(ref_code=torch.zeros(ref_len, 16, dtype=torch.long),
                                    ref_spk_embedding=torch.zeros(h), x_vector_only_mode=False, icl_mode=True,
                                    ref_text=REF_TEXT)
        want = m.ref.generate_voice_clone(TEXT, language="english", voice_clone_prompt=[item])[0][0]
        prompt = VoicePrompt(np.zeros(h, np.float32), np.zeros((ref_len, 16), np.int64), REF_TEXT, False, "0b6")
        got = m.ours.decode_clone(np.zeros((gen_len, 16), np.int64), prompt)
        np.testing.assert_array_equal(got, want)
        extra.append(want.shape[0] - gen_len * 1920)
    assert extra == [1, 1, 1, 1, 0, 0], extra  # the official cut really kept a reference sample in the first four


def test_icl_warm_state_is_computed_once_per_voice(models, clips):
    """The ICL reference warms the streaming decoder once per voice: a second stream with the same voice decodes
    only its own frames (no reference frames), and its audio equals the first stream's."""
    m = models("base_equal")
    prompt = m.ours.create_voice_clone_prompt(str(clips[(1, 16000, 1)]), ref_text=REF_TEXT)[0]
    kw = dict(language="english", voice_clone_prompt=prompt, max_new_tokens=12, first_chunk_frames=2,
              chunk_frames=5, **GREEDY)
    first = np.concatenate([c.samples for c in m.ours.stream_voice_clone(TEXT, **kw)])
    decoded = []
    step = m.ours.decoder.step

    def counting_step(codes, state):
        decoded.append(codes.shape[0])
        return step(codes, state)

    m.ours.decoder.step = counting_step
    try:
        second = list(m.ours.stream_voice_clone(TEXT, **kw))
    finally:
        del m.ours.decoder.step
    np.testing.assert_array_equal(np.concatenate([c.samples for c in second]), first)
    assert prompt.ref_codes.shape[0] > 0
    assert sum(decoded) == sum(c.frame_end - c.frame_start for c in second)  # no reference frame decoded again
