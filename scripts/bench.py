"""Benchmarks against the official qwen-tts, same run, same machine, alternating runs, medians.

    .venv/bin/python scripts/bench.py [--quick] [--sizes 0b6,1b7] [--variants fp32,int8,int4,int4-dec8] [--frames 100]
                                      [--threads 2] [--repeats 3] [--work artifacts/bench] [--json out.json]
                                      [--record BENCHMARKS.md] [--base | --no-base] [--cuda]

Builds full-size random CustomVoice checkpoints from the real configs (EOS logit zeroed, so every run generates
exactly --frames frames), exports fp32 once and each quantized variant from it (cached under --work; a name with
-dec8, such as int4-dec8, also has the int8 speech decoder of precision.py), then times:
  - the generation loop (prompt prefill + frames, greedy, Ryan, English): official `model.generate` vs our
    `generate_codes`, per variant; time per talker step and per code predictor frame (ours, from session timings);
  - the speech decoder per frame: official `speech_tokenizer.decode` vs ours (windowed, the default);
  - streaming (ours): first-audio latency and end-to-end RTF of `stream_custom_voice`, against non-streaming
    generate + decode in the same run;
  - the floor: weight bytes each frame must read (talker + 15 x code predictor, the variant's storage) divided by
    the measured memory read bandwidth; artifact size; resident memory added by loading;
  - with --base (default unless --quick): a full-size 0.6B Base checkpoint, ICL voice clone from a 10 s 44.1 kHz
    stereo reference: the voice prompt (official `create_voice_clone_prompt` vs ours), the loop, and the decode of
    reference + generated codes with the reference cut off, streaming included.
--cuda (a GPU machine with onnxruntime-gpu): our variants on ONNX Runtime's CUDA provider (default fp16 and
  fp16-graphs: the fp16 export, the second with cuda_graphs=True), the official model on torch's GPU in bf16 (the
  setting its README gives), one side resident at a time, GPU memory added per side after its runs (nvidia-smi, and
  torch's peak for the official side), the floor from the GPU's measured read bandwidth; CustomVoice, 0.6B unless
  --sizes says otherwise; --threads defaults to every core there (the exports).
--quick: the real 0.6B sizes, 12 frames, fp32 and int4 loops and each side's decoder; ends with
  speedup_fp32_vs_official=<x>
  speedup_best_vs_official=<y> (<variant>)
(ratios of median loop frames per second).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from gpu_check import gpu_memory_mb  # scripts/gpu_check.py: GPU memory in use (nvidia-smi), None without a GPU

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."
FPS = 12.5


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def read_bandwidth_gbs(threads: int) -> float:
    """Memory read bandwidth with `threads` readers (numpy releases the GIL in sum): a 1 GiB array, well past the
    caches, summed in `threads` slices at once; best of 5."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(1 << 28, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(5):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = min(best, time.perf_counter() - t)
    return a.nbytes / best / 1e9


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class Timed:
    """A session stand-in that accumulates run time per graph; it offers IO bindings, so the runtime drives it
    exactly as the session itself (generate.BoundSession)."""

    def __init__(self, session, stats: dict, name: str):
        self.session, self.stats, self.name = session, stats, name
        self.get_outputs, self.get_inputs = session.get_outputs, session.get_inputs
        self.get_providers, self.io_binding = session.get_providers, session.io_binding

    def _timed(self, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        s = self.stats.setdefault(self.name, [0.0, 0])
        s[0] += time.perf_counter() - t
        s[1] += 1
        return out

    def run(self, *args, **kwargs):
        return self._timed(self.session.run, *args, **kwargs)

    def run_with_iobinding(self, *args, **kwargs):
        return self._timed(self.session.run_with_iobinding, *args, **kwargs)


class Ours:
    """Our runtime per variant, its sessions wrapped in Timed. Every variant stays loaded (runs alternate with no
    reload), unless --load-per-round: then each is loaded for its turn and dropped after it, so that only the
    official model and one of ours are in memory at once (the 1.7B fp32 side alone needs about 8 GB)."""

    def __init__(self, arts: dict, threads: int, keep: bool, cuda: bool = False):
        from qwen3_tts_onnx.sessions import CPU, CUDA

        self.arts, self.threads, self.keep = arts, threads, keep
        self.cuda, self.providers = cuda, [CUDA, CPU] if cuda else [CPU]
        self.stats: dict = {v: {} for v in arts}
        self.rss_added: dict = {}
        self.gpu_added: dict = {}  # GPU memory added by a variant, read when it is released, after its runs
        self._gpu_before: dict = {}
        self._loaded: dict = {}

    def get(self, v: str):
        from qwen3_tts_onnx import Qwen3TTS

        if v not in self._loaded:
            r0 = _rss_mb()
            self._gpu_before.setdefault(v, gpu_memory_mb())
            graphs = is_replayed(v)  # on the CPU (a dry run of --cuda) the fixed-buffer loop runs without capture
            tts = Qwen3TTS.from_pretrained(self.arts[v], self.providers, threads=self.threads,
                                           cuda_graphs=graphs and self.cuda)
            self.rss_added.setdefault(v, _rss_mb() - r0)
            self._loaded[v] = Qwen3TTS(tts.artifacts, {g: Timed(s, self.stats[v], g) for g, s in tts.sessions.items()},
                                       graph_replay=graphs)
        return self._loaded[v]

    def done(self, v: str) -> None:
        if not self.keep:
            self.release(v)

    def release(self, v: str) -> None:
        if v in self._loaded and self._gpu_before.get(v) is not None:
            self.gpu_added.setdefault(v, gpu_memory_mb() - self._gpu_before[v])
        self._loaded.pop(v, None)
        gc.collect()


def weight_bytes_per_frame(art: Path) -> dict:
    """Bytes of weights a frame reads: the talker's once, the code predictor's 15 times (its layers run once per
    group; embeddings and heads: one table/head per group, so counted once), from the stored initializers."""
    import onnx

    out = {}
    for g in ("talker", "code_predictor"):
        m = onnx.load(str(art / f"{g}.onnx"), load_external_data=False)
        layers = other = 0
        for init in m.graph.initializer:
            n = init.raw_data and len(init.raw_data)
            if not n:
                for ext in init.external_data:
                    if ext.key == "length":
                        n = int(ext.value)
            n = n or 0
            if g == "code_predictor" and init.name.startswith("layers."):
                layers += n
            elif g == "talker" and ("embedding" in init.name):
                continue  # a gather reads one row, not the table
            elif g == "code_predictor" and ("embedding" in init.name or "embed" in init.name):
                continue
            else:
                other += n
        out[g] = other + (15 * layers if g == "code_predictor" else layers)
    out["total"] = out["talker"] + out["code_predictor"]
    return out


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


GRAPHS_SUFFIX = "-graphs"  # a variant run with cuda_graphs=True, on the artifacts of the name without it


def is_replayed(variant: str) -> bool:
    return variant.endswith(GRAPHS_SUFFIX)


def precisions(variant: str) -> tuple[str, str]:
    """A variant's name -> (precision of the talker and code predictor, of the speech decoder): int4-dec8 ->
    (int4, int8); fp16-graphs -> (fp16, fp32)."""
    precision, _, decoder = variant.removesuffix(GRAPHS_SUFFIX).partition("-dec")
    return precision, f"int{decoder}" if decoder else "fp32"


def gpu_read_bandwidth_gbs() -> float:
    """The GPU's read bandwidth: a 4 GiB fp32 tensor summed on the device (torch), best of 5."""
    import torch

    x = torch.ones(1 << 30, dtype=torch.float32, device="cuda")
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize()
        t = time.perf_counter()
        x.sum().item()
        best = min(best, time.perf_counter() - t)
    del x
    torch.cuda.empty_cache()
    return (1 << 32) / best / 1e9


def prepare(work: Path, size: str, variants: list, kind: str = "custom_voice") -> tuple[Path, dict]:
    from qwen3_tts_export.export import export_all
    from qwen3_tts_export.precision import is_current, make_variant
    from qwen3_tts_export.random_checkpoint import build

    root = work / f"{size}-{kind}"
    ckpt = root / "checkpoint"
    if not (ckpt / "model.safetensors").is_file():
        _log(f"building a random {size} {kind} checkpoint (EOS logit zeroed)")
        build(ckpt, kind=kind, size=size, eos_scale=0.0)

    arts = {"fp32": root / "fp32"}
    if not is_current(arts["fp32"]):
        t = time.time()
        export_all(ckpt, arts["fp32"])
        _log(f"fp32 export: {time.time() - t:.0f} s")
    for v in variants:
        if v == "fp32":
            continue
        if is_replayed(v):  # the same artifacts as the variant without the suffix
            made = v.removesuffix(GRAPHS_SUFFIX)
            arts[v] = arts.get(made) or prepare(work, size, [made], kind)[1][made]
            continue
        arts[v] = root / v
        precision, decoder = precisions(v)
        if not is_current(arts[v], precision, decoder):
            t = time.time()
            make_variant(arts["fp32"], arts[v], precision, decoder)
            _log(f"{v} variant: {time.time() - t:.0f} s")
    return ckpt, arts


def time_ours(v: str, tts, rows: list, decode, stream, stats: dict, times: dict, a, n: int, warm_up: bool) -> None:
    """One round of one of our variants: the greedy loop over `rows` (with per-session times), `decode(codes)`, and
    unless --quick the streaming generator `stream()` (first audio, total). Appends to times[f"{v}_..."]."""
    if warm_up:  # freshly loaded: one short untimed run maps the weights in and grows the arenas
        decode(tts.generate_codes(rows, max_new_tokens=4, do_sample=False, subtalker_dosample=False)[0])
    stats.clear()
    t = time.perf_counter()
    got = tts.generate_codes(rows, max_new_tokens=n + 1, do_sample=False, subtalker_dosample=False)[0]
    loop = time.perf_counter() - t
    if got.shape[0] != n:
        raise RuntimeError(f"our {v} loop made {got.shape[0]} frames, expected {n}")
    times[f"{v}_loop"].append(loop)
    tk, cp = stats["talker"], stats["code_predictor"]
    times[f"{v}_talker_step"].append(tk[0] / tk[1])
    times[f"{v}_predictor_frame"].append(cp[0] / cp[1])
    t = time.perf_counter()
    decode(got)
    dec = time.perf_counter() - t
    times[f"{v}_decoder"].append(dec / n)
    times[f"{v}_nonstream_total"].append(loop + dec)
    if not a.quick:
        t = time.perf_counter()
        first = None
        for chunk in stream():
            first = chunk.timing.elapsed_s if first is None else first
        times[f"{v}_stream_first_audio"].append(first)
        times[f"{v}_stream_total"].append(time.perf_counter() - t)


def run_model(size: str, a, bandwidth: float) -> dict:
    import torch

    from qwen3_tts_export.reference import qwen_tts

    torch.set_num_threads(a.threads)
    ckpt, arts = prepare(Path(a.work), size, a.variants)
    greedy = dict(do_sample=False, subtalker_dosample=False)
    n = a.frames
    if a.cuda:  # what an earlier size left in torch's cache, and its peak, are not this size's
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss0, gpu0 = _rss_mb(), gpu_memory_mb()
    on_gpu = {"device_map": "cuda:0", "dtype": torch.bfloat16} if a.cuda else {}  # the official README's setting
    ref = qwen_tts().Qwen3TTSModel.from_pretrained(str(ckpt), **on_gpu)
    rss_official = _rss_mb() - rss0
    gpu_official = None
    phased = a.phased or size == "1b7" or a.cuda  # on the GPU: one side resident, so that its memory reads alone
    ours = Ours(arts, a.threads, keep=phased or not a.load_per_round, cuda=a.cuda)
    stats, loaded = ours.stats, ours.rss_added
    ids = ref._tokenize_texts([ref._build_assistant_text(TEXT)])

    def official_loop(frames=n):
        with torch.no_grad():
            codes, _ = ref.model.generate(input_ids=ids, instruct_ids=[None], languages=["english"],
                                          speakers=["ryan"], non_streaming_mode=True, max_new_tokens=frames + 1,
                                          **greedy)
        return codes[0].cpu().numpy()  # the copy to the host waits for the GPU

    if a.cuda:  # untimed: CUDA's start and the first kernels' selection, loop and decoder
        with torch.no_grad():
            ref.model.speech_tokenizer.decode([{"audio_codes": torch.from_numpy(official_loop(4)).to(ref.device)}])

    times: dict = {"official_loop": [], "official_decoder": []}
    for v in a.variants:
        for k in ("loop", "decoder", "talker_step", "predictor_frame", "stream_first_audio", "stream_total",
                  "nonstream_total"):
            times[f"{v}_{k}"] = []

    def official_round():
        t = time.perf_counter()
        codes = official_loop()
        times["official_loop"].append(time.perf_counter() - t)
        if codes.shape[0] != n:
            raise RuntimeError(f"the official loop made {codes.shape[0]} frames, expected {n}")
        t = time.perf_counter()
        with torch.no_grad():
            ref.model.speech_tokenizer.decode([{"audio_codes": torch.from_numpy(codes).to(ref.device)}])  # -> host
        times["official_decoder"].append((time.perf_counter() - t) / n)

    def our_round(v, warm_up):
        tts = ours.get(v)
        rows = tts._custom_voice_rows(TEXT, "ryan", "english", None, True)
        time_ours(v, tts, rows, tts.decode, lambda: tts.stream_custom_voice(
            TEXT, speaker="ryan", language="english", max_new_tokens=n + 1, **greedy), stats[v], times, a, n, warm_up)

    if phased:  # one model resident at a time: the official rounds, then each variant's rounds (see --phased)
        for rep in range(a.repeats):
            official_round()
            _log(f"{size} official round {rep + 1}/{a.repeats}: loop {times['official_loop'][-1]:.1f} s")
        if gpu0 is not None:  # after its runs: weights, the cache torch keeps
            gpu_official = gpu_memory_mb() - gpu0
        del ref
        gc.collect()
        if a.cuda:
            torch.cuda.empty_cache()
        for v in a.variants:
            for rep in range(a.repeats):
                our_round(v, warm_up=rep == 0)
                _log(f"{size} {v} round {rep + 1}/{a.repeats}: loop {times[f'{v}_loop'][-1]:.1f} s")
            ours.release(v)
    else:
        for rep in range(a.repeats):
            official_round()
            for v in a.variants:
                our_round(v, warm_up=not ours.keep)
                ours.done(v)
            _log(f"{size} round {rep + 1}/{a.repeats}: official loop {times['official_loop'][-1]:.1f} s, "
                 + ", ".join(f"{v} {times[f'{v}_loop'][-1]:.1f} s" for v in a.variants))
    result = summarize(size, "CustomVoice", n, a, times, arts, rss_official, loaded, bandwidth)
    if a.cuda:
        result["official"].update(gpu_added_mb=gpu_official, gpu_peak_torch_mb=torch.cuda.max_memory_allocated() / 2**20)
        for v, r in result["variants"].items():
            r["gpu_added_mb"] = ours.gpu_added.get(v)
    return result


def summarize(size: str, what: str, n: int, a, times: dict, arts: dict, rss_official: float, loaded: dict,
              bandwidth: float) -> dict:
    """Medians of the timed runs -> one model's result (official side and each variant)."""
    med = {k: statistics.median(x) for k, x in times.items() if x}
    audio_s = n / FPS
    result = {"size": size, "model": f"{size} {what}", "frames": n, "threads": a.threads, "repeats": a.repeats,
              "official": {"loop_s_per_frame": med["official_loop"] / n,
                           "loop_fps": n / med["official_loop"],
                           "loop_rtf": med["official_loop"] / audio_s,
                           "decoder_s_per_frame": med["official_decoder"],
                           "e2e_rtf": (med["official_loop"] + med["official_decoder"] * n) / audio_s,
                           "rss_added_mb": rss_official},
              "variants": {}}
    if "official_prompt" in med:
        result["official"]["voice_prompt_s"] = med["official_prompt"]
    for v in a.variants:
        wb = weight_bytes_per_frame(arts[v])
        r = {"loop_s_per_frame": med[f"{v}_loop"] / n, "loop_fps": n / med[f"{v}_loop"],
             "loop_rtf": med[f"{v}_loop"] / audio_s,
             "speedup_loop_vs_official": med["official_loop"] / med[f"{v}_loop"],
             "talker_step_s": med[f"{v}_talker_step"], "predictor_frame_s": med[f"{v}_predictor_frame"],
             "decoder_s_per_frame": med[f"{v}_decoder"],
             "speedup_decoder_vs_official": med["official_decoder"] / med[f"{v}_decoder"],
             "e2e_rtf": med[f"{v}_nonstream_total"] / audio_s,
             "weight_bytes_per_frame": wb["total"], "floor_s_per_frame": wb["total"] / (bandwidth * 1e9),
             "artifact_bytes": dir_bytes(arts[v]), "rss_added_mb": loaded[v]}
        if f"{v}_prompt" in med:
            r["voice_prompt_s"] = med[f"{v}_prompt"]
            r["speedup_prompt_vs_official"] = med["official_prompt"] / med[f"{v}_prompt"]
        if f"{v}_stream_first_audio" in med:
            r["stream_first_audio_s"] = med[f"{v}_stream_first_audio"]
            r["stream_e2e_rtf"] = med[f"{v}_stream_total"] / audio_s
        result["variants"][v] = r
    return result


REF_SECONDS = 10
REF_TEXT = "This is a ten second recording of the voice that the model should clone for us today."


def run_clone(a, bandwidth: float) -> dict:
    """0.6B Base, ICL voice clone from a 10 s 44.1 kHz stereo reference: the voice prompt (x-vector + reference
    codes), the generation loop, and the decode of reference + generated codes with the reference cut off; the
    official `create_voice_clone_prompt` / `model.generate` / `speech_tokenizer.decode` against ours."""
    import torch

    from qwen3_tts_export.reference import qwen_tts

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from audio_clips import write  # noqa: E402
    from oracle import official_clone_codes  # noqa: E402

    torch.set_num_threads(a.threads)
    ckpt, arts = prepare(Path(a.work), "0b6", a.variants, kind="base")
    clip = str(write(Path(a.work) / f"ref_{REF_SECONDS}s_44k_stereo.wav", REF_SECONDS, 44100, channels=2, seed=5))
    greedy = dict(do_sample=False, subtalker_dosample=False)
    n = a.frames
    rss0 = _rss_mb()
    ref = qwen_tts().Qwen3TTSModel.from_pretrained(str(ckpt))
    rss_official = _rss_mb() - rss0
    # each of our variants loaded for its turn only: all four resident beside the official model and its ICL decode
    # passed 24 GiB (a run at graph revision 7 swapped in its second round)
    ours = Ours(arts, a.threads, keep=False)
    stats, loaded = ours.stats, ours.rss_added
    keys = ("prompt", "loop", "decoder", "talker_step", "predictor_frame", "stream_first_audio", "stream_total",
            "nonstream_total")
    times: dict = {f"official_{k}": [] for k in ("prompt", "loop", "decoder")}
    times.update({f"{v}_{k}": [] for v in a.variants for k in keys})
    for rep in range(a.repeats):
        with torch.no_grad():
            t = time.perf_counter()
            items = ref.create_voice_clone_prompt(ref_audio=clip, ref_text=REF_TEXT)
            times["official_prompt"].append(time.perf_counter() - t)
            t = time.perf_counter()
            codes = official_clone_codes(ref, [TEXT], ["english"], items, max_new_tokens=n + 1)[0]
            times["official_loop"].append(time.perf_counter() - t)
            if codes.shape[0] != n:
                raise RuntimeError(f"the official clone made {codes.shape[0]} frames, expected {n}")
            t = time.perf_counter()
            full = torch.from_numpy(np.concatenate([items[0].ref_code.numpy(), codes]))
            ref.model.speech_tokenizer.decode([{"audio_codes": full}])
            times["official_decoder"].append((time.perf_counter() - t) / n)
        for v in a.variants:
            tts = ours.get(v)
            t = time.perf_counter()
            voice = tts.create_voice_clone_prompt(clip, ref_text=REF_TEXT)[0]
            times[f"{v}_prompt"].append(time.perf_counter() - t)
            rows, prompts = tts._voice_clone_rows(TEXT, "english", None, None, False, voice, False)

            def stream():  # a voice's first use: its reference warms the decoder (kept warm states dropped first)
                tts.decoder.forget_warmed()
                return tts.stream_voice_clone(TEXT, language="english", voice_clone_prompt=voice,
                                              max_new_tokens=n + 1, **greedy)

            time_ours(v, tts, rows, lambda codes: tts.decode_clone(codes, prompts[0]), stream, stats[v], times, a, n,
                      not ours.keep)
            ours.done(v)
        _log(f"0b6 Base clone round {rep + 1}/{a.repeats}: official loop {times['official_loop'][-1]:.1f} s, "
             + ", ".join(f"{v} {times[f'{v}_loop'][-1]:.1f} s" for v in a.variants))
    return summarize("0b6", "Base ICL clone", n, a, times, arts, rss_official, loaded, bandwidth)


def table(results: list, machine: str, command: str) -> str:
    lines = [f"Machine: {machine}. Command: `{command}`. Medians per side of runs that alternate between the sides "
             "(phased for 1.7B and with --phased: all official runs, then each variant's); loop = prompt prefill + "
             "frames, greedy; RTF = wall time / audio time (lower is better).", "",
             "| model | side | loop s/frame | loop RTF | vs official | talker step | predictor frame | decoder s/frame "
             "| decoder vs official | e2e RTF | streaming first audio | streaming e2e RTF | floor s/frame "
             "| voice prompt | artifacts | RSS added |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    gpu = any("gpu_added_mb" in res["official"] for res in results)
    if gpu:  # a last column: GPU memory each side added, read after its runs; the official side's torch peak beside it
        lines[2], lines[3] = lines[2] + " GPU memory added (after its runs) |", lines[3] + "---|"

    def gpu_cell(r: dict) -> str:
        if not gpu:
            return ""
        added = "?" if r.get("gpu_added_mb") is None else f"{r['gpu_added_mb']:.0f} MB"
        peak = f" (torch peak {r['gpu_peak_torch_mb']:.0f} MB)" if "gpu_peak_torch_mb" in r else ""
        return f" {added}{peak} |"

    for res in results:
        o = res["official"]
        vp = f"{o['voice_prompt_s']:.2f} s" if "voice_prompt_s" in o else ""
        lines.append(f"| {res.get('model', res['size'] + ' CustomVoice')}, {res['frames']} frames | official qwen-tts | "
                     f"{o['loop_s_per_frame']:.3f} | {o['loop_rtf']:.2f} | 1.00x | | | {o['decoder_s_per_frame']:.3f} "
                     f"| 1.00x | {o['e2e_rtf']:.2f} | none | | | {vp} | | {o['rss_added_mb']:.0f} MB |" + gpu_cell(o))
        for v, r in res["variants"].items():
            fa = f"{r['stream_first_audio_s'] * 1000:.0f} ms" if "stream_first_audio_s" in r else "-"
            se = f"{r['stream_e2e_rtf']:.2f}" if "stream_e2e_rtf" in r else "-"
            vp = (f"{r['voice_prompt_s']:.2f} s ({r['speedup_prompt_vs_official']:.1f}x)"
                  if "voice_prompt_s" in r else "")
            lines.append(
                f"| | ours {v} | {r['loop_s_per_frame']:.3f} | {r['loop_rtf']:.2f} | "
                f"**{r['speedup_loop_vs_official']:.2f}x** | {r['talker_step_s'] * 1000:.0f} ms | "
                f"{r['predictor_frame_s'] * 1000:.0f} ms | {r['decoder_s_per_frame']:.3f} | "
                f"{r['speedup_decoder_vs_official']:.2f}x | {r['e2e_rtf']:.2f} | {fa} | {se} | "
                f"{r['floor_s_per_frame']:.3f} | {vp} | {r['artifact_bytes'] / 1e9:.2f} GB | {r['rss_added_mb']:.0f} MB |"
                + gpu_cell(r))
    return "\n".join(lines)


def record(path: Path, section: str, part: str = "CPU") -> None:
    """Add `section` at the end of BENCHMARKS.md's `## <part>` part (before the next `## ` heading after it), or at
    the end of the file when it has no such part."""
    text = path.read_text() if path.exists() else ""
    start = text.find(f"\n## {part}")
    end = text.find("\n## ", start + 1) if start >= 0 else -1
    if end < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
    else:
        path.write_text(text[:end].rstrip("\n") + "\n\n" + section + text[end:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", default=None, help="comma list of CustomVoice sizes 0b6, 1b7, or '' for none (default: 0b6,1b7; --quick: 0b6)")
    p.add_argument("--variants", default=None,
                   help="comma list of fp32, int8, int4, each optionally with -dec8 (the int8 speech decoder) "
                        "(default fp32,int8,int4,int4-dec8; --quick: fp32,int4)")
    p.add_argument("--base", action=argparse.BooleanOptionalAction, default=None,
                   help="also time 0.6B Base ICL voice cloning (default: on, off with --quick)")
    p.add_argument("--load-per-round", action="store_true",
                   help="load each of our variants for its turn only, with one short untimed warm-up run after "
                        "loading (less memory; default for 1b7 and always for the Base run)")
    p.add_argument("--phased", action="store_true",
                   help="one model resident at a time: all official rounds first, then each variant's rounds (its "
                        "first with an untimed warm-up), instead of alternating; for machines whose memory cannot "
                        "hold both sides (default for 1b7: on 24 GiB the two fp32 1.7B models page)")
    p.add_argument("--frames", type=int, default=None, help="frames per run (default 100; --quick: 12)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default 2; --cuda: every core, for the exports made on the GPU machine)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", default="artifacts/bench")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--record", help="append the table to this Markdown file (e.g. BENCHMARKS.md)")
    p.add_argument("--cuda", action="store_true",
                   help="GPU: ours on ONNX Runtime's CUDA provider (default variants fp16,fp16-graphs; -graphs: "
                        "cuda_graphs=True), the official model on torch's GPU in bf16; CustomVoice only")
    a = p.parse_args(argv)
    a.threads = a.threads or (os.cpu_count() or 1 if a.cuda else min(2, os.cpu_count() or 1))
    a.sizes = [x for x in (a.sizes if a.sizes is not None else ("0b6" if a.quick or a.cuda else "0b6,1b7")).split(",")
               if x]
    a.variants = (a.variants or ("fp16,fp16-graphs" if a.cuda else "fp32,int4" if a.quick
                                 else "fp32,int8,int4,int4-dec8")).split(",")
    if "fp32" not in a.variants and not a.cuda:  # fp32 on CUDA runs its fp32 attention on the CPU: not a GPU row
        a.variants.insert(0, "fp32")
    a.frames = a.frames or (12 if a.quick else 100)
    if a.cuda:
        import onnxruntime as ort
        import torch

        if a.base:
            p.error("--base is not measured on the GPU yet; leave it out with --cuda")
        a.base = False
        if not torch.cuda.is_available() or "CUDAExecutionProvider" not in ort.get_available_providers():
            p.error("--cuda needs a GPU that torch sees and onnxruntime-gpu (BENCHMARKS.md, GPU section)")
        ort.preload_dlls()  # the CUDA and cuDNN libraries of the installed nvidia packages
        bandwidth = gpu_read_bandwidth_gbs()
        machine = f"{torch.cuda.get_device_name()}, measured read bandwidth {bandwidth:.0f} GB/s; host {cpu_name()}"
    else:
        bandwidth = read_bandwidth_gbs(a.threads)
        machine = (f"{cpu_name()}, {os.cpu_count()} cores, {a.threads} threads, measured read bandwidth "
                   f"{bandwidth:.1f} GB/s")
    _log(machine)
    results = [run_model(size, a, bandwidth) for size in a.sizes]
    if a.base if a.base is not None else not a.quick:
        results.append(run_clone(a, bandwidth))
    command = "scripts/bench.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    md = table(results, machine, command.strip())
    print(md)
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine, "command": command, "results": results}, indent=2))
    if a.record:
        record(Path(a.record), f"### {time.strftime('%Y-%m-%d')}: {command.strip()}\n\n{md}\n",
               "GPU" if a.cuda else "CPU")
    first = results[0]
    best = max(first["variants"], key=lambda v: first["variants"][v]["speedup_loop_vs_official"])
    if "fp32" in first["variants"]:
        print(f"speedup_fp32_vs_official={first['variants']['fp32']['speedup_loop_vs_official']:.2f}")
    print(f"speedup_best_vs_official={first['variants'][best]['speedup_loop_vs_official']:.2f} ({best})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
