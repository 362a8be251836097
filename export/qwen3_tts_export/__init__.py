"""qwen3_tts_export: the torch stage. Official Qwen3-TTS checkpoint -> ONNX graphs + manifest for the runtime."""
__version__ = "0.1.0"
