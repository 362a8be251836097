"""Bad input and bad artifacts give the project's own clear errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from audio_clips import clip
from qwen3_tts_onnx import ArtifactError, InputError, Qwen3TTS


def test_unknown_speaker(models):
    with pytest.raises(InputError, match="unsupported speaker 'nobody'.*supported"):
        models("cv_wide").ours.generate_custom_voice("Hi.", speaker="nobody")


def test_unknown_language(models):
    with pytest.raises(InputError, match="unsupported language 'klingon'"):
        models("cv_wide").ours.generate_custom_voice("Hi.", speaker="ryan", language="klingon")


def test_dialect_is_not_a_language(models):
    with pytest.raises(InputError, match="unsupported language"):
        models("cv_wide").ours.generate_custom_voice("Hi.", speaker="ryan", language="sichuan_dialect")


def test_instruct_on_model_that_drops_it(models):
    with pytest.raises(InputError, match="0.6B CustomVoice model has no instruct"):
        models("cv_equal").ours.generate_custom_voice("Hi.", speaker="ryan", instruct="Whisper.")


def test_wrong_api_for_model_type(models):
    with pytest.raises(InputError, match="needs a voice_design model.*use generate_custom_voice"):
        models("cv_wide").ours.generate_voice_design("Hi.", instruct="A calm voice.")
    with pytest.raises(InputError, match="needs a custom_voice model"):
        models("vd").ours.generate_custom_voice("Hi.", speaker="ryan")


@pytest.mark.parametrize("text", ["", "   \n", None, 42])
def test_empty_or_non_text(models, text):
    with pytest.raises(InputError, match="empty|must be a string"):
        models("cv_wide").ours.generate_custom_voice(text, speaker="ryan")


@pytest.mark.parametrize("token", ["<|im_end|>", "<|im_start|>", "<tts_pad>", "<|endoftext|>", "<think>"])
def test_special_tokens_are_refused(models, token):
    with pytest.raises(InputError, match="special token"):
        models("cv_wide").ours.generate_custom_voice(f"Hello {token} world", speaker="ryan")
    with pytest.raises(InputError, match="instruct contains the special token"):
        models("vd").ours.generate_voice_design("Hello", instruct=f"calm {token}")


def test_oversized_text(models):
    with pytest.raises(InputError, match="tokens long; the limit is"):
        models("cv_wide").ours.generate_custom_voice("word " * 5000, speaker="ryan")


def test_text_over_the_character_limit_is_refused_before_tokenizing(models, monkeypatch):
    tts = models("cv_wide").ours

    def encode(_text):
        raise AssertionError("tokenized")

    monkeypatch.setattr(tts.tokenizer, "encode", encode)
    with pytest.raises(InputError, match=r"text is 65537 characters long; the limit is 65536 characters.*split"):
        tts.generate_custom_voice("a" * 65537, speaker="ryan")
    with pytest.raises(InputError, match=r"text is 10000000 characters long"):
        tts.prepare("word " * 2000000, speaker="ryan")


def test_cli_refuses_over_long_text(models, tmp_path):
    r = subprocess.run([sys.executable, "-m", "qwen3_tts_onnx.cli", "speak", "--model", str(models("cv_wide").art),
                        "--text", "a" * 65537, "--speaker", "ryan", "--out", str(tmp_path / "x.wav")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "error: text is 65537 characters long; the limit is 65536 characters" in r.stderr
    assert "qwen3-tts serve" in r.stderr and not (tmp_path / "x.wav").exists()


def test_bad_generation_arguments(models):
    tts = models("cv_wide").ours
    with pytest.raises(InputError, match="unknown generation argument"):
        tts.generate_custom_voice("Hi.", speaker="ryan", num_beams=4)
    with pytest.raises(InputError, match="temperature must be > 0"):
        tts.generate_custom_voice("Hi.", speaker="ryan", temperature=0.0)
    with pytest.raises(InputError, match="max_new_tokens must be at least 1"):
        tts.generate_custom_voice("Hi.", speaker="ryan", max_new_tokens=0)
    with pytest.raises(InputError, match="batch size mismatch"):
        tts.generate_custom_voice(["a", "b", "c"], speaker=["ryan", "aiden"])


def _copy(models, tmp_path):
    dst = tmp_path / "arts"
    shutil.copytree(models("cv_wide").art, dst)
    return dst


def test_missing_artifacts(tmp_path):
    with pytest.raises(ArtifactError, match="no artifacts directory.*make export"):
        Qwen3TTS.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ArtifactError, match="no manifest.json.*make export"):
        Qwen3TTS.from_pretrained(tmp_path)


def test_checkpoint_instead_of_artifacts(models):
    with pytest.raises(ArtifactError, match="looks like a checkpoint"):
        Qwen3TTS.from_pretrained(models("cv_wide").ckpt)


def test_missing_graph_file(models, tmp_path):
    arts = _copy(models, tmp_path)
    (arts / "talker.onnx").unlink()
    with pytest.raises(ArtifactError, match="talker.onnx is missing"):
        Qwen3TTS.from_pretrained(arts)


def test_other_format_version(models, tmp_path):
    arts = _copy(models, tmp_path)
    manifest = json.loads((arts / "manifest.json").read_text())
    manifest["format_version"] = 999
    (arts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 999.*re-export"):
        Qwen3TTS.from_pretrained(arts)


def test_hash_mismatch(models, tmp_path):
    arts = _copy(models, tmp_path)
    data = bytearray((arts / "speech_decoder.onnx").read_bytes())
    data[-10] ^= 0xFF
    (arts / "speech_decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        Qwen3TTS.from_pretrained(arts)


def test_graph_io_mismatch(models, tmp_path):
    arts = _copy(models, tmp_path)
    manifest = json.loads((arts / "manifest.json").read_text())
    manifest["graphs"]["talker"]["inputs"][0]["name"] = "embeds"
    (arts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="talker graph's inputs/outputs differ"):
        Qwen3TTS.from_pretrained(arts)


def test_clone_api_on_other_model_types(models):
    m = models("cv_equal")
    with pytest.raises(InputError, match="needs a base model"):
        m.ours.generate_voice_clone("Hi.", ref_audio=(clip(1, 24000), 24000), x_vector_only_mode=True)
    with pytest.raises(InputError, match="needs a base model"):
        m.ours.create_voice_clone_prompt((clip(1, 24000), 24000), x_vector_only_mode=True)


def test_unknown_decode_mode(models):
    with pytest.raises(InputError, match="decode_mode must be one of"):
        models("cv_wide").ours.generate_custom_voice("Hi.", speaker="ryan", decode_mode="fast")


def test_fp32_talker_on_cuda_warns(models):
    """ONNX Runtime's CUDA GroupQueryAttention is fp16/bf16 only: an fp32 export on CUDA says to use the fp16 one."""
    m = models("cv_wide")

    class OnCuda:  # the talker session, saying it runs on CUDA
        def __init__(self, session):
            self.session = session

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self.session, name)

    with pytest.warns(UserWarning, match="PRECISION=fp16"):
        Qwen3TTS(m.ours.artifacts, dict(m.ours.sessions, talker=OnCuda(m.ours.sessions["talker"])))
