"""Reference audio in every accepted form, read by the runtime's loader (`audio.load`, what voice cloning calls):
lossy containers (OGG Vorbis, Opus, MP3), base64 text, integer PCM arrays, and files libsndfile cannot read; and
the numpy front end (resampling, mel filterbank, log-mel) against librosa and the official `mel_spectrogram`.
No model is needed: these run in milliseconds."""
from __future__ import annotations

import base64
import struct

import numpy as np
import pytest
import soundfile as sf

from audio_clips import clip, write
from qwen3_tts_onnx import InputError
from qwen3_tts_onnx import audio


def _snr_db(got: np.ndarray, want: np.ndarray) -> float:
    return float(10 * np.log10((want ** 2).sum() / ((got - want) ** 2).sum()))


# (format, subtype, sample rate, minimum SNR against the original in dB). libsndfile 1.2.2 measured (mono, stereo):
# Vorbis 24.6, 18.8; MP3 23.2, 22.2; Opus 18.1, 17.3. Alignment is checked separately: on this clip a one-sample
# shift still leaves 12-16 dB.
LOSSY = [("OGG", "VORBIS", 24000, 16), ("MP3", "MPEG_LAYER_III", 24000, 18), ("OGG", "OPUS", 48000, 15)]


@pytest.mark.parametrize("fmt,subtype,sr,min_snr", LOSSY, ids=["ogg-vorbis", "mp3", "ogg-opus"])
@pytest.mark.parametrize("channels", [1, 2])
def test_lossy_containers(tmp_path, fmt, subtype, sr, min_snr, channels):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype}")
    x = clip(2, sr, channels, seed=3)
    path = tmp_path / f"ref.{subtype.lower()}"
    sf.write(str(path), x, sr, format=fmt, subtype=subtype)
    wav, got_sr = audio.load(str(path))
    # exactly libsndfile's decode of the same file, averaged to mono
    decoded, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert got_sr == sr and wav.dtype == np.float32 and wav.ndim == 1
    np.testing.assert_array_equal(wav, decoded.mean(axis=1, dtype=np.float32))
    # and the original, within what the codec loses (same length: libsndfile removes encoder delay and padding)
    mono = x if channels == 1 else x.mean(axis=1)
    assert wav.shape == mono.shape
    assert _snr_db(wav, mono) >= min_snr
    n = mono.shape[0]
    lag = max(range(-40, 41), key=lambda k: float(np.dot(wav[max(k, 0):n + min(k, 0)], mono[max(-k, 0):n - max(k, 0)])))
    assert lag == 0, f"decoded audio is shifted by {lag} samples"
    # the same file as raw bytes reads the same
    np.testing.assert_array_equal(audio.load(path.read_bytes())[0], wav)


def test_base64_string_and_data_uri_equal_the_path(tmp_path):
    path = write(tmp_path / "ref.wav", 1.5, 22050, channels=2, seed=5)
    want, sr = audio.load(str(path))
    text = base64.b64encode(path.read_bytes()).decode("ascii")
    for form in (text, "data:audio/wav;base64," + text):
        got, got_sr = audio.load(form)
        assert got_sr == sr == 22050
        np.testing.assert_array_equal(got, want)
    # an ordinary non-path string stays an error about a missing file, not a base64 decoding attempt
    with pytest.raises(InputError, match="does not exist"):
        audio.load("voice.wav")


@pytest.mark.parametrize("dtype,subtype", [(np.int16, "PCM_16"), (np.int32, "PCM_32"), (np.uint8, "PCM_U8")])
def test_integer_pcm_arrays_are_scaled_as_soundfile_reads_them(tmp_path, dtype, subtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    pcm = rng.integers(info.min, info.max, 4000, endpoint=True).astype(dtype)
    pcm[:2] = [info.min, info.max]
    wav, sr = audio.load((pcm, 16000))
    assert sr == 16000 and wav.dtype == np.float32
    assert wav[0] == -1.0 and wav.min() >= -1.0 and wav.max() <= 1.0
    if info.bits <= 16:  # [-1, 1): the top code is one step below 1 (for int32 float32 rounds it up to 1.0)
        assert wav[1] == wav.max() == 1.0 - 2.0 / (int(info.max) - int(info.min) + 1)
    # exactly the samples soundfile gives for the same integers stored in a WAV of that sample format
    stored = ((pcm.astype(np.int16) - 128) << 8) if dtype == np.uint8 else pcm  # soundfile writes no uint8 arrays
    sf.write(str(tmp_path / "pcm.wav"), stored, 16000, subtype=subtype)
    np.testing.assert_array_equal(wav, sf.read(str(tmp_path / "pcm.wav"), dtype="float32")[0])
    if dtype == np.int16:
        np.testing.assert_array_equal(wav, pcm.astype(np.float32) / 32768)
        stereo, _ = audio.load((np.stack([pcm, pcm // 2], axis=1), 16000))  # [samples, channels]: channel mean
        np.testing.assert_allclose(stereo, (pcm / 32768 + (pcm // 2) / 32768) / 2, rtol=0, atol=1e-7)


def _riff_wav(format_tag: int, payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", format_tag, 1, 24000, 24000 * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _m4a(payload: bytes) -> bytes:
    ftyp = b"M4A " + struct.pack(">I", 0) + b"M4A mp42isom"
    return (struct.pack(">I", 8 + len(ftyp)) + b"ftyp" + ftyp
            + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload)


def test_containers_libsndfile_cannot_read(tmp_path):
    """An MP4/M4A (AAC) file, a WAV whose codec libsndfile lacks (AAC in RIFF, format tag 0x00FF) and a file
    named .mp3 holding an HTML error page (a failed download) are refused with the project's error, which names
    the file and says what it holds and which formats are read."""
    payload = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    cases = {
        "voice.m4a": (_m4a(payload), "MP4/M4A"),
        "voice_aac.wav": (_riff_wav(0x00FF, payload), "WAV"),
        "voice.mp3": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n" * 40, "text"),
    }
    for name, (content, holds) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for form in (str(path), content):
            with pytest.raises(InputError) as e:
                audio.load(form)
            msg = str(e.value)
            assert "cannot read" in msg and holds in msg and "WAV, FLAC, OGG" in msg, msg
            assert "does not exist" not in msg, msg  # libsndfile's misleading wording for unknown content
            if isinstance(form, str):
                assert name in msg


def test_mel_filterbank_equals_librosa():
    """The speaker encoder's mel filterbank is librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0,
    fmax=12000) (Slaney scale and norm) to float32 rounding, with the same triangles (SPEC §4.1)."""
    import librosa

    want = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000)
    got = audio.mel_filterbank()
    assert got.shape == want.shape == (128, 513) and got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got > 0, want > 0)
    assert np.abs(got - want).max() <= 1e-8  # the largest weight is 0.037: float32 steps there are 3.7e-9


# 24 kHz clips for the log-mel: speech-like at three levels, and one shorter than a second
MEL_CLIPS = [(1, 1.0, 0), (5, 1.0, 4), (2.3, 0.05, 9), (0.1, 1.0, 2)]


@pytest.mark.parametrize("seconds,gain,seed", MEL_CLIPS)
def test_log_mel_equals_official_mel_spectrogram(seconds, gain, seed):
    """Our numpy log-mel against the official `mel_spectrogram` (torch, float32) as extract_speaker_embedding
    calls it: the same frames; within 1e-5 wherever the mel energy is at least 0.1, and everywhere the mel
    energies within 1e-6 of the clip's peak. Ours runs in float64: in near-silent bins (log-mel below -7) the
    official float32 STFT's rounding alone moves the log by up to 6e-3, so 1e-5 in the log holds only where the
    energy is well above float32's resolution."""
    import torch

    from qwen3_tts_export.reference import qwen_tts

    qwen_tts()
    from qwen_tts.core.models.modeling_qwen3_tts import mel_spectrogram

    x = clip(seconds, 24000, seed=seed) * np.float32(gain)
    want = mel_spectrogram(torch.from_numpy(x).unsqueeze(0), n_fft=1024, num_mels=128, sampling_rate=24000,
                           hop_size=256, win_size=1024, fmin=0, fmax=12000).transpose(1, 2)[0].numpy()
    got = audio.log_mel(x)
    assert got.shape == want.shape == (1 + (x.shape[0] + 768 - 1024) // 256, 128) and got.dtype == np.float32
    loud = want >= np.log(0.1)
    assert loud.sum() >= 100
    assert np.abs(got - want)[loud].max() <= 1e-5
    energy, energy_want = np.exp(got.astype(np.float64)), np.exp(want.astype(np.float64))
    assert np.abs(energy - energy_want).max() <= 1e-6 * energy_want.max()


@pytest.mark.parametrize("sr", [16000, 22050, 44100, 48000])
def test_resample_equals_librosa_soxr_hq(sr):
    """Resampling to 24 kHz gives exactly librosa.resample(res_type="soxr_hq") (what the official package calls),
    samples and length, including lengths that do not divide evenly."""
    import librosa

    for seconds in (1.0, 2.7, 5.013):
        x = clip(seconds, sr, seed=2)
        want = librosa.resample(x, orig_sr=sr, target_sr=24000, res_type="soxr_hq")
        got = audio.resample(x, sr)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
