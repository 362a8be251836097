"""Qwen3TTS: the public API, shaped like the official `Qwen3TTSModel` so switching is a change of import.

    tts = Qwen3TTS.from_pretrained("artifacts/0.6B-CustomVoice")
    wavs, sr = tts.generate_custom_voice("Hello there.", speaker="Ryan", language="English")

Every generation keyword argument of the official API is accepted with the official default (explicit value ->
the checkpoint's generation_config.json -> the official hard default); `seed` (an int, or one per text) makes
sampling reproducible, and each text of a batch samples exactly as it would alone with that seed.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from . import artifacts as artifacts_mod
from . import audio as audio_mod
from . import contracts as C
from . import graph_replay as graph_replay_mod
from . import sessions as sessions_mod
from .decode import SpeechDecoder, check_mode
from .errors import InputError
from .generate import FrameLoop, GenerationOptions, collect
from .prompt import (MAX_TEXT_TOKENS, ICLReference, TextTokenizer, assistant_text, build_rows, instruct_text,
                     reference_text, right_pad)
from .stream import (DEFAULT_CHUNK_FRAMES, DEFAULT_FIRST_CHUNK_FRAMES, AudioChunk, check_chunking,
                     stream_audio)
from .voice import VoicePrompt, prompts_from_dict

# The official API's default text layout per model type (generate_custom_voice / _voice_design: True;
# generate_voice_clone: False).
DEFAULT_NON_STREAMING = {"custom_voice": True, "voice_design": True, "base": False}
HARD_DEFAULTS = dict(do_sample=True, top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05,
                     subtalker_dosample=True, subtalker_top_k=50, subtalker_top_p=1.0, subtalker_temperature=0.9,
                     max_new_tokens=2048)


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def row_generators(seed, n: int) -> list:
    """One random generator per batch row. seed: None (fresh entropy), an int (every row seeded with it, so a row
    of a batch samples exactly as the same call alone), or a list of n ints (one per row)."""
    seeds = _broadcast("seed", _as_list(seed), n)
    for s in seeds:
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0):
            raise InputError(f"seed must be a non-negative integer (or None), got {s!r}")
    return [np.random.default_rng(None if s is None else int(s)) for s in seeds]


def _flag(name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def _option_value(name: str, v):
    """A generation option checked against its type (that of its HARD_DEFAULTS value): True/False, an integer, or
    a finite number; anything else is an InputError naming the option."""
    kind = type(HARD_DEFAULTS[name])
    number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
    if kind is bool:
        return _flag(name, v)
    if kind is int and number and isinstance(v, (int, np.integer)):
        return int(v)
    if kind is float and number and (abs(v) < 1e308 if isinstance(v, (int, np.integer)) else np.isfinite(v)):
        return float(v)
    raise InputError(f"{name} must be {'an integer' if kind is int else 'a finite number'}, got {v!r}")


def _unset(x) -> bool:
    """None or "": an optional text argument (speaker, instruct) left out, as the official API takes both."""
    return x is None or isinstance(x, str) and x == ""


def _broadcast(name: str, values: list, n: int) -> list:
    if len(values) == 1 and n > 1:
        return values * n
    if len(values) != n:
        raise InputError(f"batch size mismatch: {n} texts but {len(values)} values of {name}")
    return values


@dataclass(frozen=True)
class Prepared:
    """A synthesis request checked against the model: one prompt row (prompt.PromptRows) per text and, for voice
    cloning, each text's VoicePrompt (whose reference codes warm the decoder, or are cut off, in ICL mode)."""
    rows: list
    voices: list | None = None

    def warm_codes(self, i: int) -> np.ndarray | None:
        v = self.voices[i] if self.voices else None
        return v.ref_codes if v is not None and v.icl_mode else None


class Qwen3TTS:
    def __init__(self, arts: artifacts_mod.Artifacts, sessions: dict, graph_replay: bool = False):
        """graph_replay: run the frame loop on fixed buffers (graph_replay.py), which lets sessions made with
        sessions.with_cuda_graphs() replay CUDA graphs; on the CPU the same loop without capture."""
        self.artifacts = arts
        self.cfg = arts.config
        self.model_type, self.model_size = arts.model_type, arts.model_size
        self.sessions = sessions
        self.tokenizer = TextTokenizer(arts.root / C.TOKENIZER)
        self.generate_defaults = dict(arts.manifest.get("generation_defaults", {}))
        talker_providers = getattr(sessions["talker"], "get_providers", list)()  # wrappers may not say
        replay = None
        if graph_replay:
            graph_replay_mod.check_artifacts(arts.manifest, arts.root)
            if not all(hasattr(sessions[g], "io_binding") for g in graph_replay_mod.REPLAYED):
                raise InputError("graph_replay needs onnxruntime InferenceSessions (IO bindings) for the talker and "
                                 "the code predictor")
            replay = graph_replay_mod.GraphReplay("cuda" if talker_providers[:1] == [sessions_mod.CUDA] else "cpu",
                                                  self.cfg["max_position_embeddings"])
        self._loop = FrameLoop(sessions["talker"], sessions["code_predictor"], self.cfg, replay)
        if talker_providers[:1] == [sessions_mod.CUDA] and self.cfg.get("kv_cache_dtype") != "float16":
            warnings.warn(f"{arts.root}: this talker's attention is fp32, which ONNX Runtime's CUDA provider does not "
                          "run (its GroupQueryAttention is fp16/bf16 only): it falls back to the CPU and the KV cache "
                          "crosses to the host every step. For the GPU, export with PRECISION=fp16.", stacklevel=3)
        self.decoder = SpeechDecoder(sessions["speech_decoder"], self.cfg["speech_decoder_state"],
                                     sessions["speech_decoder_context"])

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path, providers=None, threads: int | None = None, verify: bool = True,
                        cuda_graphs: bool = False, *, revision: str | None = None, subfolder: str | None = None,
                        cache_dir=None, local_files_only: bool = False) -> "Qwen3TTS":
        """Load exported artifacts: a directory with manifest.json, or a Hugging Face hub id of one ('owner/name',
        or 'owner/name/subfolder'; revision, subfolder, cache_dir and local_files_only as in huggingface_hub; hub.py).
        providers: ONNX Runtime execution providers, CUDA first when available. verify: check every file's sha256
        against the manifest. cuda_graphs: replay the talker's decode step and the code predictor as CUDA graphs
        (CUDA provider and the fp16 variant; graph_replay.py; off by default until measured on a GPU:
        BENCHMARKS.md)."""
        arts = artifacts_mod.load(artifacts_mod.locate(path, revision, subfolder, cache_dir, local_files_only),
                                  verify_hashes=verify)
        providers = list(providers or sessions_mod.default_providers())
        if cuda_graphs:
            graph_replay_mod.check_capturable(arts.manifest, arts.root, providers)
        sessions = {g: sessions_mod.create(arts.graph_path(g), sessions_mod.with_cuda_graphs(providers)
                                           if cuda_graphs and g in graph_replay_mod.REPLAYED else providers, threads, g)
                    for g in arts.graph_names}
        return cls(arts, sessions, graph_replay=cuda_graphs)

    @classmethod
    def from_checkpoint(cls, model, precision: str = "fp32", decoder: str = "fp32", cache_dir=None,
                        **load) -> "Qwen3TTS":
        """An official checkpoint (directory or hub id, e.g. 'Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice') exported to
        ONNX at `precision` ('fp32', 'int8', 'int4', 'fp16') with the speech decoder at `decoder`, once, into a cache
        ($QWEN3_TTS_CACHE, else ~/.cache/qwen3-tts-onnx; checkpoint_export.py), then loaded with from_pretrained's
        options (**load: providers, threads, cuda_graphs). The export needs the export extra (torch) and minutes;
        later calls load the cached export."""
        from .checkpoint_export import ensure_export

        return cls.from_pretrained(ensure_export(model, precision, decoder, cache_dir), **load)

    @classmethod
    def from_sessions(cls, path, sessions: dict, verify: bool = False, **hub) -> "Qwen3TTS":
        """Bring your own tuned `onnxruntime.InferenceSession`s, keyed by graph name (any left out are created).
        path and **hub (revision, subfolder, cache_dir, local_files_only) as in from_pretrained."""
        arts = artifacts_mod.load(artifacts_mod.locate(path, **hub), verify_hashes=verify)
        sessions = dict(sessions)
        for g in arts.graph_names:
            if g not in sessions:
                sessions[g] = sessions_mod.create(arts.graph_path(g), graph=g)
        return cls(arts, sessions)

    # ------------------------------------------------------------------------------------------------ model info
    def get_supported_speakers(self) -> list[str] | None:
        return sorted(s.lower() for s in self.cfg.get("spk_id") or {})

    def get_supported_languages(self) -> list[str]:
        return sorted(["auto"] + [k.lower() for k in self.cfg["codec_language_id"] if "dialect" not in k])

    # ------------------------------------------------------------------------------------------------ checks
    def _require(self, model_type: str, api: str) -> None:
        if self.model_type != model_type:
            alt = {"custom_voice": "generate_custom_voice", "voice_design": "generate_voice_design",
                   "base": "generate_voice_clone"}[self.model_type]
            raise InputError(f"{api} needs a {model_type} model, but these artifacts are a {self.model_type} model "
                             f"({self.model_size}); use {alt}")

    def _language(self, language) -> str:
        lang = "auto" if language is None else language
        if not isinstance(lang, str) or lang.lower() not in self.get_supported_languages():
            raise InputError(f"unsupported language {language!r}; supported: {self.get_supported_languages()}")
        return lang.lower()

    def _speaker(self, speaker) -> str | None:
        if _unset(speaker):
            return None
        if not isinstance(speaker, str) or speaker.lower() not in self.get_supported_speakers():
            raise InputError(f"unsupported speaker {speaker!r}; supported: {self.get_supported_speakers()}")
        return speaker.lower()

    def _options(self, kwargs: dict) -> GenerationOptions:
        unknown = set(kwargs) - set(HARD_DEFAULTS)
        if unknown:
            raise InputError(f"unknown generation argument(s) {sorted(unknown)}; accepted: {sorted(HARD_DEFAULTS)} "
                             "and seed")
        merged = {}
        for k, hard in HARD_DEFAULTS.items():
            v = kwargs.get(k)
            merged[k] = _option_value(k, v if v is not None else self.generate_defaults.get(k, hard))
        o = GenerationOptions(**merged)
        if o.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {o.max_new_tokens}")
        o.max_new_tokens = min(o.max_new_tokens, self.cfg["max_position_embeddings"] - MAX_TEXT_TOKENS - 64)
        for prefix, sampling, temperature, top_p in (
                ("", o.do_sample, o.temperature, o.top_p),
                ("subtalker_", o.subtalker_dosample, o.subtalker_temperature, o.subtalker_top_p)):
            if sampling and not float(temperature) > 0:
                raise InputError(f"{prefix}temperature must be > 0 when sampling, got {temperature}")
            if sampling and not 0 < float(top_p) <= 1:
                raise InputError(f"{prefix}top_p must be in (0, 1], got {top_p}")
        if not float(o.repetition_penalty) > 0:
            raise InputError("repetition_penalty must be > 0")
        return o

    def _text_ids(self, text: str) -> list:
        ids = self.tokenizer.encode(assistant_text(self.tokenizer.check_text(text)))
        if len(ids) - 8 > MAX_TEXT_TOKENS:
            raise InputError(f"text is {len(ids) - 8} tokens long; the limit is {MAX_TEXT_TOKENS}: split it into "
                             "sentences and synthesize them one by one")
        return ids

    def _instruct_ids(self, instruct) -> list | None:
        if _unset(instruct):
            return None
        ids = self.tokenizer.encode(instruct_text(self.tokenizer.check_text(instruct, "instruct")))
        if len(ids) > MAX_TEXT_TOKENS:
            raise InputError(f"instruct is {len(ids)} tokens long; the limit is {MAX_TEXT_TOKENS}")
        return ids

    # ------------------------------------------------------------------------------------------------ low level
    def _embed(self, text_ids: list, codec_ids: list, codec_vectors: tuple = ()) -> np.ndarray:
        t = np.asarray([text_ids], dtype=np.int64)
        c = np.asarray([codec_ids], dtype=np.int64)
        out = self.sessions["text_embedder"].run(["embeds"], {"text_ids": t, "codec_ids": c})[0][0]
        for start, vectors in codec_vectors:
            out[start:start + len(vectors)] += vectors
        return out

    def generate_codes(self, rows: list, seed: int | None = None, **kwargs) -> list:
        """Prompt rows (prompt.PromptRows, one per item) -> per-item codes [F_i, 16] int64 (EOS excluded)."""
        return collect(self._frames(rows, seed, kwargs), len(rows))

    def _frames(self, rows: list, seed, kwargs: dict, budgets=None, stop=None):
        """The frame loop over prompt rows: a generator of (codes [B, 16], finished [B]) per frame. seed: see
        row_generators; budgets, stop: see FrameLoop.run."""
        opts = self._options(kwargs)
        rngs = row_generators(seed, len(rows))
        h = self.cfg["hidden_size"]
        embeds = [self._embed(r.text_ids, r.codec_ids, r.codec_vectors) for r in rows]
        pad_embed = self._embed([self.cfg["tts_pad_token_id"]], [-1])[0]
        tmax = max(len(r.trailing_ids) for r in rows)
        trailing = np.broadcast_to(pad_embed, (len(rows), tmax, h)).copy()
        for i, r in enumerate(rows):
            trailing[i, :len(r.trailing_ids)] = self._embed(r.trailing_ids, [-1] * len(r.trailing_ids))
        x, mask = right_pad(embeds, h)
        if budgets is not None:
            budgets = np.minimum(np.asarray(budgets, dtype=np.int64), opts.max_new_tokens)
        return self._loop.run(x, mask, trailing, pad_embed, opts, rngs, budgets, stop)

    def decode(self, codes, decode_mode: str = "windowed") -> np.ndarray:
        """codes [F, 16] -> float32 waveform at 24 kHz. decode_mode "windowed": the official 300/25 windowed decode
        (default, identical to the official package); "exact": one pass, without the seams every 300 frames."""
        return self.decoder.decode(codes, decode_mode)

    def stream_rows(self, row, seed: int | None = None, warm_codes: np.ndarray | None = None,
                    first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
                    **kwargs) -> Iterator[AudioChunk]:
        """Low level: stream one prompt row (prompt.PromptRows). warm_codes: reference codes that set the decoder
        state first (ICL). Arguments are checked here, before the first chunk is asked for."""
        started = time.perf_counter()
        first_chunk_frames, chunk_frames = check_chunking(first_chunk_frames, chunk_frames)
        frames = self._frames([row], seed, kwargs)  # a generator: nothing runs until the first chunk is asked for
        return stream_audio(frames, self.decoder, first_chunk_frames, chunk_frames, started, warm_codes)

    def _finish(self, codes: list, decode_mode: str) -> tuple[list, int]:
        return [self.decode(c, decode_mode) for c in codes], C.SAMPLE_RATE

    # ------------------------------------------------------------------------------------------------ official API
    def prepare(self, text, speaker=None, language=None, instruct=None, ref_audio=None, ref_text=None,
                x_vector_only_mode=False, voice_clone_prompt=None, non_streaming_mode=None) -> Prepared:
        """For any model type: check the arguments against it and build the prompt rows (the CLI and the server
        use this; the generate_* / stream_* methods are the per-type forms). non_streaming_mode None: the
        official default of the model type."""
        nsm = DEFAULT_NON_STREAMING[self.model_type] if non_streaming_mode is None else non_streaming_mode
        cloning = ref_audio is not None or voice_clone_prompt is not None
        if self.model_type != "base" and (cloning or ref_text or x_vector_only_mode):
            raise InputError(f"ref_audio, ref_text, x_vector_only_mode and voice_clone_prompt clone a voice and "
                             f"need a Base model; these artifacts are a {self.model_type} model")
        if self.model_type == "custom_voice":
            return Prepared(self._custom_voice_rows(text, speaker, language, instruct, nsm))
        if self.model_type == "voice_design":
            if speaker:
                raise InputError("a VoiceDesign model has no preset speakers; describe the voice in instruct")
            return Prepared(self._voice_design_rows(text, instruct, language, nsm))
        if speaker or instruct:
            raise InputError("a Base model clones a voice: give ref_audio (or voice_clone_prompt), not speaker or "
                             "instruct")
        if not cloning:
            raise InputError("a Base model needs the voice to clone: ref_audio with ref_text (or "
                             "x_vector_only_mode), or a voice_clone_prompt (qwen3-tts voice create)")
        if ref_audio is not None and voice_clone_prompt is not None:
            raise InputError("give either ref_audio or voice_clone_prompt, not both")
        rows, prompts = self._voice_clone_rows(text, language, ref_audio, ref_text, x_vector_only_mode,
                                               voice_clone_prompt, nsm)
        return Prepared(rows, prompts)

    def _custom_voice_rows(self, text, speaker, language, instruct, non_streaming_mode) -> list:
        self._require("custom_voice", "generate_custom_voice")
        non_streaming_mode = _flag("non_streaming_mode", non_streaming_mode)
        texts = _as_list(text)
        n = len(texts)
        languages = [self._language(x) for x in _broadcast("language", _as_list(language), n)]
        speakers = [self._speaker(x) for x in _broadcast("speaker", _as_list(speaker), n)]
        instructs = _broadcast("instruct", _as_list(instruct), n)
        if self.model_size == "0b6" and any(not _unset(i) for i in instructs):
            raise InputError("the 0.6B CustomVoice model has no instruct control (the official package silently "
                             "drops it); leave instruct empty or use a 1.7B CustomVoice model")
        return [build_rows(self.cfg, self._text_ids(t), lang, spk, self._instruct_ids(ins), non_streaming_mode)
                for t, lang, spk, ins in zip(texts, languages, speakers, instructs)]

    def generate_custom_voice(self, text, speaker, language=None, instruct=None, non_streaming_mode: bool = True,
                              seed: int | None = None, decode_mode: str = "windowed",
                              **kwargs: Any) -> tuple[list, int]:
        """Speak text with a preset speaker; returns ([float32 waveform per text], 24000)."""
        check_mode(decode_mode)  # before generating, not after
        rows = self._custom_voice_rows(text, speaker, language, instruct, non_streaming_mode)
        return self._finish(self.generate_codes(rows, seed=seed, **kwargs), decode_mode)

    def _voice_design_rows(self, text, instruct, language, non_streaming_mode) -> list:
        self._require("voice_design", "generate_voice_design")
        non_streaming_mode = _flag("non_streaming_mode", non_streaming_mode)
        texts = _as_list(text)
        n = len(texts)
        languages = [self._language(x) for x in _broadcast("language", _as_list(language), n)]
        instructs = _broadcast("instruct", _as_list(instruct), n)
        return [build_rows(self.cfg, self._text_ids(t), lang, None, self._instruct_ids(ins), non_streaming_mode)
                for t, lang, ins in zip(texts, languages, instructs)]

    def generate_voice_design(self, text, instruct, language=None, non_streaming_mode: bool = True,
                              seed: int | None = None, decode_mode: str = "windowed",
                              **kwargs: Any) -> tuple[list, int]:
        """Speak text in a voice described in words (`instruct`); returns ([waveforms], 24000)."""
        check_mode(decode_mode)  # before generating, not after
        rows = self._voice_design_rows(text, instruct, language, non_streaming_mode)
        return self._finish(self.generate_codes(rows, seed=seed, **kwargs), decode_mode)

    # ------------------------------------------------------------------------------------------------ streaming
    @staticmethod
    def _one_text(text, api: str):
        texts = _as_list(text)
        if len(texts) != 1:
            raise InputError(f"{api} streams one text at a time, got {len(texts)}; call it once per text (or use "
                             "the generate_* API for batches)")
        return texts[0]

    def stream_custom_voice(self, text, speaker, language=None, instruct=None, non_streaming_mode: bool = True,
                            seed: int | None = None, first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES,
                            chunk_frames: int = DEFAULT_CHUNK_FRAMES, **kwargs: Any) -> Iterator[AudioChunk]:
        """generate_custom_voice, streamed: yields AudioChunk as frames are generated (first chunk after
        `first_chunk_frames` frames, then every `chunk_frames`). Same seed, same codes as generate_custom_voice;
        the concatenated samples equal its decode_mode="exact" waveform."""
        text = self._one_text(text, "stream_custom_voice")
        row = self._custom_voice_rows(text, speaker, language, instruct, non_streaming_mode)[0]
        return self.stream_rows(row, seed, None, first_chunk_frames, chunk_frames, **kwargs)

    def stream_voice_design(self, text, instruct, language=None, non_streaming_mode: bool = True,
                            seed: int | None = None, first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES,
                            chunk_frames: int = DEFAULT_CHUNK_FRAMES, **kwargs: Any) -> Iterator[AudioChunk]:
        """generate_voice_design, streamed (see stream_custom_voice)."""
        text = self._one_text(text, "stream_voice_design")
        row = self._voice_design_rows(text, instruct, language, non_streaming_mode)[0]
        return self.stream_rows(row, seed, None, first_chunk_frames, chunk_frames, **kwargs)

    def stream_voice_clone(self, text, language=None, ref_audio=None, ref_text=None, x_vector_only_mode: bool = False,
                           voice_clone_prompt=None, non_streaming_mode: bool = False, seed: int | None = None,
                           first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES,
                           chunk_frames: int = DEFAULT_CHUNK_FRAMES, **kwargs: Any) -> Iterator[AudioChunk]:
        """generate_voice_clone, streamed (see stream_custom_voice). In ICL mode the reference codes warm the
        decoder state and are not part of the output."""
        text = self._one_text(text, "stream_voice_clone")
        if isinstance(voice_clone_prompt, list) and len(voice_clone_prompt) != 1:
            raise InputError("stream_voice_clone streams one text with one voice prompt")
        rows, prompts = self._voice_clone_rows(text, language, ref_audio, ref_text, x_vector_only_mode,
                                               voice_clone_prompt, non_streaming_mode)
        warm = prompts[0].ref_codes if prompts[0].icl_mode else None
        return self.stream_rows(rows[0], seed, warm, first_chunk_frames, chunk_frames, **kwargs)

    # ------------------------------------------------------------------------------------------------ voice cloning
    def _reference_audio(self, audio) -> np.ndarray:
        """Any accepted audio form -> checked 24 kHz mono float32."""
        wav, sr = audio_mod.load(audio)
        audio_mod.check(wav, sr)
        return audio_mod.resample(wav, sr)

    @staticmethod
    def _check_wav24(wav24) -> np.ndarray:
        wav24 = np.asarray(wav24, dtype=np.float32)
        if wav24.ndim != 1 or wav24.shape[0] < audio_mod.MIN_REF_SAMPLES:
            raise InputError(f"expected 24 kHz mono samples [n >= {audio_mod.MIN_REF_SAMPLES}], got shape "
                             f"{wav24.shape}; create_voice_clone_prompt takes audio in any form")
        return wav24

    def speaker_embedding(self, wav24: np.ndarray) -> np.ndarray:
        """24 kHz mono -> x-vector [H] (log-mel front end + speaker_encoder graph)."""
        mels = audio_mod.log_mel(self._check_wav24(wav24))[None]
        return self.sessions["speaker_encoder"].run(["x_vector"], {"mels": mels})[0][0]

    def encode_speech(self, wav24: np.ndarray) -> np.ndarray:
        """24 kHz mono -> codes [ceil(n / 1920), 16] int64 (speech_encoder graph), as the official encode."""
        wav24 = self._check_wav24(wav24)
        codes = self.sessions["speech_encoder"].run(["codes"], {"waveform": wav24[None].astype(np.float32)})[0][0]
        return np.ascontiguousarray(codes[:, :-(-wav24.shape[0] // C.SAMPLES_PER_FRAME)].T)

    def create_voice_clone_prompt(self, ref_audio, ref_text: str | list | None = None,
                                  x_vector_only_mode: bool | list = False) -> list[VoicePrompt]:
        """Encode reference voice(s) once: one VoicePrompt per audio (save it with `.save(path)`).

        ref_audio: a path, bytes, base64 string or (samples, sample_rate), or a list of them. ICL mode
        (x_vector_only_mode=False, the default) needs the reference transcript in ref_text."""
        self._require("base", "create_voice_clone_prompt")
        audios = ref_audio if isinstance(ref_audio, list) else [ref_audio]
        n = len(audios)
        texts = ref_text if isinstance(ref_text, list) else [ref_text] * n
        modes = x_vector_only_mode if isinstance(x_vector_only_mode, list) else [x_vector_only_mode] * n
        if len(texts) != n or len(modes) != n:
            raise InputError(f"batch size mismatch: ref_audio={n}, ref_text={len(texts)}, "
                             f"x_vector_only_mode={len(modes)}")
        items = []
        for i, (audio, rtext, xonly) in enumerate(zip(audios, texts, modes)):
            if not xonly:
                if rtext is None or rtext == "":
                    raise InputError(f"ref_text is required in ICL mode (item {i}): pass the transcript of the "
                                     "reference audio, or x_vector_only_mode=True to clone from the x-vector alone")
                self.tokenizer.check_text(rtext, "ref_text")
            wav24 = self._reference_audio(audio)
            codes = None if xonly else self.encode_speech(wav24)
            items.append(VoicePrompt(self.speaker_embedding(wav24), codes, rtext, bool(xonly), self.model_size))
        return items

    def _voice_prompts(self, voice_clone_prompt, ref_audio, ref_text, x_vector_only_mode, n: int) -> list:
        if voice_clone_prompt is None:
            if ref_audio is None:
                raise InputError("pass ref_audio (with ref_text for ICL mode) or a voice_clone_prompt")
            prompts = self.create_voice_clone_prompt(ref_audio, ref_text, x_vector_only_mode)
        elif isinstance(voice_clone_prompt, dict):  # the official dict form (voice.prompts_from_dict)
            prompts = prompts_from_dict(voice_clone_prompt, self.model_size)
        else:
            items = voice_clone_prompt if isinstance(voice_clone_prompt, list) else [voice_clone_prompt]
            prompts = []
            for p in items:
                if isinstance(p, (str, os.PathLike)):
                    p = VoicePrompt.load(p)
                elif not isinstance(p, VoicePrompt):
                    raise InputError(f"voice_clone_prompt items must be VoicePrompt objects (from "
                                     f"create_voice_clone_prompt), saved prompt files or the official dict form, "
                                     f"got {type(p).__name__}")
                p.validate()
                prompts.append(p)
        if len(prompts) == 1 and n > 1:
            prompts = prompts * n
        if len(prompts) != n:
            raise InputError(f"batch size mismatch: {n} texts but {len(prompts)} voice prompts")
        for p in prompts:
            p.check_model(self.model_size, self.cfg["hidden_size"])
        return prompts

    def _voice_clone_rows(self, text, language, ref_audio, ref_text, x_vector_only_mode, voice_clone_prompt,
                          non_streaming_mode) -> tuple[list, list]:
        self._require("base", "generate_voice_clone")
        non_streaming_mode = _flag("non_streaming_mode", non_streaming_mode)
        texts = _as_list(text)
        n = len(texts)
        languages = [self._language(x) for x in _broadcast("language", _as_list(language), n)]
        text_ids = [self._text_ids(t) for t in texts]
        prompts = self._voice_prompts(voice_clone_prompt, ref_audio, ref_text, x_vector_only_mode, n)
        rows = []
        for ids, lang, p in zip(text_ids, languages, prompts):
            icl = None
            if p.icl_mode:
                rids = self.tokenizer.encode(reference_text(self.tokenizer.check_text(p.ref_text, "ref_text")))[3:-2]
                frames = self.sessions["codec_embedder"].run(["embeds"], {"codes": p.ref_codes[None]})[0][0]
                icl = ICLReference(rids, frames)
            rows.append(build_rows(self.cfg, ids, lang, None, None, non_streaming_mode, x_vector=p.x_vector, icl=icl))
        return rows, prompts

    def decode_clone(self, codes: np.ndarray, prompt: VoicePrompt, decode_mode: str = "windowed") -> np.ndarray:
        """Generated codes -> waveform; in ICL mode the reference codes go in front for decoding and the reference
        part is cut off afterwards, with the official float arithmetic (it keeps one extra sample for ~4 % of
        lengths)."""
        if not prompt.icl_mode:
            return self.decode(codes, decode_mode)
        full = np.concatenate([prompt.ref_codes, codes.reshape(-1, C.NUM_CODE_GROUPS)], axis=0)
        ref_len, total_len = int(prompt.ref_codes.shape[0]), int(full.shape[0])
        cut = int(ref_len / max(total_len, 1) * (total_len * C.SAMPLES_PER_FRAME))  # on the whole decode's length
        # The reference's samples are only skipped through (SpeechDecoder.skip), but for its last frame: the
        # official cut can fall one sample short of the reference's end.
        start = min(max(ref_len - 1, 0), cut // C.SAMPLES_PER_FRAME)
        wav = self.decoder.decode(full, decode_mode, start=start)
        return wav[cut - start * C.SAMPLES_PER_FRAME:]

    def generate_voice_clone(self, text, language=None, ref_audio=None, ref_text=None,
                             x_vector_only_mode: bool | list = False, voice_clone_prompt=None,
                             non_streaming_mode: bool = False, seed: int | None = None,
                             decode_mode: str = "windowed", **kwargs: Any) -> tuple[list, int]:
        """Speak text in the voice of a reference recording (Base models); returns ([waveforms], 24000).

        Give ref_audio (+ ref_text for ICL mode, or x_vector_only_mode=True), or a voice_clone_prompt from
        create_voice_clone_prompt (a VoicePrompt, a list of them, or saved prompt file paths), or the official dict
        form (lists ref_code, ref_spk_embedding, x_vector_only_mode, icl_mode; ICL entries also need ref_text)."""
        check_mode(decode_mode)  # before generating, not after
        rows, prompts = self._voice_clone_rows(text, language, ref_audio, ref_text, x_vector_only_mode,
                                               voice_clone_prompt, non_streaming_mode)
        codes = self.generate_codes(rows, seed=seed, **kwargs)
        return [self.decode_clone(c, p, decode_mode) for c, p in zip(codes, prompts)], C.SAMPLE_RATE
