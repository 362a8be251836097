"""Qwen3TTS: the public API, shaped like the official `Qwen3TTSModel` so switching is a change of import.

    tts = Qwen3TTS.from_pretrained("artifacts/0.6B-CustomVoice")
    wavs, sr = tts.generate_custom_voice("Hello there.", speaker="Ryan", language="English")

Every generation keyword argument of the official API is accepted with the official default (explicit value ->
the checkpoint's generation_config.json -> the official hard default); `seed` makes sampling reproducible.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import artifacts as artifacts_mod
from . import contracts as C
from . import sessions as sessions_mod
from .decode import decode_windowed
from .errors import InputError
from .generate import FrameLoop, GenerationOptions, collect
from .prompt import MAX_TEXT_TOKENS, TextTokenizer, assistant_text, build_rows, instruct_text, left_pad

GRAPHS = ("text_embedder", "talker", "code_predictor", "speech_decoder")
HARD_DEFAULTS = dict(do_sample=True, top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05,
                     subtalker_dosample=True, subtalker_top_k=50, subtalker_top_p=1.0, subtalker_temperature=0.9,
                     max_new_tokens=2048)


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _broadcast(name: str, values: list, n: int) -> list:
    if len(values) == 1 and n > 1:
        return values * n
    if len(values) != n:
        raise InputError(f"batch size mismatch: {n} texts but {len(values)} values of {name}")
    return values


class Qwen3TTS:
    def __init__(self, arts: artifacts_mod.Artifacts, sessions: dict):
        self.artifacts = arts
        self.cfg = arts.config
        self.model_type, self.model_size = arts.model_type, arts.model_size
        self.sessions = sessions
        self.tokenizer = TextTokenizer(arts.root / C.TOKENIZER)
        self.generate_defaults = dict(arts.manifest.get("generation_defaults", {}))
        self._loop = FrameLoop(sessions["talker"], sessions["code_predictor"], self.cfg)

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path, providers=None, threads: int | None = None, verify: bool = True) -> "Qwen3TTS":
        """Load exported artifacts (a directory with manifest.json). providers: ONNX Runtime execution providers,
        CUDA first when available. verify: check every file's sha256 against the manifest."""
        arts = artifacts_mod.load(path, verify_hashes=verify)
        sessions = {g: sessions_mod.create(arts.graph_path(g), providers, threads) for g in GRAPHS}
        return cls(arts, sessions)

    @classmethod
    def from_sessions(cls, path, sessions: dict, verify: bool = False) -> "Qwen3TTS":
        """Bring your own tuned `onnxruntime.InferenceSession`s, keyed by graph name (any left out are created)."""
        arts = artifacts_mod.load(path, verify_hashes=verify)
        sessions = dict(sessions)
        for g in GRAPHS:
            if g not in sessions:
                sessions[g] = sessions_mod.create(arts.graph_path(g))
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
        if speaker is None or speaker == "":
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
            merged[k] = v if v is not None else self.generate_defaults.get(k, hard)
        o = GenerationOptions(**merged)
        if int(o.max_new_tokens) < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {o.max_new_tokens}")
        o.max_new_tokens = min(int(o.max_new_tokens), self.cfg["max_position_embeddings"] - MAX_TEXT_TOKENS - 64)
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
        if instruct is None or instruct == "":
            return None
        ids = self.tokenizer.encode(instruct_text(self.tokenizer.check_text(instruct, "instruct")))
        if len(ids) > MAX_TEXT_TOKENS:
            raise InputError(f"instruct is {len(ids)} tokens long; the limit is {MAX_TEXT_TOKENS}")
        return ids

    # ------------------------------------------------------------------------------------------------ low level
    def _embed(self, text_ids: list, codec_ids: list) -> np.ndarray:
        t = np.asarray([text_ids], dtype=np.int64)
        c = np.asarray([codec_ids], dtype=np.int64)
        return self.sessions["text_embedder"].run(["embeds"], {"text_ids": t, "codec_ids": c})[0][0]

    def generate_codes(self, rows: list, seed: int | None = None, **kwargs) -> list:
        """Prompt rows (prompt.PromptRows, one per item) -> per-item codes [F_i, 16] int64 (EOS excluded)."""
        opts = self._options(kwargs)
        h = self.cfg["hidden_size"]
        embeds = [self._embed(r.text_ids, r.codec_ids) for r in rows]
        pad_embed = self._embed([self.cfg["tts_pad_token_id"]], [-1])[0]
        tmax = max(len(r.trailing_ids) for r in rows)
        trailing = np.broadcast_to(pad_embed, (len(rows), tmax, h)).copy()
        for i, r in enumerate(rows):
            trailing[i, :len(r.trailing_ids)] = self._embed(r.trailing_ids, [-1] * len(r.trailing_ids))
        x, mask, pos = left_pad(embeds, h)
        rng = np.random.default_rng(seed)
        return collect(self._loop.run(x, mask, pos, trailing, pad_embed, opts, rng), len(rows))

    def decode(self, codes) -> np.ndarray:
        """codes [F, 16] -> float32 waveform at 24 kHz (the official 300/25 windowed decode)."""
        return decode_windowed(self.sessions["speech_decoder"], codes)

    def _finish(self, codes: list) -> tuple[list, int]:
        return [self.decode(c) for c in codes], C.SAMPLE_RATE

    # ------------------------------------------------------------------------------------------------ official API
    def _custom_voice_rows(self, text, speaker, language, instruct, non_streaming_mode) -> list:
        self._require("custom_voice", "generate_custom_voice")
        texts = _as_list(text)
        n = len(texts)
        languages = [self._language(x) for x in _broadcast("language", _as_list(language), n)]
        speakers = [self._speaker(x) for x in _broadcast("speaker", _as_list(speaker), n)]
        instructs = _broadcast("instruct", _as_list(instruct), n)
        if self.model_size == "0b6" and any(i not in (None, "") for i in instructs):
            raise InputError("the 0.6B CustomVoice model has no instruct control (the official package silently "
                             "drops it); leave instruct empty or use a 1.7B CustomVoice model")
        return [build_rows(self.cfg, self._text_ids(t), lang, spk, self._instruct_ids(ins), non_streaming_mode)
                for t, lang, spk, ins in zip(texts, languages, speakers, instructs)]

    def generate_custom_voice(self, text, speaker, language=None, instruct=None, non_streaming_mode: bool = True,
                              seed: int | None = None, **kwargs: Any) -> tuple[list, int]:
        """Speak text with a preset speaker; returns ([float32 waveform per text], 24000)."""
        rows = self._custom_voice_rows(text, speaker, language, instruct, non_streaming_mode)
        return self._finish(self.generate_codes(rows, seed=seed, **kwargs))

    def _voice_design_rows(self, text, instruct, language, non_streaming_mode) -> list:
        self._require("voice_design", "generate_voice_design")
        texts = _as_list(text)
        n = len(texts)
        languages = [self._language(x) for x in _broadcast("language", _as_list(language), n)]
        instructs = _broadcast("instruct", _as_list(instruct), n)
        return [build_rows(self.cfg, self._text_ids(t), lang, None, self._instruct_ids(ins), non_streaming_mode)
                for t, lang, ins in zip(texts, languages, instructs)]

    def generate_voice_design(self, text, instruct, language=None, non_streaming_mode: bool = True,
                              seed: int | None = None, **kwargs: Any) -> tuple[list, int]:
        """Speak text in a voice described in words (`instruct`); returns ([waveforms], 24000)."""
        rows = self._voice_design_rows(text, instruct, language, non_streaming_mode)
        return self._finish(self.generate_codes(rows, seed=seed, **kwargs))

    def generate_voice_clone(self, *args, **kwargs):
        self._require("base", "generate_voice_clone")
        raise InputError("voice cloning needs the speaker-encoder and speech-encoder graphs, which this version does "
                         "not export yet")
