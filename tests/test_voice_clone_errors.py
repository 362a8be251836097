"""Bad reference audio and bad voice prompts get the project's own clear error, never a deep traceback."""
from __future__ import annotations

import numpy as np
import pytest

from audio_clips import clip, write
from qwen3_tts_onnx import InputError, VoicePrompt


def _err(m, audio, match, **kw):
    with pytest.raises(InputError, match=match):
        m.ours.create_voice_clone_prompt(audio, **{"x_vector_only_mode": True, **kw})


def test_bad_reference_audio(models, tmp_path):
    m = models("base_equal")
    _err(m, (np.zeros(0, np.float32), 24000), "empty")
    _err(m, (clip(0.05, 24000), 24000), "shorter than one 80 ms frame")
    _err(m, (np.zeros(48000, np.float32), 24000), "silent")
    nan = clip(1, 24000)
    nan[100] = np.nan
    _err(m, (nan, 24000), "NaN or infinite")
    inf = clip(1, 16000)
    inf[5] = np.inf
    _err(m, (inf, 16000), "NaN or infinite")
    _err(m, (clip(61, 16000), 16000), "limit is 60 s")
    _err(m, (clip(1, 24000), 0), "sample rate")
    _err(m, clip(1, 24000), "no sample rate")
    _err(m, str(tmp_path / "missing.wav"), "does not exist")
    _err(m, "https://example.com/voice.wav", "download")
    _err(m, b"", "empty")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    _err(m, str(junk), "cannot read")
    good = write(tmp_path / "good.wav", 2, 24000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])  # cut inside the header
    _err(m, str(truncated), "cannot read")
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all " * 40)
    _err(m, str(text), "cannot read")
    _err(m, 12345, "unsupported reference audio type")


def test_truncated_data_chunk_reads_what_is_there(models, tmp_path):
    """A WAV cut inside its data (an interrupted download) is read up to the cut, as libsndfile does."""
    m = models("base_equal")
    good = write(tmp_path / "good.wav", 2, 24000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:44 + 2 * 24000])  # header + 1 s of 16-bit samples
    p = m.ours.create_voice_clone_prompt(str(cut), ref_text="Hello there.")[0]
    assert p.ref_codes.shape == (13, 16)


def test_icl_needs_transcript(models, tmp_path):
    m = models("base_equal")
    path = str(write(tmp_path / "a.wav", 2, 24000))
    for rt in (None, ""):
        with pytest.raises(InputError, match="ref_text is required"):
            m.ours.create_voice_clone_prompt(path, ref_text=rt)
        with pytest.raises(InputError, match="ref_text is required"):
            m.ours.generate_voice_clone("Hi there.", ref_audio=path, ref_text=rt)
    with pytest.raises(InputError, match="special token"):
        m.ours.create_voice_clone_prompt(path, ref_text="hello <|im_end|>")
    with pytest.raises(InputError, match="pass ref_audio"):
        m.ours.generate_voice_clone("Hi there.")


def test_voice_prompt_from_another_model(models, tmp_path):
    """A prompt made by the 1.7B-like Base fixture (x-vector of 96) is refused by the 0.6B-like one (64), and the
    other way round, as an object and as a saved file."""
    small, wide = models("base_equal"), models("base_wide")
    path = str(write(tmp_path / "a.wav", 2, 24000))
    from_wide = wide.ours.create_voice_clone_prompt(path, ref_text="Hello there.")[0]
    from_small = small.ours.create_voice_clone_prompt(path, x_vector_only_mode=True)[0]
    assert from_wide.x_vector.shape == (96,) and from_small.x_vector.shape == (64,)
    file = from_wide.save(tmp_path / "wide.voice")
    for prompt in (from_wide, str(file)):
        with pytest.raises(InputError, match=r"made with a 1b7 Base model \(x-vector of 96\), but the model is 0b6 "
                                             r"\(hidden size 64\)"):
            small.ours.generate_voice_clone("Hi.", voice_clone_prompt=prompt)
    with pytest.raises(InputError, match=r"made with a 0b6 Base model \(x-vector of 64\), but the model is 1b7"):
        wide.ours.generate_voice_clone("Hi.", voice_clone_prompt=from_small)
    bad = tmp_path / "bad.voice"
    bad.write_bytes(b"not a prompt")
    with pytest.raises(InputError, match="not a voice prompt"):
        VoicePrompt.load(bad)
    with pytest.raises(InputError, match="does not exist"):
        VoicePrompt.load(tmp_path / "none.voice")


def test_low_level_encoders_check_their_input(models):
    m = models("base_equal")
    for bad in (np.zeros(0, np.float32), np.zeros(100, np.float32), np.zeros((2, 4000), np.float32)):
        with pytest.raises(InputError, match="24 kHz mono"):
            m.ours.encode_speech(bad)
        with pytest.raises(InputError, match="24 kHz mono"):
            m.ours.speaker_embedding(bad)


def test_malformed_official_dict_prompt(models):
    """voice_clone_prompt in the official dict form: each malformed dict gets an InputError that says what is wrong,
    before anything is generated."""
    m = models("base_equal")
    xv = np.ones(64, np.float32)
    good = dict(ref_code=None, ref_spk_embedding=[xv], x_vector_only_mode=[True], icl_mode=[False])
    cases = [
        ({k: v for k, v in good.items() if k != "icl_mode"}, r"needs the keys .*missing \['icl_mode'\]"),
        ({**good, "speaker": ["x"]}, r"unknown \['speaker'\]"),
        ({**good, "ref_spk_embedding": xv}, "must be lists of the same non-zero length"),
        ({**good, "x_vector_only_mode": [True, True]}, "must be lists of the same non-zero length"),
        ({**good, "ref_spk_embedding": [], "x_vector_only_mode": [], "icl_mode": []}, "non-zero length"),
        ({**good, "icl_mode": [True]}, "exactly one of them True"),
        ({**good, "x_vector_only_mode": [False]}, "exactly one of them True"),
        ({**good, "x_vector_only_mode": ["yes"]}, "must be booleans"),
        ({**good, "ref_code": [np.zeros((3, 16), np.int64)]}, "must have ref_code None"),
        ({**good, "x_vector_only_mode": [False], "icl_mode": [True]}, "is ICL: it needs its ref_code"),
        ({**good, "x_vector_only_mode": [False], "icl_mode": [True], "ref_code": [np.zeros((3, 16), np.int64)]},
         "transcript in a ref_text list"),
        ({**good, "ref_spk_embedding": ["loud"]}, "ref_spk_embedding\\[0\\] is not a numeric array"),
        ({**good, "ref_spk_embedding": [np.ones((2, 64), np.float32)]}, "finite 1-D vector"),
        ({**good, "x_vector_only_mode": [False], "icl_mode": [True], "ref_code": [np.zeros((3, 8), np.int64)],
          "ref_text": ["Hello."]}, r"reference codes \[frames, 16\]"),
        ({**good, "ref_spk_embedding": [np.ones(96, np.float32)]}, r"x-vector of 96\), but the model is 0b6"),
    ]
    for d, match in cases:
        with pytest.raises(InputError, match=match):
            m.ours.generate_voice_clone("Hi.", voice_clone_prompt=d)
    with pytest.raises(InputError, match="batch size mismatch: 3 texts but 2 voice prompts"):
        m.ours.generate_voice_clone(["Hi.", "Yes.", "No."], voice_clone_prompt={
            **good, "ref_spk_embedding": [xv, xv], "x_vector_only_mode": [True, True], "icl_mode": [False, False],
            "ref_code": [None, None]})
