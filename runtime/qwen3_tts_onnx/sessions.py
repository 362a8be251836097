"""ONNX Runtime sessions: providers, session options, threads.

Every frame alternates two sessions (talker, code predictor), and every few frames a third (speech decoder), each
with its own intra-op thread pool. Workers that sleep between operators pay a wake-up on each of the ~600
operators of a frame; workers that keep spinning after a run steal the cores the next session needs (the loop ran
1.6x slower that way on 2 cores). So the workers spin while their session runs and stop the moment its run ends
(`session.force_spinning_stop`): the 0.6B int4 loop went from 62-69 ms to 55-57 ms per frame on 2 cores.
"""
from __future__ import annotations

import os

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def gpu_present() -> bool:
    """Whether the CUDA driver reports at least one GPU (onnxruntime-gpu lists its CUDA provider without one)."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    return False


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu is installed and a GPU is present, else CPU."""
    return [CUDA, CPU] if CUDA in ort.get_available_providers() and gpu_present() else [CPU]


def default_threads() -> int:
    """QWEN3_TTS_THREADS when set, else the cores this process may use."""
    env = os.environ.get("QWEN3_TTS_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"QWEN3_TTS_THREADS must be a positive integer, got {env!r}")
        return int(env)
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


# Graph optimization level per graph; ORT_ENABLE_ALL where not listed. The speech decoder stops at EXTENDED: at ALL,
# ONNX Runtime's layout transformer moves each int8 QLinearConv of the int8 decoder (precision.py) to channels-last and
# wraps it in Transposes, which on these 1-D convolutions cost more than the layout saves (full-size 0.6B int8
# decoder, 25-frame calls, 2 threads: 17.6 -> 15.5 ms per frame, identical samples); the fp32 decoder's Convs are
# 1-D and get no channels-blocked kernels at ALL either (26.2 ms per frame at both levels).
OPTIMIZATION = {"speech_decoder": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def provider_name(p) -> str:
    """A providers entry's name: entries are names or (name, options) pairs, as ONNX Runtime takes them."""
    return p if isinstance(p, str) else p[0]


def with_cuda_graphs(providers) -> list:
    """providers with the CUDA provider's graph capture on (its option enable_cuda_graph; graph_replay.py)."""
    return [(provider_name(p), {**({} if isinstance(p, str) else dict(p[1])), "enable_cuda_graph": "1"})
            if provider_name(p) == CUDA else p for p in providers]


# A run of a session made with_cuda_graphs() is captured and then replayed under its graph id, 0 when the run names
# none; UNCAPTURED runs it as usual (its inputs' addresses or shapes change from run to run).
UNCAPTURED = -1


def graph_run_options(graph_id: int) -> ort.RunOptions:
    """Run options naming the CUDA graph a run is captured into and replayed from (UNCAPTURED: neither)."""
    ro = ort.RunOptions()
    ro.add_run_config_entry("gpu_graph_id", str(graph_id))
    return ro


def session_options(threads: int | None = None, graph: str | None = None) -> ort.SessionOptions:
    """threads: intra-op threads (default: default_threads()); graph: the graph's name, for OPTIMIZATION."""
    so = ort.SessionOptions()
    so.graph_optimization_level = OPTIMIZATION.get(graph, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    so.intra_op_num_threads = threads or default_threads()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    so.add_session_config_entry("session.force_spinning_stop", "1")
    return so


def create(path, providers=None, threads: int | None = None, graph: str | None = None) -> ort.InferenceSession:
    """graph: the graph's name (contracts), which picks its optimization level (OPTIMIZATION)."""
    return ort.InferenceSession(str(path), sess_options=session_options(threads, graph),
                                providers=list(providers or default_providers()))
