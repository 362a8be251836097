"""`qwen3-tts serve` as a subprocess on a free loopback port, serving a Base model's saved voice prompts by name
(--voices DIR): the audio equals what the Python API streams with that prompt."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import numpy as np

from audio_clips import clip
from qwen3_tts_onnx.audio import pcm16

CLI = [sys.executable, "-m", "qwen3_tts_onnx.cli"]
TEXT = "Hello world, this is a cloned voice speaking."


def test_serve_cli_with_saved_voices(models, tmp_path):
    m = models("base_equal")
    voices = tmp_path / "voices"
    voices.mkdir()
    prompt = m.ours.create_voice_clone_prompt((clip(3, 24000), 24000), ref_text="Okay. Yeah. I resent you.")[0]
    prompt.save(voices / "alice.qvoice")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen(CLI + ["serve", "--model", str(m.art), "--voices", str(voices), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            assert proc.poll() is None, open(tmp_path / "serve.log").read()
            try:
                health = httpx.get(f"{url}/health", timeout=5).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health["status"] == "ok" and health["active"] == 0
        assert httpx.get(f"{url}/v1/voices").json()["voices"] == ["alice"]
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["type"] == "base"
        body = dict(input=TEXT, voice="alice", language="english", response_format="pcm", seed=9, max_new_tokens=12,
                    do_sample=False, subtalker_dosample=False)
        r = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=120)
        want = np.concatenate([c.samples for c in m.ours.stream_voice_clone(
            TEXT, "english", voice_clone_prompt=prompt, seed=9, max_new_tokens=12, do_sample=False,
            subtalker_dosample=False)])
        assert r.status_code == 200 and r.content == pcm16(want)
        r = httpx.post(f"{url}/v1/audio/speech", json={**body, "voice": "bob"}, timeout=30)
        assert r.status_code == 400 and "saved voices: ['alice']" in r.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
