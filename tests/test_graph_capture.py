"""CUDA graph replay, checked on the CPU: the graph rewrite that makes the code predictor capturable
(export's graph_capture.py) computes what the original computes, the static check finds what blocks a capture,
and the fixed-buffer frame loop that a replay needs (generate.py's StaticFrameLoop) gives the codes of the usual
loop. The capture itself happens only on a GPU (BENCHMARKS.md says whether one was available)."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qwen3_tts_export.graph_capture import capture_blockers, make_capturable
from qwen3_tts_onnx import contracts as C


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["cv_equal", "cv_wide"])
def test_capturable_code_predictor_computes_the_same(models, name):
    path = models(name).art / "code_predictor.onnx"
    model = onnx.load(str(path))
    assert any("control flow" in p for p in capture_blockers(model))  # the CPU graph keeps its If nodes
    info = make_capturable(model)
    assert info["ifs_inlined"] == 32 and info["topk_full_sorts"] == 16 and info["capture_blockers"] == []
    assert not {"If", "Loop", "Scan"} & {n.op_type for n in model.graph.node}
    original, rewritten = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), _session(model)
    hidden = next(i.shape[1] for i in original.get_inputs() if i.name == "past_hidden")
    rng = np.random.default_rng(0)
    # greedy and sampled, top-p off and on, top-k of one, some and all, EOS blocked (step 0) and allowed (step 5)
    for b, sample, top_p, top_k, step in itertools.product((1, 3), (False, True), (1.0, 0.8), (1, 50, 2048), (0, 5)):
        feeds = {"past_hidden": rng.standard_normal((b, hidden), np.float32),
                 "logits": (3 * rng.standard_normal((b, C.TALKER_VOCAB))).astype(np.float32),
                 "seen": rng.random((b, C.TALKER_VOCAB)) < 0.05, "step": np.array(step),
                 "finished": np.arange(b) == 1, "text_embed": rng.standard_normal((b, hidden), np.float32),
                 "noise": rng.random((b, C.NUM_CODE_GROUPS), np.float32),
                 "group0_do_sample": np.array(sample), "group0_temperature": np.array(0.9, np.float32),
                 "group0_top_k": np.array(top_k), "group0_top_p": np.array(top_p, np.float32),
                 "repetition_penalty": np.array(1.05, np.float32), "do_sample": np.array(sample),
                 "temperature": np.array(0.8, np.float32), "top_k": np.array(top_k),
                 "top_p": np.array(top_p, np.float32)}
        want, got = original.run(None, feeds), rewritten.run(None, feeds)
        for o, w, g in zip(original.get_outputs(), want, got):
            assert np.array_equal(w, g), (o.name, b, sample, top_p, top_k, step)


def test_talker_has_nothing_that_blocks_a_capture(models):
    assert capture_blockers(onnx.load(str(models("cv_equal").art / "talker.onnx"))) == []


def _graph(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _value(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_capture_blockers_finds_an_attention_bias():
    # ONNX Runtime's CUDA GroupQueryAttention refuses one: the talker before format version 8 passed one
    gqa = helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "s", "t", "", "", "", "bias"],
                           ["o", "pko", "pvo"], domain="com.microsoft", name="attn", num_heads=2, kv_num_heads=1)
    model = _graph([gqa], [_value(n, TensorProto.FLOAT, None) for n in ("q", "k", "v", "pk", "pv", "bias")]
                   + [_value("s", TensorProto.INT32, [1])], [_value("o", TensorProto.FLOAT, None)],
                   [numpy_helper.from_array(np.array(4, np.int32), "t")])  # the total length: a constant
    problems = capture_blockers(model)
    assert len(problems) == 1 and "'attn' has an attention_bias" in problems[0]


def test_capture_blockers_finds_host_inputs_computed_from_data():
    # Reshape to a shape read from the data (blocks) and to one read from a Shape (does not)
    model = _graph([helper.make_node("ReduceMax", ["n"], ["m"], keepdims=1),
                    helper.make_node("Reshape", ["x", "m"], ["y"], name="from_data"),
                    helper.make_node("Shape", ["x"], ["s"]),
                    helper.make_node("Reshape", ["x", "s"], ["z"], name="from_shape")],
                   [_value("x", TensorProto.FLOAT, [2, 3]), _value("n", TensorProto.INT64, [2])],
                   [_value("y", TensorProto.FLOAT, None), _value("z", TensorProto.FLOAT, None)])
    problems = capture_blockers(model)
    assert len(problems) == 1 and "'from_data'" in problems[0] and "input 1" in problems[0]


def test_topk_read_otherwise_than_its_kth_value_is_refused():
    # a TopK of data-dependent k whose indices are read: not the sampler's pattern, so the rewrite must not guess
    model = _graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk"),
                    helper.make_node("Identity", ["i"], ["out"])],
                   [_value("x", TensorProto.FLOAT, [2, 8]), _value("k", TensorProto.INT64, [1])],
                   [_value("out", TensorProto.INT64, None)])
    with pytest.raises(ValueError, match="does not know this pattern"):
        make_capturable(model)


def test_inlined_if_selects_its_branch():
    then = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [],
                             [_value("t", TensorProto.FLOAT, [3])],
                             [numpy_helper.from_array(np.ones(3, np.float32), "one")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [_value("e", TensorProto.FLOAT, [3])])
    model = _graph([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="if")],
                   [_value("c", TensorProto.BOOL, []), _value("x", TensorProto.FLOAT, [3])],
                   [_value("y", TensorProto.FLOAT, [3])])
    before = _session(model)
    assert make_capturable(model)["ifs_inlined"] == 1
    after = _session(model)
    x = np.array([1, -2, 3], np.float32)
    for c in (True, False):
        feeds = {"c": np.array(c), "x": x}
        assert np.array_equal(before.run(None, feeds)[0], after.run(None, feeds)[0])


# ------------------------------------------------------------------------------------------ the fixed-buffer loop

SAMPLING = {"do_sample": True, "subtalker_dosample": True}
TEXTS = ["Hello world, this is the first row.", "A second, much longer row of text that goes on for a while longer.",
         "Third."]


def _replaying(m):
    from qwen3_tts_onnx import Qwen3TTS

    return Qwen3TTS(m.ours.artifacts, m.ours.sessions, graph_replay=True)


def _rows(tts, texts):
    return [tts._custom_voice_rows(t, "ryan", "english", None, True)[0] for t in texts]


def test_fixed_buffer_loop_gives_the_codes_of_the_usual_loop(models):
    """Batch of three left-padded rows, sampling with a seed per row, budgets per row; then greedy on one row into
    the same buffer set again (the set's cache, mask and seen reset between runs), then a batch of one."""
    m = models("cv_wide")
    usual, replay = m.ours, _replaying(m)
    rows = _rows(usual, TEXTS)
    for args in ((rows, dict(seed=[11, 22, 33], max_new_tokens=20, **SAMPLING)),
                 (rows, dict(seed=5, max_new_tokens=20, do_sample=False, subtalker_dosample=False)),
                 (rows[:1], dict(seed=7, max_new_tokens=24, **SAMPLING))):
        want, got = usual.generate_codes(args[0], **args[1]), replay.generate_codes(args[0], **args[1])
        assert len(want) == len(got) and all(w.shape[0] > 0 for w in want)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)
    # both runs of three rows (20 tokens) used one buffer set; the run of one row another
    assert sorted(replay._loop.replay.sets) == [(1, 256), (3, 256)]
    assert not any(s.busy for s in replay._loop.replay.sets.values())


def test_fixed_buffer_loop_streams_and_cancels(models, monkeypatch):
    from qwen3_tts_onnx import generate

    m = models("cv_equal")
    usual, replay = m.ours, _replaying(m)
    row = _rows(usual, TEXTS[:1])
    want = usual.generate_codes(row, seed=3, max_new_tokens=16, **SAMPLING)[0]
    frames = replay._frames(row, 3, dict(max_new_tokens=16, **SAMPLING))
    first = [next(frames)[0][0] for _ in range(4)]
    # a second run of the same shape while the first holds its buffers: the usual loop, same codes, every call
    # uncaptured (a call naming no graph id would be captured as graph 0 on a GPU and replayed on stale buffers)
    graph_ids, run = [], generate.BoundSession.run

    def recording(self, *args, run_options=None, **kwargs):
        graph_ids.append(run_options.get_run_config_entry("gpu_graph_id") if run_options else None)
        return run(self, *args, run_options=run_options, **kwargs)

    monkeypatch.setattr(generate.BoundSession, "run", recording)
    assert replay.generate_codes(row, seed=3, max_new_tokens=16, **SAMPLING)[0].tolist() == want.tolist()
    assert len(graph_ids) > 16 and set(graph_ids) == {"-1"}
    monkeypatch.undo()
    frames.close()  # cancellation hands the buffer set back
    assert not any(s.busy for s in replay._loop.replay.sets.values())
    np.testing.assert_array_equal(np.stack(first), want[:4])
    again = replay.generate_codes(row, seed=3, max_new_tokens=16, **SAMPLING)[0]
    np.testing.assert_array_equal(again, want)


def test_cuda_graphs_are_refused_with_a_fix(models, tmp_path):
    from qwen3_tts_onnx import Qwen3TTS
    from qwen3_tts_onnx.errors import ArtifactError, InputError
    from qwen3_tts_onnx.graph_replay import check_capturable
    from qwen3_tts_onnx.sessions import CUDA

    m = models("cv_equal")
    with pytest.raises(InputError, match="needs the CUDA execution provider"):
        Qwen3TTS.from_pretrained(m.art, providers=["CPUExecutionProvider"], cuda_graphs=True)
    manifest = dict(m.ours.artifacts.manifest)
    with pytest.raises(ArtifactError, match="PRECISION=fp16"):  # the fp32 export keeps its If nodes
        check_capturable(manifest, m.art, [CUDA])
    with pytest.raises(ArtifactError, match="graph revision 7"):
        check_capturable(dict(manifest, graph_revision=7), m.art, [CUDA])
    capturable = dict(manifest, precision_details={g: {"capture_blockers": []} for g in ("talker", "code_predictor")})
    check_capturable(capturable, m.art, [(CUDA, {"device_id": "0"}), "CPUExecutionProvider"])


def test_fp16_variant_on_the_fixed_buffer_loop(models, tmp_path):
    """The variant CUDA graphs are for: its capturable code predictor and fp16 KV cache through the fixed-buffer
    loop give the codes of its usual loop (on the CPU provider, which runs its fp16 products in fp32)."""
    from qwen3_tts_export.precision import make_variant
    from qwen3_tts_onnx import Qwen3TTS
    from qwen3_tts_onnx.graph_replay import check_capturable
    from qwen3_tts_onnx.sessions import CUDA

    manifest = make_variant(models("cv_equal").art, tmp_path, "fp16")
    check_capturable(manifest, tmp_path, [CUDA])
    usual = Qwen3TTS.from_pretrained(tmp_path)
    replay = Qwen3TTS(usual.artifacts, usual.sessions, graph_replay=True)
    rows = _rows(usual, TEXTS[:2])
    for kwargs in (dict(seed=[1, 2], **SAMPLING), dict(do_sample=False, subtalker_dosample=False)):
        want = usual.generate_codes(rows, max_new_tokens=20, **kwargs)
        got = replay.generate_codes(rows, max_new_tokens=20, **kwargs)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)
    assert replay._loop.replay.sets[(2, 256)].cache.dtype == np.float16
