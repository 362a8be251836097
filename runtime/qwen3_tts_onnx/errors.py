"""The runtime's own errors: each names the problem and the fix."""

EXPORT_HINT = "run `make export MODEL=<hub id or checkpoint dir> OUT=<dir>` to create them"  # artifacts' origin


class Qwen3TTSError(ValueError):
    """Base class: bad input or bad artifacts (a ValueError, as the official package raises for bad input)."""


class ArtifactError(Qwen3TTSError):
    """Artifacts are missing, from another format version, or do not match their manifest."""


class InputError(Qwen3TTSError):
    """A request the model cannot serve: unknown speaker or language, empty text, a feature the model lacks."""
