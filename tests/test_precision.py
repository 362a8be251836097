"""Quality guards for the reduced-precision variants (ONNX Runtime's MatMulNBits weight-only quantizer for int8 and
int4, its fp16 converter for fp16), teacher forced: the variant's talker and code predictor get exactly the inputs
of an fp32 greedy run, so one early difference cannot snowball into a different trajectory and hide (or fake) the per-step quality.

Thresholds. Symmetric round-to-nearest with blocks of 128 gives each weight an error of about max|w| / (2^(b-1) - 1)
/ sqrt(12) of the block's scale: for Gaussian weights (max near 3 sigma) 0.7 % relative at 8 bits and 12 % at 4 bits,
i.e. a cosine of about 0.99998 (int8) and 0.993 (int4) per matrix product, compounding over the layers.
- Talker (logits are an output): cosine per step >= 0.999 for int8 and >= 0.98 for int4; greedy tokens equal on
  >= 95 % (int8) and >= 80 % (int4) of the steps. Measured on these tiny models: int8 cosine >= 0.99994 with every
  token equal; int4 cosine >= 0.990 with 87-94 % equal.
- Code predictor (its logits stay inside the graph): greedy agreement on the teacher-forced steps, >= 90 % for int8
  and >= 50 % for int4. Its tiny random heads give small top-2 margins, so int4 noise flips many near-ties: measured
  int8 94-98 %, int4 62-77 %. A broken variant (quantized heads, a wrong weight layout, a lost scale) agrees at chance
  level, 1 in 2048, so the guards still catch it.
- fp16 (weight MatMuls in fp16, everything else fp32): rounding to 11 significant bits is a relative error of about
  2^-12 per weight and per input, a cosine of about 0.9999999 per product: talker cosine >= 0.9999 and tokens equal
  on >= 95 % of the steps; code predictor >= 90 % (measured: cosine above 0.99999, every token equal). Run here
  on the CPU provider, which computes the fp16 MatMuls in fp32 after casting: that checks the rounding of weights
  and activations, not fp16 accumulation or overflow, which only a GPU run shows (BENCHMARKS.md says whether one
  was made).
- int8 speech decoder (every Conv int8, activations uint8 per tensor from min/max calibration): one uint8 rounding
  of a tensor whose range is about 6 times its RMS costs about 8 * 6.02 + 4.77 - 20 log10(6) = 38 dB, but the decoder
  rounds 34 activation tensors in cascade and a random-weight decoder amplifies early errors through its four
  upsampling blocks: measured 12.4-12.9 dB here and 12.0 dB at full size (BENCHMARKS.md: block 4 alone 25.8 dB,
  block 1 alone 14.5 dB). The guard, SNR >= 9 dB, is therefore no quality claim: it catches a quantization broken
  across the graph or in a convolution the output depends on (doubling the weight scale of one convolution of the
  last residual unit measured 2.6 dB); a scale error just before a norm can pass unseen.
  The variant must also stay causal and exact in any chunking, like the fp32 graph, and skipping frames (through
  the fp32 context graph) must leave the state that decoding them leaves.
Random weights say nothing about how real checkpoints sound; full-size figures are in BENCHMARKS.md.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from oracle import GREEDY
from qwen3_tts_export.precision import make_variant
from qwen3_tts_onnx import Qwen3TTS

TEXT = "Hello world, this is a test of the quantized variants."
FRAMES = 30
TALKER_GUARDS = {"int8": (0.999, 0.95), "int4": (0.98, 0.80), "fp16": (0.9999, 0.95)}  # (min cosine, min agreement)
PREDICTOR_GUARDS = {"int8": 0.90, "int4": 0.50, "fp16": 0.90}  # min greedy agreement on teacher-forced steps
# fp16 on the 0.6B-like model only: the one whose code predictor keeps its down-projection in fp32 (the 1.7B-like
# conversion is the same code without that rule; measured equal to fp32 too, dropped to keep the suite short)
CASES = [(n, p) for p in ("int8", "int4") for n in ("cv_equal", "cv_wide")] + [("cv_equal", "fp16")]
DECODER_INT8_MIN_SNR_DB = 9.0


class _Recorder:
    def __init__(self, session, log):
        self.session, self.log = session, log

    def get_outputs(self):
        return self.session.get_outputs()

    def run(self, names, feeds):
        self.log.append(dict(feeds))
        return self.session.run(names, feeds)


def _cos(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def fp32_trajectory(models):
    """Per model: the talker and code predictor feeds of an fp32 greedy run of FRAMES frames."""
    cache = {}

    def get(name):
        if name not in cache:
            m = models(name)
            talker_log, cp_log = [], []
            sessions = dict(m.ours.sessions, talker=_Recorder(m.ours.sessions["talker"], talker_log),
                            code_predictor=_Recorder(m.ours.sessions["code_predictor"], cp_log))
            tts = Qwen3TTS(m.ours.artifacts, sessions)
            rows = tts._custom_voice_rows(TEXT, "ryan", "english", None, True)
            codes = tts.generate_codes(rows, max_new_tokens=FRAMES + 1, **GREEDY)[0]
            assert codes.shape[0] >= 20
            cache[name] = (talker_log, cp_log)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def variant(models, tmp_path_factory):
    cache = {}

    def get(name, precision):
        if (name, precision) not in cache:
            out = tmp_path_factory.mktemp(f"{name}-{precision}")
            manifest = make_variant(models(name).art, out, precision)
            d = manifest["precision_details"]
            changed = "matmuls_fp16" if precision == "fp16" else "matmuls_quantized"
            assert d["talker"][changed] > 0 and d["talker"]["matmuls_kept_fp32"] == 1  # codec_head
            kept = 15  # the 15 heads (unrolled, shared weights)
            if precision == "fp16" and manifest["model"]["size"] == "0b6":
                cfg = json.loads((models(name).ckpt / "config.json").read_text())
                kept += 15 * cfg["talker_config"]["code_predictor_config"]["num_hidden_layers"]
            assert d["code_predictor"]["matmuls_kept_fp32"] == kept  # + the 0.6B's down-projections in fp16
            if precision == "fp16":  # made replayable as CUDA graphs (graph_capture.py): these tests run it so
                assert d["code_predictor"]["ifs_inlined"] > 0
                assert d["code_predictor"]["capture_blockers"] == d["talker"]["capture_blockers"] == []
            cache[(name, precision)] = Qwen3TTS.from_pretrained(out)
        return cache[(name, precision)]

    return get


@pytest.mark.parametrize("name,precision", CASES)
def test_quantized_talker_teacher_forced(models, fp32_trajectory, variant, name, precision):
    talker_log, _ = fp32_trajectory(name)
    ref, q = models(name).ours.sessions["talker"], variant(name, precision).sessions["talker"]
    names = [o.name for o in ref.get_outputs()]
    want, got = [], []
    past_ref = past_q = None
    kv_dtype = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in q.get_inputs()}
    for feeds in talker_log:
        fr = dict(feeds)
        fq = {n: v.astype(kv_dtype[n]) if n.startswith("past_") else v for n, v in feeds.items()}  # fp16: fp16 cache
        if past_ref is not None:  # each side continues from its own cache; the new inputs are the fp32 run's
            fr.update(past_ref)
            fq.update(past_q)
        out_r, out_q = ref.run(None, fr), q.run(None, fq)
        want.append(out_r[0])
        got.append(out_q[0])
        past_ref = {n.replace("present", "past_key_values"): v for n, v in zip(names[2:], out_r[2:])}
        past_q = {n.replace("present", "past_key_values"): v for n, v in zip(names[2:], out_q[2:])}
    want, got = np.concatenate(want), np.concatenate(got)
    cos = _cos(want, got)
    agree = float((want.argmax(-1) == got.argmax(-1)).mean())
    min_cos, min_agree = TALKER_GUARDS[precision]
    print(f"{name} {precision}: talker logits cosine min {cos.min():.5f}, greedy agreement {agree:.3f}")
    assert cos.min() >= min_cos, (precision, float(cos.min()))
    assert agree >= min_agree, (precision, agree)
    assert not np.array_equal(want, got)  # the variant really is a different graph


@pytest.mark.parametrize("name,precision", CASES)
def test_quantized_code_predictor_teacher_forced(models, fp32_trajectory, variant, name, precision):
    _, cp_log = fp32_trajectory(name)
    ref, q = models(name).ours.sessions["code_predictor"], variant(name, precision).sessions["code_predictor"]
    codes_r = np.concatenate([ref.run(["codes"], feeds)[0] for feeds in cp_log])
    codes_q = np.concatenate([q.run(["codes"], feeds)[0] for feeds in cp_log])
    # The graph runs its 15 steps on its own picks, so a step is teacher forced exactly when both sides picked the
    # same codes before it (same hidden state, same group-0 code, same earlier groups): greedy agreement is
    # measured on those steps. One early difference must not count as fifteen.
    same_prefix = np.cumprod(codes_r == codes_q, axis=1).astype(bool)  # [frames, 16]: codes 0..j all equal
    forced = same_prefix[:, :-1]  # step j + 1 is teacher forced when codes 0..j agree
    agree = float((codes_r[:, 1:] == codes_q[:, 1:])[forced].mean())
    print(f"{name} {precision}: {int(forced.sum())} teacher-forced steps, greedy agreement {agree:.3f}")
    assert forced.sum() >= len(codes_r)  # at least one forced step per frame (group 1 always is)
    assert agree >= PREDICTOR_GUARDS[precision], (precision, agree)


def test_quantized_variant_generates(models, variant):
    """A variant loads and runs through the public API like the fp32 export (same I/O, smaller weights)."""
    tts = variant("cv_equal", "int4")
    assert tts.artifacts.manifest["precision"] == "int4"
    wavs, sr = tts.generate_custom_voice(TEXT, speaker="ryan", language="english", max_new_tokens=8, **GREEDY)
    assert sr == 24000 and wavs[0].shape[0] % 1920 == 0 and 0 < wavs[0].shape[0] <= 7 * 1920


def test_int8_decoder(models, tmp_path):
    """DECODER=int8: only the speech decoder changes; its waveform against fp32 (SNR guard above), chunk by chunk
    as in one pass, and the variant's graph really holds int8 convolutions."""
    import onnx

    m = models("cv_equal")
    out = tmp_path / "dec8"
    manifest = make_variant(m.art, out, "fp32", decoder="int8")
    assert manifest["precision"] == "fp32" and manifest["decoder_precision"] == "int8"
    details = manifest["precision_details"]["speech_decoder"]
    graph = onnx.load(str(out / manifest["graphs"]["speech_decoder"]["file"]), load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    quantized = [n for n in convs if n.input[0] in dequantized and n.input[1] in dequantized]  # data and weights
    assert len(quantized) == details["convs_int8"] == len(convs) - 1 > 0
    # every residual unit's inner Snake (between two int8 convolutions) became a table lookup, giving the same bytes
    fp32_graph = onnx.load(str(m.art / "speech_decoder.onnx"), load_external_data=False).graph
    lookups = [n for n in graph.node if n.op_type == "GatherElements"]
    sins = sum(n.op_type == "Sin" for n in graph.node)
    assert len(lookups) == details["snake_lookups"] == sum(n.op_type == "Sin" for n in fp32_graph.node) - sins > 0
    assert details["snake_lookup_max_diff"] <= 1e-3
    assert len(details["convs_kept_fp32"]) == 1  # pre_conv, which speech_decoder_context holds too
    original = json.loads((m.art / "manifest.json").read_text())["files"]
    for g in ("talker", "code_predictor", "text_embedder"):
        f = manifest["graphs"][g]["file"]
        assert manifest["files"][f]["sha256"] == original[f]["sha256"]
    assert manifest["files"]["speech_decoder.onnx"]["sha256"] != original["speech_decoder.onnx"]["sha256"]

    ref, q = m.ours.decoder, Qwen3TTS.from_pretrained(out).decoder
    codes = np.random.default_rng(11).integers(0, 2048, (80, 16))  # not the calibration codes (seed 0)
    want, got = ref.decode(codes, mode="exact"), q.decode(codes, mode="exact")
    assert got.shape == want.shape
    snr = 10 * np.log10((want ** 2).sum() / ((want - got) ** 2).sum())
    print(f"int8 decoder: SNR {snr:.1f} dB against fp32")
    assert DECODER_INT8_MIN_SNR_DB <= snr < 60  # < 60: the int8 graph really rounds
    state, chunks = q.new_state(), []
    for a, b in ((0, 1), (1, 8), (8, 45), (45, 80)):
        chunks.append(q.step(codes[a:b], state))
    np.testing.assert_allclose(np.concatenate(chunks), got, atol=1e-5)
    # frames skipped through the fp32 context graph leave the state decoding them leaves (pre_conv is fp32 in
    # both graphs), so decoding from a start frame gives the tail of the whole decode
    tail = q.decode(codes, mode="exact", start=50)
    print(f"int8 decoder: start=50 against the whole decode's tail: max diff {np.abs(tail - got[50 * 1920:]).max():.1e}")
    np.testing.assert_allclose(tail, got[50 * 1920:], atol=1e-5)


def _snake_qdq(kind: str, c: int, seed: int):
    """A hand-made QDQ Snake with random alpha and 1/beta per channel. "bytes": q [b, c, t] -> DequantizeLinear ->
    Snake -> QuantizeLinear. "values": q [b, t, c] -> DequantizeLinear -> Transpose -> Snake -> Concat with a state
    [b, c, 3] -> QuantizeLinear, and the dequantized input also read by a second output (so it must stay)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (np.array(0.05, np.float32), "s_in"), (np.array(120, np.uint8), "z_in"),
        (np.array(0.07, np.float32), "s_out"), (np.array(110, np.uint8), "z_out"),
        (rng.uniform(0.2, 3, (1, c, 1)).astype(np.float32), "alpha"),
        (rng.uniform(0.2, 3, (1, c, 1)).astype(np.float32), "inv_beta"))]
    snake = [helper.make_node("Mul", ["x", "alpha"], ["ax"]), helper.make_node("Sin", ["ax"], ["s"]),
             helper.make_node("Mul", ["s", "s"], ["s2"]), helper.make_node("Mul", ["inv_beta", "s2"], ["t"]),
             helper.make_node("Add", ["x", "t"], ["y"])]
    u8, f32 = TensorProto.UINT8, TensorProto.FLOAT
    if kind == "bytes":
        nodes = [helper.make_node("DequantizeLinear", ["q", "s_in", "z_in"], ["x"]), *snake,
                 helper.make_node("QuantizeLinear", ["y", "s_out", "z_out"], ["out"])]
        inputs = [helper.make_tensor_value_info("q", u8, ["b", c, "t"])]
        outputs = [helper.make_tensor_value_info("out", u8, ["b", c, "t"])]
    else:
        nodes = [helper.make_node("DequantizeLinear", ["q", "s_in", "z_in"], ["xt"]),
                 helper.make_node("Transpose", ["xt"], ["x"], perm=[0, 2, 1]), *snake,
                 helper.make_node("Concat", ["state", "y"], ["cat"], axis=2),
                 helper.make_node("QuantizeLinear", ["cat", "s_out", "z_out"], ["out"]),
                 helper.make_node("Neg", ["x"], ["residual"])]
        inputs = [helper.make_tensor_value_info("q", u8, ["b", "t", c]),
                  helper.make_tensor_value_info("state", f32, ["b", c, 3])]
        outputs = [helper.make_tensor_value_info("out", u8, ["b", c, "t3"]),
                   helper.make_tensor_value_info("residual", f32, ["b", c, "t"])]
    graph = helper.make_graph(nodes, "snake", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kind", ["bytes", "values"])
def test_snake_lookup_equals_the_chain_it_replaces(kind):
    """snake_lut.py on a hand-made QDQ Snake: the lookup gives exactly the chain's bytes, for a batch of two (the
    table is expanded to the batch), with the Snake's input moved by a Transpose and its output concatenated with a
    state before the QuantizeLinear ("values"), or quantized directly ("bytes")."""
    import onnx
    import onnxruntime as ort

    from qwen3_tts_export.snake_lut import snake_luts

    c, rng = 6, np.random.default_rng(4)
    model = _snake_qdq(kind, c, seed=3)
    feeds = {"q": rng.integers(0, 256, (2, c, 1000) if kind == "bytes" else (2, 1000, c)).astype(np.uint8)}
    if kind == "values":
        feeds["state"] = rng.normal(0, 3, (2, c, 3)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)

    want = run(model)
    lut = onnx.ModelProto.FromString(model.SerializeToString())
    assert snake_luts(lut) == 1
    ops = [n.op_type for n in lut.graph.node]
    assert "Sin" not in ops and ops.count("GatherElements") == 1
    assert ops.count("DequantizeLinear") == (kind == "values")  # kept only where another output reads it
    got = run(lut)
    for w, g in zip(want, got):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert (g == w).all(), f"{(g != w).sum()} elements differ"
