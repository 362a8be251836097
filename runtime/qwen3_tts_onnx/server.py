"""An OpenAI-compatible speech server: `qwen3-tts serve --model DIR [--host 127.0.0.1] [--port 8000]`.

    POST /v1/audio/speech   OpenAI body (model, input, voice, response_format wav|pcm|flac, speed, stream) plus the
                            model's own options (language, instruct, seed, sampling, max_new_tokens); unknown fields
                            are rejected (400). stream=true sends audio as it is generated (wav with an open-ended
                            header, or raw pcm: 16-bit little-endian mono at 24 kHz) with chunked transfer.
    GET  /v1/models, /v1/voices, /health; the OpenAPI schema at /openapi.json, docs at /docs.

Each request is split into sentences (longform.py), each sentence generated with a token budget scaled to its
length, decoded from a fresh decoder state and streamed in order, joined sample-exactly. A sentence that runs away
(longform.RunawayGuard) or spends its token budget without EOS is cut there and the next one plays; the response
reports it (X-Generation-Stopped when not streamed; /health counts runaway_stops and budget_stops; a warning is
logged). Up to `max_active` requests generate at once, batched (batching.py): their sentences run as rows of shared
frame loops, `max_batch` rows per loop; up to `max_queue` more requests wait, beyond that a 429 answers at once. A
request submits its sentences progressively (the one being streamed and `lookahead` more), so a long text cannot
fill the frame loops ahead of later requests. Each row has its own seed, budget and decoder state, so a response is
what the same request gets alone with the same seed. A client that disconnects stops its rows once the chunk being
generated is done (a non-streaming request notices between chunks).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from . import contracts as C
from .api import HARD_DEFAULTS
from .audio import pcm16, wav_header
from .batching import Batcher, Job
from .errors import InputError, Qwen3TTSError
from .longform import DEFAULT_MAX_CHARS, split_text, token_budget
from .voice import VoicePrompt

MAX_INPUT_CHARS = 20000  # about 20 minutes of speech
MAX_BODY_BYTES = 256 * 1024
MAX_INSTRUCT_CHARS = 4096  # a style or voice description, a few sentences
MAX_NAME_CHARS = 256  # model, voice and language names
FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac"}
LOOKAHEAD = 2  # sentences a request has generating ahead of the one it streams
log = logging.getLogger(__name__)


def encode_audio(samples: np.ndarray, fmt: str) -> bytes:
    if fmt == "pcm":
        return pcm16(samples)
    if fmt == "wav":
        return wav_header(samples.shape[0]) + pcm16(samples)
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, C.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


class Synthesizer:
    """The request -> audio-chunks logic, independent of HTTP: voices, sentence pieces, budgets, and the batcher
    that runs the pieces (with a runaway guard each)."""

    def __init__(self, tts, voices_dir: str | Path | None = None, max_chars: int = DEFAULT_MAX_CHARS,
                 max_batch: int = 8, workers: int = 2, lookahead: int = LOOKAHEAD):
        self.tts, self.max_chars, self.lookahead = tts, max_chars, lookahead
        self.batcher = Batcher(tts, max_batch=max_batch, workers=workers)
        self.runaway_stops = 0  # statistics: pieces cut by the runaway guard,
        self.budget_stops = 0  # and pieces that spent their token budget without EOS
        self._stats = threading.Lock()
        self.voices: dict[str, VoicePrompt] = {}
        if voices_dir is not None:
            for path in sorted(Path(voices_dir).glob("*.qvoice*")):
                prompt = VoicePrompt.load(path)
                prompt.check_model(tts.model_size, tts.cfg["hidden_size"])
                self.voices[path.name.split(".qvoice")[0]] = prompt

    def voice_names(self) -> list[str]:
        if self.tts.model_type == "custom_voice":
            return self.tts.get_supported_speakers()
        if self.tts.model_type == "base":
            return sorted(self.voices)
        return ["default"]  # VoiceDesign: the voice is described by `instruct`

    def check_voice(self, voice: str | None) -> None:
        t = self.tts.model_type
        if t == "custom_voice" and (voice or "").lower() not in self.voice_names():
            raise InputError(f"unknown voice {voice!r}; this CustomVoice model has {self.voice_names()}")
        if t == "base" and voice not in self.voices:
            raise InputError(f"unknown voice {voice!r}; saved voices: {sorted(self.voices)} (start the server with "
                             "--voices DIR holding voice prompts from `qwen3-tts voice create`)")
        if t == "voice_design" and voice not in (None, "", "default"):
            raise InputError("a VoiceDesign model has no named voices: describe the voice in `instruct` and send "
                             "voice 'default' (or none)")

    def chunks(self, text: str, voice: str | None, language: str | None, instruct: str | None, seed: int | None,
               options: dict, report: dict):
        """A generator of AudioChunk for the whole text, piece by piece (each piece seeded seed + index), in order.
        Pieces are submitted to the batcher progressively: the one being streamed and `lookahead` more generate
        side by side. A piece the runaway guard stops, or that ends its budget without EOS, is cut there
        (report["stopped"] says which and why) and the next piece plays."""
        self.check_voice(voice)
        tts = self.tts
        pieces = split_text(text, self.max_chars)
        if not pieces:
            raise InputError("input is empty; give the text to speak")
        cap = int(options.pop("max_new_tokens", None)
                  or tts.generate_defaults.get("max_new_tokens", HARD_DEFAULTS["max_new_tokens"]))
        if tts.model_type == "voice_design" and not instruct:
            raise InputError("a VoiceDesign model needs `instruct`: a description of the voice")
        speaker = voice if tts.model_type == "custom_voice" else None
        prompt = self.voices[voice] if tts.model_type == "base" else None
        plans = []
        for i, piece in enumerate(pieces):  # check everything before the first sample goes out
            p = tts.prepare(piece, speaker=speaker, language=language, instruct=instruct, voice_clone_prompt=prompt)
            n_tokens = len(tts._text_ids(piece)) - 8
            plans.append((p.rows[0], p.warm_codes(0), token_budget(n_tokens, cap), None if seed is None else seed + i))
        cap = tts._options(dict(options, max_new_tokens=cap)).max_new_tokens  # bad options fail here, before streaming
        jobs = [Job(row, piece_seed, min(budget, cap), dict(options), warm) for row, warm, budget, piece_seed in plans]
        report.update(pieces=len(pieces), frames=0, stopped=[])
        submitted = 0
        try:
            for i, job in enumerate(jobs):
                ahead = min(len(jobs), i + 1 + self.lookahead)
                if ahead > submitted:  # one call: the first pieces start in one batch
                    self.batcher.submit(jobs[submitted:ahead])
                    submitted = ahead
                frames = 0
                for chunk in job.results():
                    frames += chunk.codes.shape[0]
                    report["frames"] += chunk.codes.shape[0]
                    yield chunk
                if job.stopped:
                    why = f"piece {i + 1} of {len(jobs)} cut after {frames} frames: {job.stopped}"
                    report["stopped"].append(why)
                    with self._stats:
                        if job.stopped_by == "budget":
                            self.budget_stops += 1
                        else:
                            self.runaway_stops += 1
                    log.warning("%s (text %r)", why, pieces[i][:80])
        finally:
            for job in jobs:  # the client left: the pieces still running stop at the next frame
                job.cancel()


class BodyLimit:
    """Pure ASGI middleware: a request body over `limit` bytes gets a 413, whether announced in Content-Length or
    sent chunked (counted as it arrives, never held beyond the limit). The body is read here and handed to the app in
    one message; after it the app receives from the server as usual (disconnect notices)."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                first = message
                break
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(parts), "more_body": False}
                break
        pending = [first]

        async def replay():
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        await _error(413, f"request body over {self.limit} bytes")(scope, receive, send)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field("qwen3-tts", max_length=MAX_NAME_CHARS,
                       description="accepted for OpenAI compatibility: the server serves one model")
    input: str = Field(..., min_length=1, max_length=MAX_INPUT_CHARS, description="text to speak")
    voice: str | None = Field(None, max_length=MAX_NAME_CHARS, description="preset speaker (CustomVoice), saved "
                              "voice name (Base), 'default' (VoiceDesign)")
    response_format: Literal["wav", "pcm", "flac", "mp3", "opus", "aac"] = "wav"
    speed: float = Field(1.0, description="only 1.0: the model has no speed control")
    stream: bool = False
    stream_format: Literal["audio"] | None = None
    instructions: str | None = Field(None, max_length=MAX_INSTRUCT_CHARS, description="OpenAI's name for `instruct`")
    language: str | None = Field(None, max_length=MAX_NAME_CHARS)
    instruct: str | None = Field(None, max_length=MAX_INSTRUCT_CHARS, description="style instruction (1.7B "
                                 "CustomVoice) or voice description (VoiceDesign)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    do_sample: bool | None = None
    temperature: float | None = Field(None, gt=0, le=10)
    top_k: int | None = Field(None, ge=0, le=C.CODEBOOK_SIZE)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    subtalker_dosample: bool | None = None
    subtalker_temperature: float | None = Field(None, gt=0, le=10)
    subtalker_top_k: int | None = Field(None, ge=0, le=C.CODEBOOK_SIZE)
    subtalker_top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, ge=1, le=8192)


def create_app(tts, voices_dir=None, max_active: int = 8, max_queue: int = 16, model_name: str | None = None,
               max_chars: int = DEFAULT_MAX_CHARS, max_batch: int = 8, workers: int = 2):
    """The FastAPI application around a loaded Qwen3TTS. max_active requests generate at once (batched, max_batch
    rows per frame loop, `workers` loops at once); max_queue more wait; beyond that, 429."""
    synth = Synthesizer(tts, voices_dir, max_chars, max_batch=max_batch, workers=workers)
    name = model_name or f"qwen3-tts-{tts.model_size}-{tts.model_type}"
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        synth.batcher.close(timeout=5)

    app = FastAPI(title="qwen3-tts-onnx", description=__doc__, version="0.1.0", lifespan=lifespan)
    app.state.synthesizer = synth
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    state = {"active": 0, "waiting": 0}
    slots = asyncio.Semaphore(max_active)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        msgs = [f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in exc.errors()]
        return _error(400, "; ".join(msgs) or "invalid request")

    @app.exception_handler(Qwen3TTSError)
    async def _bad_input(_request, exc: Qwen3TTSError):
        return _error(400, str(exc))

    @app.get("/health")
    async def health():
        b = synth.batcher
        return {"status": "ok", "active": state["active"], "waiting": state["waiting"], "rows_active": b.rows_active,
                "rows_waiting": b.rows_waiting, "batches_run": b.batches_run, "rows_run": b.rows_run,
                "frames_run": b.frames_run, "runaway_stops": synth.runaway_stops, "budget_stops": synth.budget_stops}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "qwen3-tts-onnx",
                                             "type": tts.model_type, "size": tts.model_size}]}

    @app.get("/v1/voices")
    async def voices():
        return {"voices": synth.voice_names(), "languages": tts.get_supported_languages()}

    @app.post("/v1/audio/speech", responses={200: {"content": {m: {} for m in FORMATS.values()}}})
    async def speech(req: SpeechRequest, request: Request):
        if req.response_format not in FORMATS:
            return _error(400, f"response_format {req.response_format!r} is not supported; use wav, pcm or flac")
        if req.speed != 1.0:
            return _error(400, "speed other than 1.0 is not supported: Qwen3-TTS has no speed control")
        if req.stream and req.response_format == "flac":
            return _error(400, "streaming sends wav or pcm; use response_format wav or pcm with stream=true")
        if req.instructions and req.instruct and req.instructions != req.instruct:
            return _error(400, "give the instruction in `instruct` or `instructions`, not two different ones")
        if state["active"] + state["waiting"] >= max_active + max_queue:
            return _error(429, f"server busy: {max_active} requests running and {max_queue} waiting; retry later",
                         "rate_limit_error")
        opts = {k: v for k, v in req.model_dump().items() if k in HARD_DEFAULTS and v is not None}
        report: dict = {}
        gen = synth.chunks(req.input, req.voice, req.language, req.instruct or req.instructions, req.seed, opts,
                           report)
        state["waiting"] += 1
        try:
            await slots.acquire()
        finally:
            state["waiting"] -= 1
        state["active"] += 1

        def release() -> None:
            state["active"] -= 1
            slots.release()

        try:
            first = await run_in_threadpool(next, gen, None)  # input errors surface here, as a 400
        except BaseException:
            release()
            raise
        if not req.stream:
            try:
                chunks = [] if first is None else [first]
                left = False
                while first is not None:
                    if await request.is_disconnected():  # the client left: stop generating (gen.close below)
                        left = True
                        break
                    chunk = await run_in_threadpool(next, gen, None)
                    if chunk is None:
                        break
                    chunks.append(chunk)
            finally:
                gen.close()
                release()
            if left:
                return Response(status_code=499)  # nobody is listening (nginx's "client closed request")
            samples = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)
            headers = {"X-Frames": str(report.get("frames", 0)), "X-Pieces": str(report.get("pieces", 0))}
            if report.get("stopped"):
                headers["X-Generation-Stopped"] = "; ".join(report["stopped"])
            return Response(encode_audio(samples, req.response_format), media_type=FORMATS[req.response_format],
                            headers=headers)

        async def body():
            try:
                if req.response_format == "wav":
                    yield wav_header(None)
                if first is not None:
                    yield pcm16(first.samples)
                while not await request.is_disconnected():
                    chunk = await run_in_threadpool(next, gen, None)
                    if chunk is None:
                        return
                    yield pcm16(chunk.samples)
            finally:
                # No await here: after a disconnect the task is cancelled and an await would raise at once. The
                # generator is suspended (to_thread waits for the running chunk), so closing it is immediate: it
                # stops the frame loop and frees the KV cache and decoder state.
                gen.close()
                release()

        return StreamingResponse(body(), media_type=FORMATS[req.response_format])

    return app


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, voices_dir=None, threads: int | None = None,
          max_active: int = 8, max_queue: int = 16, max_batch: int = 8, cuda_graphs: bool = False,
          revision: str | None = None) -> None:
    import uvicorn

    from .api import Qwen3TTS

    tts = Qwen3TTS.from_pretrained(model, threads=threads, cuda_graphs=cuda_graphs, revision=revision)
    app = create_app(tts, voices_dir, max_active=max_active, max_queue=max_queue, max_batch=max_batch)
    uvicorn.run(app, host=host, port=port, log_level="info")
