"""qwen3_tts_onnx: Qwen3-TTS on ONNX Runtime, torch-free."""
from .api import Qwen3TTS
from .errors import ArtifactError, InputError, Qwen3TTSError
from .voice import VoicePrompt

__version__ = "0.1.0"
__all__ = ["Qwen3TTS", "VoicePrompt", "Qwen3TTSError", "InputError", "ArtifactError", "__version__"]
