"""ONNX Runtime sessions: providers, session options."""
from __future__ import annotations

import os

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu is installed and sees a GPU, else CPU."""
    available = ort.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    # Sessions alternate every frame: idle spinning threads of one would steal the cores of the other.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def create(path, providers=None, threads: int | None = None) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                providers=list(providers or default_providers()))
