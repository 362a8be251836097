"""The OpenAI-compatible server on loopback with a real HTTP client: formats, streaming, bad requests (4xx, never
500), the queue limit, client disconnects, long text; and a bounded load test of 32 concurrent streams."""
from __future__ import annotations

import gc
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf

from qwen3_tts_onnx.server import create_app

TEXT = "Hello world, this is a test of the parity harness."
GREEDY = {"do_sample": False, "subtalker_dosample": False}


class Server:
    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(models):
    s = Server(create_app(models("cv_wide").ours, max_active=8, max_queue=40, max_chars=60))
    yield s
    s.stop()


def _post(server, timeout=120, **body):
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=timeout)


def _speech(**kw):
    return {"model": "qwen3-tts", "input": TEXT, "voice": "ryan", "language": "english", "max_new_tokens": 30,
            **GREEDY, **kw}


def test_formats_decode_to_the_expected_length(server):
    wav = _post(server, **_speech(response_format="wav"))
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    frames = int(wav.headers["x-frames"])
    assert frames >= 20
    data, sr = sf.read(io.BytesIO(wav.content), dtype="float32")
    assert sr == 24000 and data.shape == (frames * 1920,)
    pcm = _post(server, **_speech(response_format="pcm"))
    assert len(pcm.content) == 2 * frames * 1920
    flac = _post(server, **_speech(response_format="flac"))
    fdata, fsr = sf.read(io.BytesIO(flac.content), dtype="float32")
    assert fsr == 24000 and fdata.shape == data.shape
    np.testing.assert_array_equal(np.frombuffer(pcm.content, "<i2"), np.rint(data * 32768).astype("<i2"))
    assert np.abs(fdata - data).max() <= 1 / 32768


def test_stream_arrives_in_chunks_and_equals_the_whole(server):
    whole = _post(server, **_speech(response_format="pcm", seed=3))
    pieces, first_at, t0 = [], None, time.perf_counter()
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=_speech(response_format="pcm", stream=True,
                                                                           seed=3), timeout=120) as r:
        assert r.status_code == 200
        for part in r.iter_raw():
            first_at = first_at or time.perf_counter() - t0
            pieces.append(part)
    assert len(pieces) >= 3  # 2 frames first, then 12-frame chunks
    assert b"".join(pieces) == whole.content
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=_speech(stream=True, seed=3), timeout=120) as r:
        body = r.read()  # a streamed WAV: open-ended header, then the same PCM
    assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt " and body[36:40] == b"data"
    assert body[44:] == whole.content


@pytest.mark.parametrize("body,status,words", [
    (dict(voice="nobody"), 400, "unknown voice"),
    (dict(speed=1.5), 400, "speed"),
    (dict(response_format="mp3"), 400, "not supported"),
    (dict(response_format="flac", stream=True), 400, "wav or pcm"),
    (dict(input=""), 400, "input"),
    (dict(input="x" * 20001), 400, "input"),
    (dict(input="Hi <|im_end|> there."), 400, "special token"),
    (dict(temperature=-1), 400, "temperature"),
    (dict(top_k="many"), 400, "top_k"),
    (dict(language="klingon"), 400, "language"),
    (dict(unknown_field=1), 400, "unknown_field"),
    (dict(instruct="Cheerful.", instructions="Sad."), 400, "instruct"),
    (dict(instruct="x" * 4097), 400, "instruct"),
    (dict(instructions="x" * 4097), 400, "instructions"),
    (dict(voice="v" * 257), 400, "voice"),
    (dict(language="l" * 257), 400, "language"),
    (dict(model="m" * 257), 400, "model"),
])
def test_bad_requests_get_4xx_with_a_message(server, body, status, words):
    r = _post(server, **_speech(**body))
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["error"]["message"].lower()


def test_malformed_json_and_oversized_body(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", content=b"{not json", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(f"{server.url}/v1/audio/speech", content=b"x" * 300000, timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "262144 bytes" in r.json()["error"]["message"]


def test_chunked_body_over_the_limit(server):
    """Without Content-Length (chunked transfer) the body is counted as it arrives: a valid request padded past
    256 KiB with JSON whitespace is refused, the same request within the limit is served."""
    body = json.dumps(_speech(max_new_tokens=3)).encode()

    def chunks(padding: int):
        yield body[:-1]
        for _ in range(padding // 16384):
            yield b" " * 16384
        yield body[-1:]

    r = httpx.post(f"{server.url}/v1/audio/speech", content=chunks(300000), timeout=30,
                   headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413 and "262144 bytes" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/v1/audio/speech", content=chunks(200000), timeout=30,
                   headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked" and r.status_code == 200, r.text


def test_info_endpoints(server):
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/v1/models").json()["data"][0]["type"] == "custom_voice"
    v = httpx.get(f"{server.url}/v1/voices").json()
    assert "ryan" in v["voices"] and "english" in v["languages"]
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/audio/speech" in schema["paths"]


def test_long_text_is_split_and_spoken_in_order(server):
    text = "First sentence here. Second one follows! And a third? " * 3
    r = _post(server, **_speech(input=text, response_format="pcm", max_new_tokens=12))
    assert r.status_code == 200 and int(r.headers["x-pieces"]) >= 3
    assert len(r.content) == 2 * 1920 * int(r.headers["x-frames"])


def _wait_idle(server, timeout=60):
    for _ in range(int(timeout / 0.1)):
        h = httpx.get(f"{server.url}/health").json()
        if h["active"] == 0 and h["waiting"] == 0:
            return h
        time.sleep(0.1)
    raise AssertionError(f"server still busy: {h}")


def test_client_disconnect_stops_generation(server):
    with httpx.stream("POST", f"{server.url}/v1/audio/speech",
                      json=_speech(stream=True, max_new_tokens=400, input=TEXT * 3), timeout=60) as r:
        next(r.iter_raw())
    _wait_idle(server, timeout=30)  # the stream was abandoned after its first chunk: its slot is free again


def test_queue_full_gives_429(models, monkeypatch):
    from qwen3_tts_onnx import server as srv

    gate = threading.Event()
    real = srv.Synthesizer.chunks

    def held(self, *args, **kwargs):  # the first request keeps its slot until the test opens the gate
        for i, chunk in enumerate(real(self, *args, **kwargs)):
            yield chunk
            if i == 0:
                gate.wait(60)

    monkeypatch.setattr(srv.Synthesizer, "chunks", held)
    s = Server(create_app(models("cv_wide").ours, max_active=1, max_queue=0))
    try:
        with httpx.stream("POST", f"{s.url}/v1/audio/speech", json=_speech(stream=True), timeout=60) as r:
            next(r.iter_raw())  # holds the only slot
            for _ in range(100):  # the slot is taken once the server reports it (the header may come first)
                if httpx.get(f"{s.url}/health").json()["active"] == 1:
                    break
                time.sleep(0.05)
            busy = _post(s, **_speech())
            assert busy.status_code == 429 and "busy" in busy.json()["error"]["message"]
            gate.set()
        _wait_idle(s)
        assert _post(s, **_speech(max_new_tokens=5)).status_code == 200
    finally:
        gate.set()
        s.stop()


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_load_32_concurrent_streams(server, record_property):
    """32 streaming requests at once (bounded: 12 frames each), batched 8 at a time: all complete, each checked one
    equals the same request served alone, no errors, and resident memory returns near its baseline."""
    def body(i):
        return _speech(stream=True, response_format="pcm", seed=i, do_sample=True, subtalker_dosample=True,
                       max_new_tokens=13, input=f"Request number {i}. " + TEXT)

    alone = {i: _post(server, **{**body(i), "stream": False}).content for i in range(0, 32, 6)}
    gc.collect()
    base = _rss_mb()

    def run(i):
        t = time.perf_counter()
        with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body(i), timeout=300) as r:
            assert r.status_code == 200
            data = r.read()
        return i, data, time.perf_counter() - t

    before = httpx.get(f"{server.url}/health").json()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(run, range(32)))
    wall = time.perf_counter() - t0
    assert all(len(d) > 0 and len(d) % (2 * 1920) == 0 for _, d, _ in results)
    for i, data, _ in results:
        if i in alone:
            assert data == alone[i]
    _wait_idle(server)
    after = httpx.get(f"{server.url}/health").json()
    batches, rows = after["batches_run"] - before["batches_run"], after["rows_run"] - before["rows_run"]
    assert rows >= 32 and batches < rows  # requests really shared frame loops
    gc.collect()
    grown = _rss_mb() - base
    lat = sorted(t for *_, t in results)
    record_property("load", dict(wall_s=wall, p50_s=lat[16], max_s=lat[-1], rss_growth_mb=grown, batches=batches,
                                 rows=rows))
    print(f"32 concurrent streams: wall {wall:.1f} s, p50 {lat[16]:.1f} s, max {lat[-1]:.1f} s, "
          f"RSS growth {grown:.0f} MB, {rows} rows in {batches} batches")
    assert grown < 100
