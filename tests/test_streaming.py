"""Exact streaming: the stateful speech decoder in any chunking equals one pass; streamed generation gives the same
codes as the non-streaming API and its samples equal the exact decode; the first chunk comes before the loop
generates further frames; closing the stream stops it; `speak --stream` writes playable output."""
from __future__ import annotations

import gc
import struct
import weakref

import numpy as np
import pytest
import soundfile as sf
import torch

from oracle import GREEDY
from qwen3_tts_onnx import Qwen3TTS, generate
from qwen3_tts_onnx import stream as stream_module
from qwen3_tts_onnx.cli import main as cli_main
from qwen3_tts_onnx.errors import InputError

# The streaming decoder runs the same graph on other chunk lengths: convolution kernels sum in a length-dependent
# order, so samples differ from one pass by float32 rounding only (measured: at most 1.11e-5 on these test decoders,
# 400 frames one per call, output peaks around 0.4; a single ONNX Runtime Conv node alone differs by 2-4e-6 between
# chunkings). README, Tests, says why this is not bit-exact.
STREAM_TOL = 1.5e-5
TEXT = "Hello world, this is a streaming test of the decoder."
SAMPLING = dict(do_sample=True, subtalker_dosample=True, top_k=50, temperature=0.9, max_new_tokens=30)


def _chunkings(frames: int) -> list:
    uneven = []
    i = 0
    while sum(uneven) < frames:
        uneven.append(min((2, 5, 1, 13)[i % 4], frames - sum(uneven)))
        i += 1
    return [[1] * frames, uneven, [frames]] if frames > 1 else [[1]]


def _stream_decode(m, codes, chunks):
    state, out, at = m.ours.decoder.new_state(), [], 0
    for n in chunks:
        out.append(m.ours.decoder.step(codes[at:at + n], state))
        at += n
    return np.concatenate(out)


@pytest.mark.parametrize("frames", [1, 7, 80, 300, 400])
def test_streaming_decoder_equals_one_pass(models, frames):
    """Every chunking (one frame at a time, uneven chunks, two chunks) equals one call over the whole sequence, and
    up to 300 frames, where the official decode is one pass, every chunking equals the official decode."""
    m = models("cv_wide")
    codes = np.random.default_rng(frames + 7).integers(0, 2048, size=(frames, 16), dtype=np.int64)
    one_pass = _stream_decode(m, codes, [frames])
    assert one_pass.shape == (frames * 1920,)
    want = None
    if frames <= 300:
        want = m.ref.model.speech_tokenizer.decode([{"audio_codes": torch.from_numpy(codes)}])[0][0]
        assert want.shape == one_pass.shape and np.abs(one_pass - want).max() <= 1e-4
    for chunks in _chunkings(frames) + [[frames // 3, frames - frames // 3]] * (frames > 3):
        got = _stream_decode(m, codes, chunks)
        assert got.shape == one_pass.shape
        assert np.abs(got - one_pass).max() <= STREAM_TOL, (chunks[:6], np.abs(got - one_pass).max())
        if want is not None:
            assert np.abs(got - want).max() <= 1e-4, (chunks[:6], np.abs(got - want).max())


@pytest.mark.parametrize("frames", [3, 40, 130])
def test_skip_leaves_the_state_decoding_leaves(models, frames):
    """SpeechDecoder.skip (the context graph, then only the last stack_frames through the full graph) leaves the
    state that decoding the frames leaves: what is decoded after it is the same, and the convolution stack ran
    over stack_frames frames only."""
    dec = models("cv_wide").ours.decoder
    k = dec.layout["stack_frames"]
    codes = np.random.default_rng(frames).integers(0, 2048, size=(frames + 30, 16), dtype=np.int64)
    decoded, skipped = dec.new_state(), dec.new_state()
    dec.feed(codes[:frames], decoded)
    full_graph_frames = []
    step = dec.step

    def counting_step(c, state):
        full_graph_frames.append(c.shape[0])
        return step(c, state)

    dec.step = counting_step
    try:
        dec.skip(codes[:frames], skipped)
    finally:
        del dec.step
    assert sum(full_graph_frames) == min(frames, k) and skipped.frames == decoded.frames == frames
    want, got = dec.feed(codes[frames:], decoded), dec.feed(codes[frames:], skipped)
    assert np.abs(got - want).max() <= STREAM_TOL, np.abs(got - want).max()
    for name, t in decoded.tensors.items():  # and so is the state after them
        assert np.abs(skipped.tensors[name] - t).max() <= 1e-4 * max(1.0, np.abs(t).max()), name


@pytest.mark.parametrize("mode,starts", [("windowed", [0, 3, 160, 300, 312, 330]), ("exact", [0, 160])])
def test_decode_from_a_start_frame_is_the_tail_of_the_decode(models, mode, starts):
    """decode(codes, start=s) gives the samples of frames s.. of the whole decode (windowed: across the window
    boundary at 300, whose 25-frame left context is skipped through too)."""
    dec = models("cv_wide").ours.decoder
    codes = np.random.default_rng(5).integers(0, 2048, size=(330, 16), dtype=np.int64)
    whole = dec.decode(codes, mode)
    for s in starts:
        got = dec.decode(codes, mode, start=s)
        assert got.shape == whole[s * 1920:].shape
        assert got.size == 0 or np.abs(got - whole[s * 1920:]).max() <= STREAM_TOL, (s, np.abs(got - whole[s * 1920:]).max())


def test_stream_same_codes_and_samples_as_generate(models):
    tts = models("cv_wide").ours
    kw = dict(speaker="ryan", language="english", seed=123, **SAMPLING)
    chunks = list(tts.stream_custom_voice(TEXT, first_chunk_frames=2, chunk_frames=5, **kw))
    rows = tts._custom_voice_rows(TEXT, "ryan", "english", None, True)
    codes = tts.generate_codes(rows, seed=123, **{k: v for k, v in SAMPLING.items()})[0]
    assert codes.shape[0] >= 10
    np.testing.assert_array_equal(np.concatenate([c.codes for c in chunks]), codes)
    assert [c.frame_end - c.frame_start for c in chunks[:2]] == [2, 5]
    assert all(a.frame_end == b.frame_start for a, b in zip(chunks, chunks[1:]))
    assert all(c.sample_rate == 24000 and c.samples.dtype == np.float32 for c in chunks)
    assert all(c.samples.shape[0] == 1920 * (c.frame_end - c.frame_start) for c in chunks)
    wav, _ = tts.generate_custom_voice(TEXT, decode_mode="exact", **kw)
    streamed = np.concatenate([c.samples for c in chunks])
    assert streamed.shape == wav[0].shape
    assert np.abs(streamed - wav[0]).max() <= STREAM_TOL
    t = [c.timing for c in chunks]
    assert all(x.generate_s > 0 and x.decode_s > 0 for x in t)
    assert all(a.elapsed_s < b.elapsed_s for a, b in zip(t, t[1:]))


def test_stream_voice_design(models):
    tts = models("vd").ours
    kw = dict(instruct="A calm, low voice.", language="english", seed=5, **SAMPLING)
    chunks = list(tts.stream_voice_design(TEXT, first_chunk_frames=1, chunk_frames=4, **kw))
    wav, _ = tts.generate_voice_design(TEXT, decode_mode="exact", **kw)
    streamed = np.concatenate([c.samples for c in chunks])
    assert chunks[0].frame_end == 1 and streamed.shape == wav[0].shape
    assert np.abs(streamed - wav[0]).max() <= STREAM_TOL


class _Recorder:
    """A session stand-in that logs each run by graph name (plain or through an IO binding, as the runtime uses)."""

    def __init__(self, session, name, log):
        self.session, self.name, self.log = session, name, log
        self.get_outputs, self.get_providers, self.io_binding = session.get_outputs, session.get_providers, session.io_binding

    def run(self, *args, **kwargs):
        self.log.append(self.name)
        return self.session.run(*args, **kwargs)

    def run_with_iobinding(self, *args, **kwargs):
        self.log.append(self.name)
        return self.session.run_with_iobinding(*args, **kwargs)


def _recorded(m):
    log: list = []
    tts = Qwen3TTS(m.ours.artifacts, {n: _Recorder(s, n, log) for n, s in m.ours.sessions.items()})
    return tts, log


def _track(monkeypatch, module, name: str, into) -> None:
    """Replace module.name (a class) by a subclass whose instances are added to `into` (a list or a WeakSet)."""
    real = getattr(module, name)

    class Tracked(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            into.append(self) if isinstance(into, list) else into.add(self)

    monkeypatch.setattr(module, name, Tracked)


def test_first_chunk_before_next_frames_and_close_stops(models, monkeypatch):
    tts, log = _recorded(models("cv_wide"))
    caches, assemblers = weakref.WeakSet(), []
    _track(monkeypatch, generate, "KVCache", caches)
    _track(monkeypatch, stream_module, "ChunkAssembler", assemblers)
    stream = tts.stream_custom_voice(TEXT, speaker="ryan", language="english", first_chunk_frames=2, chunk_frames=5,
                                     max_new_tokens=40, **GREEDY)
    assert log.count("talker") == 0 and log.count("code_predictor") == 0  # only the prompt embedding so far
    first = next(stream)
    assert (first.frame_start, first.frame_end) == (0, 2)
    # prefill + one decode step, two code predictor runs, one decoder call: nothing of frame 3 yet
    assert log.count("talker") == 2 and log.count("code_predictor") == 2 and log.count("speech_decoder") == 1
    second = next(stream)
    assert (second.frame_start, second.frame_end) == (2, 7) and log.count("code_predictor") == 7
    assert len(caches) == 1 and len(assemblers) == 1 and assemblers[0].state.tensors
    stream.close()
    runs = len(log)
    with pytest.raises(StopIteration):
        next(stream)
    gc.collect()
    assert len(log) == runs and len(caches) == 0  # no more runs; the KV cache is gone
    assert assemblers[0].state.tensors == {}  # and so is the decoder state


def test_stream_bad_arguments(models):
    tts = models("cv_wide").ours
    with pytest.raises(InputError, match="first_chunk_frames"):
        tts.stream_custom_voice(TEXT, speaker="ryan", first_chunk_frames=0)
    with pytest.raises(InputError, match="chunk_frames"):
        tts.stream_custom_voice(TEXT, speaker="ryan", chunk_frames=2.5)
    with pytest.raises(InputError, match="one text at a time"):
        tts.stream_custom_voice([TEXT, TEXT], speaker="ryan")
    with pytest.raises(InputError, match="unsupported speaker"):  # raised at the call, not at the first chunk
        tts.stream_custom_voice(TEXT, speaker="nobody")


def test_cli_stream_wav_and_raw_pcm(models, tmp_path, capsysbinary):
    m = models("cv_wide")
    args = ["speak", "--model", str(m.art), "--text", TEXT, "--speaker", "ryan", "--language", "english", "--greedy",
            "--max-new-tokens", "25", "--stream"]
    wav_path, codes_path = tmp_path / "s.wav", tmp_path / "c.npy"
    assert cli_main(args + ["--out", str(wav_path), "--codes-out", str(codes_path)]) == 0
    codes = np.load(codes_path)
    data, sr = sf.read(wav_path, dtype="float32")
    assert sr == 24000 and data.shape == (codes.shape[0] * 1920,) and codes.shape[0] > 0
    want = m.ours.decode(codes, "exact")
    assert np.abs(data - want).max() <= 1.0 / 32767 + STREAM_TOL  # 16-bit PCM
    capsysbinary.readouterr()
    assert cli_main(args + ["--out", "-"]) == 0
    raw = capsysbinary.readouterr().out
    assert len(raw) == 2 * codes.shape[0] * 1920
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32767
    assert np.abs(pcm - want).max() <= 1.0 / 32767 + STREAM_TOL
    # the header was fixed up at the end: RIFF size = file size - 8, and the data chunk holds every sample
    riff = wav_path.read_bytes()
    assert riff[:4] == b"RIFF" and riff[8:12] == b"WAVE" and struct.unpack("<I", riff[4:8])[0] == len(riff) - 8
    at, chunks = 12, {}
    while at + 8 <= len(riff):
        name, size = riff[at:at + 4], struct.unpack("<I", riff[at + 4:at + 8])[0]
        chunks[name] = (at + 8, size)
        at += 8 + size + (size & 1)
    channels, rate, _, _, bits = struct.unpack("<HIIHH", riff[chunks[b"fmt "][0] + 2:chunks[b"fmt "][0] + 16])
    assert (channels, rate, bits) == (1, 24000, 16) and chunks[b"data"][1] == 2 * codes.shape[0] * 1920
