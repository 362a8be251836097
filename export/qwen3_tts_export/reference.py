"""Import the official `qwen-tts` package (the oracle) without torchaudio.

`qwen-tts==0.1.1` imports `torchaudio.compliance.kaldi` at package import, but only its 25 Hz tokenizer (which no
12 Hz checkpoint uses) ever calls it, and no torchaudio build matches the CPU torch wheel we pin. We install a
stand-in module whose only function raises, so any accidental use fails loudly instead of silently.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types


def _install_torchaudio_standin() -> None:
    try:
        importlib.import_module("torchaudio.compliance.kaldi")
        return
    except Exception:
        pass

    def fbank(*_args, **_kwargs):
        raise NotImplementedError("torchaudio stand-in: only the unused 25 Hz tokenizer needs kaldi.fbank")

    root = types.ModuleType("torchaudio")
    compliance = types.ModuleType("torchaudio.compliance")
    kaldi = types.ModuleType("torchaudio.compliance.kaldi")
    kaldi.fbank = fbank
    for mod in (root, compliance, kaldi):
        mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    root.__version__ = "0.0+standin"
    root.compliance = compliance
    compliance.kaldi = kaldi
    sys.modules.setdefault("torchaudio", root)
    sys.modules.setdefault("torchaudio.compliance", compliance)
    sys.modules.setdefault("torchaudio.compliance.kaldi", kaldi)


def qwen_tts():
    """Return the imported official `qwen_tts` package."""
    _install_torchaudio_standin()
    import qwen_tts  # noqa: PLC0415

    return qwen_tts


def official_classes():
    """(Qwen3TTSConfig, Qwen3TTSForConditionalGeneration, Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model)."""
    qwen_tts()
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Config
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Model

    return Qwen3TTSConfig, Qwen3TTSForConditionalGeneration, Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
