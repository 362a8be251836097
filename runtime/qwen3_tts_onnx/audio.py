"""Audio in and out. In: reference audio for voice cloning: reading, mono, resampling to 24 kHz, checks, and the
speaker encoder's log-mel spectrogram, all in numpy (SPEC §3.8, §4.1). Out: 16-bit PCM and WAV headers for
streamed output (CLI --stream, the server).

Reading uses soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3 and more); resampling uses soxr at "HQ",
the resampler the official package reaches through `librosa.resample`, with librosa's output length.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import re
from functools import lru_cache

import numpy as np

from . import contracts as C
from .errors import InputError

MIN_REF_SAMPLES = C.SAMPLES_PER_FRAME  # one 80 ms code frame at 24 kHz
MAX_REF_SECONDS = 60.0  # the reference is re-read by the talker at every step; 3-20 s is plenty
SILENCE_PEAK = 1e-3  # -60 dBFS: below this the clip carries no voice to clone

N_FFT, HOP, WIN = 1024, 256, 1024
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")


# ---------------------------------------------------------------------------------------------------- reading

_WAV_CODECS = {0x0055: "MP3", 0x00FF: "AAC", 0x1610: "AAC", 0x0160: "WMA", 0x0161: "WMA", 0x0162: "WMA",
               0x2000: "AC-3"}


def _describe(head: bytes) -> str | None:
    """What a file that libsndfile refused holds, from its first bytes (None: nothing recognisable)."""
    if head[4:8] == b"ftyp":
        return "an MP4/M4A container (AAC or ALAC audio), which libsndfile does not read"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "a Matroska/WebM container, which libsndfile does not read"
    if head[:4] == b"0&\xb2u":
        return "an ASF/WMA container, which libsndfile does not read"
    if head[:5] == b"#!AMR":
        return "AMR audio, which libsndfile does not read"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" and head[12:16] == b"fmt " and len(head) >= 22:
        tag = int.from_bytes(head[20:22], "little")
        codec = f" ({_WAV_CODECS[tag]})" if tag in _WAV_CODECS else ""
        return f"a WAV file with format tag 0x{tag:04X}{codec} that libsndfile cannot decode"
    for cut in range(4):  # the 64 bytes may end inside a multi-byte character
        try:
            text = head[:len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    if text and sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
        return "text, not audio"
    return None


def _read(data, what: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        wav, sr = sf.read(data, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError by case
        detail = getattr(e, "error_string", None) or str(e)
        if "does not exist" in detail:  # libsndfile's words for content it does not recognise (the file exists)
            detail = "format not recognised"
        head = data.getvalue()[:64] if isinstance(data, io.BytesIO) else _head(data)
        holds = _describe(head)
        raise InputError(f"cannot read {what} as audio: {f'it holds {holds} ({detail})' if holds else detail}; "
                         f"pass WAV, FLAC, OGG (Vorbis, Opus) or MP3 "
                         f"(formats: {', '.join(sorted(sf.available_formats()))})") from None
    return wav.mean(axis=1, dtype=np.float32) if wav.shape[1] > 1 else wav[:, 0], int(sr)


def _head(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except OSError:
        return b""


def _from_array(wav, sr) -> tuple[np.ndarray, int]:
    wav = np.asarray(wav)
    if np.issubdtype(wav.dtype, np.integer):  # PCM integers: scale to [-1, 1) as soundfile does
        info = np.iinfo(wav.dtype)
        wav = (wav.astype(np.float64) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    elif not np.issubdtype(wav.dtype, np.floating):
        raise InputError(f"reference audio array has dtype {wav.dtype}; pass float samples in [-1, 1]")
    if wav.ndim == 2:  # (samples, channels) as soundfile returns, or (channels, samples) as librosa does
        if wav.shape[1] <= 8:
            wav = wav.mean(axis=1)
        elif wav.shape[0] <= 8:
            wav = wav.mean(axis=0)
        else:
            raise InputError(f"reference audio array has shape {wav.shape}; pass mono [samples] or "
                             "[samples, channels]")
    elif wav.ndim != 1:
        raise InputError(f"reference audio array has shape {wav.shape}; pass mono [samples] or [samples, channels]")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float)) or not float(sr).is_integer() or sr <= 0:
        raise InputError(f"sample rate must be a positive integer, got {sr!r}")
    return wav.astype(np.float32), int(sr)


def load(audio) -> tuple[np.ndarray, int]:
    """Reference audio in any accepted form -> (float32 mono samples, sample rate).

    Accepted: a file path (str or os.PathLike), raw file bytes, a base64 string (optionally a `data:audio/...`
    URI), or a `(samples, sample_rate)` tuple with samples as [n] or [n, channels] (integer PCM is scaled).
    """
    if isinstance(audio, tuple) and len(audio) == 2:
        return _from_array(*audio)
    if isinstance(audio, np.ndarray):
        raise InputError("a bare array has no sample rate; pass (samples, sample_rate)")
    if isinstance(audio, (bytes, bytearray, memoryview)):
        if not len(audio):
            raise InputError("reference audio bytes are empty")
        return _read(io.BytesIO(bytes(audio)), "the reference audio bytes")
    if isinstance(audio, os.PathLike):
        audio = os.fspath(audio)
    if not isinstance(audio, str):
        raise InputError(f"unsupported reference audio type {type(audio).__name__}; pass a path, bytes, a base64 "
                         "string or (samples, sample_rate)")
    if audio.startswith("data:"):
        return _read(io.BytesIO(_b64(audio.split(",", 1)[-1])), "the base64 reference audio")
    if audio.startswith(("http://", "https://")):
        raise InputError("reference audio URLs are not fetched; download the file and pass its path or bytes")
    if os.path.isfile(audio):
        return _read(audio, audio)
    if len(audio) > 256 and _BASE64.match(audio):
        return _read(io.BytesIO(_b64(audio)), "the base64 reference audio")
    raise InputError(f"reference audio file {audio!r} does not exist")


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"reference audio is not valid base64 ({e})") from None


# ---------------------------------------------------------------------------------------------------- checks, rate

def check(wav: np.ndarray, sr: int) -> None:
    """Refuse reference audio that cannot give a voice: empty, too short or long, non-finite, or silent."""
    if wav.size == 0:
        raise InputError("reference audio is empty")
    if not np.isfinite(wav).all():
        raise InputError("reference audio contains NaN or infinite samples")
    seconds = wav.size / sr
    if wav.size * C.SAMPLE_RATE / sr < MIN_REF_SAMPLES:
        raise InputError(f"reference audio is {seconds * 1000:.0f} ms long, shorter than one 80 ms frame; "
                         "use 3-20 s of clear speech")
    if seconds > MAX_REF_SECONDS:
        raise InputError(f"reference audio is {seconds:.1f} s long; the limit is {MAX_REF_SECONDS:.0f} s: "
                         "trim it to 3-20 s of clear speech")
    if float(np.abs(wav).max()) < SILENCE_PEAK:
        raise InputError("reference audio is silent (peak below -60 dBFS); pass a recording of the voice to clone")


def resample(wav: np.ndarray, sr: int, target: int = C.SAMPLE_RATE) -> np.ndarray:
    """As `librosa.resample(res_type="soxr_hq")`: soxr HQ, then zero-padded or cut to ceil(n * target / sr)."""
    if sr == target:
        return wav.astype(np.float32, copy=False)
    import soxr

    out = soxr.resample(wav.astype(np.float32), sr, target, quality="soxr_hq")
    n = int(np.ceil(wav.shape[0] * (float(target) / sr)))
    if out.shape[0] < n:
        out = np.pad(out, (0, n - out.shape[0]))
    return np.asarray(out[:n], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- log-mel

def _hz_to_mel(f):
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


@lru_cache(maxsize=1)
def mel_filterbank(sr: int = C.SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = C.MEL_BINS, fmin: float = 0.0,
                   fmax: float = 12000.0) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangles on the Slaney mel scale with Slaney area normalisation, as
    `librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000)`."""
    fft_f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float64)  # periodic Hann


def log_mel(wav24: np.ndarray) -> np.ndarray:
    """24 kHz mono -> log-mel frames [T, 128] float32, as the official `mel_spectrogram` (SPEC §4.1): reflect
    padding of 384 on both sides, STFT without centring, magnitude sqrt(re² + im² + 1e-9), log(max(mel, 1e-5))."""
    pad = (N_FFT - HOP) // 2
    y = np.pad(wav24.astype(np.float64), (pad, pad), mode="reflect")
    frames = 1 + (y.shape[0] - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spec = np.fft.rfft(y[idx] * _window(), axis=-1)
    mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
    mel = mag @ mel_filterbank().astype(np.float64).T
    return np.log(np.maximum(mel, 1e-5)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- output

def pcm16(samples: np.ndarray) -> bytes:
    """float [-1, 1] -> 16-bit little-endian PCM, scaled as libsndfile writes PCM_16."""
    return np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_header(num_samples: int | None) -> bytes:
    """16-bit mono 24 kHz WAV header; num_samples=None writes the 0xFFFFFFFF "unknown length" form for streams."""
    import struct

    data = 0xFFFFFFFF if num_samples is None else 2 * num_samples
    riff = 0xFFFFFFFF if num_samples is None else 36 + data
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, C.SAMPLE_RATE, 2 * C.SAMPLE_RATE, 2, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", data)
