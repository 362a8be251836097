"""What the export promises beyond each graph's numbers: it fails loudly when a graph disagrees with torch, puts
the weights of graphs over 2 GB in external data, writes a manifest that says what the checkpoint and the contract
say, keeps one copy of the talker's weights, and the test checkpoints give decisive group-0 logits."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from qwen3_tts_export import __main__ as export_cli
from qwen3_tts_export import export as E
from qwen3_tts_onnx import ArtifactError, Qwen3TTS, contracts as C, generate
from qwen3_tts_onnx.sampling import process_group0

from oracle import GREEDY

TEXT = "Hello world, this is a test of the parity harness."


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scale_weights_after_export(monkeypatch):
    """From now on, each graph's torch module computes something else than what was just exported: its weights
    are scaled by 1.01 after the trace is saved, before the export compares."""
    real = E._export_graph

    def export_then_scale(module, *args):
        path = real(module, *args)
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(1.01)
        return path

    monkeypatch.setattr(E, "_export_graph", export_then_scale)


# ---------------------------------------------------------------------------------------------------- loud failures

class _Toy(torch.nn.Module):
    def __init__(self, pick=torch.argmax):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), requires_grad=False)
        self.pick = pick

    def forward(self, x):
        y = x @ self.w
        return y, self.pick(y, -1)


_TOY = C.GraphSpec("toy", "toy.onnx", (C.TensorSpec("x", "float32", ("batch", 4)),),
                   (C.TensorSpec("y", "float32", ("batch", 3)), C.TensorSpec("idx", "int64", ("batch",))))


def _toy_args(b):
    return (torch.randn(b, 4, generator=torch.Generator().manual_seed(b)),)


def test_checked_export_raises_on_a_mismatch(tmp_path, monkeypatch):
    """_export_checked passes a faithful graph; it raises ExportCheckError, naming the graph and output, when torch
    computes otherwise (weights scaled after the trace: a float output off by more than ATOL; a module picking
    argmin instead of argmax: an exact output that differs)."""
    check = dict(trace=(2,), checks=((1,), (5,)), dynamic_shapes=({0: E.AUTO},), exact=("idx",))
    assert E._export_checked(_Toy().eval(), _TOY, tmp_path, _toy_args, **check) <= E.ATOL
    with pytest.raises(E.ExportCheckError, match=r"toy\.onnx: output idx differs from torch in \d+ of 5 entries"):
        E._compare(_TOY, tmp_path / "toy.onnx", _Toy(torch.argmin).eval(), _toy_args(5), exact=("idx",))
    _scale_weights_after_export(monkeypatch)
    with pytest.raises(E.ExportCheckError, match=r"toy\.onnx: output y differs from torch by [\d.e-]+ \(tolerance"):
        E._export_checked(_Toy().eval(), _TOY, tmp_path, _toy_args, **check)


def test_export_cli_exits_2_on_a_mismatch(models, tmp_path, monkeypatch, capsys):
    """`python -m qwen3_tts_export` on a checkpoint whose first graph disagrees with torch: exit code 2, the graph
    named on stderr, no traceback, and the old manifest in --out removed (a half-written export must not load)."""
    m = models("cv_wide")
    out = tmp_path / "onnx"
    shutil.copytree(m.art, out)
    _scale_weights_after_export(monkeypatch)
    assert export_cli.main(["--model", str(m.ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "export failed: text_embedder.onnx: output embeds differs from torch by" in err and "Traceback" not in err
    assert not (out / C.MANIFEST).exists()
    with pytest.raises(ArtifactError, match="manifest.json"):
        Qwen3TTS.from_pretrained(out)


# ---------------------------------------------------------------------------------------------------- external data

def test_external_data_over_the_threshold(models, tmp_path, monkeypatch):
    """With the 2 GB threshold at 0 the talker's weights go to talker.onnx.data: the manifest lists it with its
    sha256, the runtime loads it (and refuses it altered), and it gives the same logits and codes as the usual
    export. Only the talker is re-exported (the other graphs are the usual export's files)."""
    m = models("cv_wide")
    out = tmp_path / "onnx"
    shutil.copytree(m.art, out)
    checks = json.loads((m.art / C.MANIFEST).read_text())["export_checks"]
    for name in ("text_embedder", "code_predictor", "speech_decoder", "speech_decoder_context"):
        monkeypatch.setattr(E, f"export_{name}", lambda *a, _name=name: checks[_name])
    monkeypatch.setattr(E, "export_tokenizer", lambda *a: None)
    monkeypatch.setattr(E, "TWO_GB", 0)
    manifest = E.export_all(m.ckpt, out)

    data = out / "talker.onnx.data"
    assert data.is_file() and manifest["files"]["talker.onnx.data"] == {"sha256": _sha256(data),
                                                                        "bytes": data.stat().st_size}
    assert manifest["files"]["talker.onnx"]["sha256"] == _sha256(out / "talker.onnx")
    graph = onnx.load(str(out / "talker.onnx"), load_external_data=False).graph
    big = [t for t in graph.initializer if np.prod(t.dims) * 4 >= 4096]
    assert big and all(t.data_location == onnx.TensorProto.EXTERNAL
                       and {e.key: e.value for e in t.external_data}["location"] == data.name for t in big)
    assert (out / "talker.onnx").stat().st_size < data.stat().st_size / 10

    cfg = m.ours.cfg
    feeds = {"inputs_embeds": np.random.default_rng(0).standard_normal((2, 7, cfg["hidden_size"]), np.float32),
             "attention_mask": np.ones((2, 7), np.int64),
             **{n: np.zeros((2, cfg["num_key_value_heads"], 8, cfg["head_dim"]), np.float32)
                for i in range(cfg["num_hidden_layers"]) for n in (C.past_key_name(i), C.past_value_name(i))}}
    usual, external = (ort.InferenceSession(str(d / "talker.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
                       for d in (m.art, out))
    for u, x in zip(usual, external):
        np.testing.assert_allclose(x, u, rtol=0, atol=1e-6)
    rows = m.ours._custom_voice_rows(TEXT, "ryan", "english", None, True)
    want = m.ours.generate_codes(rows, max_new_tokens=31, **GREEDY)[0]
    got = Qwen3TTS.from_pretrained(out).generate_codes(rows, max_new_tokens=31, **GREEDY)[0]
    assert want.shape[0] == 30
    np.testing.assert_array_equal(got, want)

    with open(data, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ArtifactError, match=r"talker\.onnx\.data does not match its sha256"):
        Qwen3TTS.from_pretrained(out)


# ---------------------------------------------------------------------------------------------------- the manifest

def _onnx_io(values) -> list:
    return [(v.name, np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)).name,
             tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)) for v in values]


def _spec_io(specs) -> list:
    return [(s.name, s.dtype, tuple(s.shape)) for s in specs]


@pytest.mark.parametrize("name,kind", [("cv_wide", "custom_voice"), ("vd", "voice_design")])
def test_manifest_says_what_the_checkpoint_and_contract_say(models, name, kind):
    """manifest.json: format version; model type and size; every config value the runtime reads equal to the
    checkpoint's config.json (talker_config or top level); generation defaults equal to generation_config.json;
    each graph's I/O equal to contracts.py's spec and to the .onnx file's own I/O; a sha256 and size for every
    file in the directory; the versions of torch, onnx, onnxruntime and transformers that exported it."""
    import transformers

    m = models(name)
    manifest = json.loads((m.art / C.MANIFEST).read_text())
    config = json.loads((m.ckpt / "config.json").read_text())
    talker = config["talker_config"]
    assert manifest["format_version"] == C.FORMAT_VERSION and manifest["graph_revision"] == E.GRAPH_REVISION
    assert manifest["model"]["type"] == config["tts_model_type"] == kind
    assert manifest["model"]["size"] == config["tts_model_size"]

    got = manifest["config"]
    for key in C.MANIFEST_CONFIG_KEYS:
        if key in ("speech_decoder_state", "kv_cache_dtype"):  # derived from the decoder; fp16 variants only
            continue
        want = config[key] if key in config else talker.get(key, "absent")
        assert got.get(key, "absent") == want, key
    for key in ("spk_id", "spk_is_dialect", "codec_language_id", "codec_eos_token_id", "codec_bos_id", "codec_pad_id",
                "codec_think_id", "codec_nothink_id", "tts_bos_token_id", "tts_eos_token_id", "tts_pad_token_id"):
        assert key in got, key
    assert len(got["codec_language_id"]) >= 10
    assert len(got["spk_id"]) == (9 if kind == "custom_voice" else 0)
    assert set(got["spk_is_dialect"]) == set(got["spk_id"])
    assert manifest["generation_defaults"] == json.loads((m.ckpt / "generation_config.json").read_text())

    specs = C.graph_specs(got)
    assert set(manifest["graphs"]) == set(specs) == {"text_embedder", "talker", "code_predictor", "speech_decoder",
                                                     "speech_decoder_context"}
    for g, spec in specs.items():
        assert manifest["graphs"][g] == spec.to_json()
        model = onnx.load(str(m.art / spec.file), load_external_data=False)
        assert _onnx_io(model.graph.input) == _spec_io(spec.inputs), g
        assert _onnx_io(model.graph.output) == _spec_io(spec.outputs), g

    on_disk = {p.name for p in m.art.iterdir() if p.is_file() and p.name != C.MANIFEST}
    assert set(manifest["files"]) == on_disk >= {spec.file for spec in specs.values()} | {C.TOKENIZER}
    for fname, info in manifest["files"].items():
        path = m.art / fname
        assert info == {"sha256": _sha256(path), "bytes": path.stat().st_size}, fname
    assert {k: manifest["versions"][k] for k in ("torch", "onnx", "onnxruntime", "transformers")} == {
        "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
        "transformers": transformers.__version__}


# ---------------------------------------------------------------------------------------------------- talker weights

@pytest.mark.parametrize("name", ["cv_wide", "cv_equal"])
def test_talker_holds_one_copy_of_its_weights(models, name):
    """talker.onnx's initializers add up to the talker's own checkpoint tensors (its layers, final norm and codec
    head, in fp32) plus the RoPE tables of its attention op, within 1%, and no two large ones are equal: no weight
    is stored twice, and none of the text or codec embeddings or the code predictor came along."""
    from safetensors import safe_open

    m = models(name)
    own = 0
    with safe_open(str(m.ckpt / "model.safetensors"), framework="pt") as f:
        for k in f.keys():
            if k.startswith(("talker.model.layers.", "talker.model.norm.", "talker.codec_head.")):
                own += int(np.prod(f.get_slice(k).get_shape())) * 4
    talker = json.loads((m.ckpt / "config.json").read_text())["talker_config"]
    rope = 2 * talker["max_position_embeddings"] * talker["head_dim"] // 2 * 4  # cos and sin caches
    inits = onnx.load(str(m.art / "talker.onnx")).graph.initializer
    arrays = [onnx.numpy_helper.to_array(t) for t in inits]
    total = sum(a.nbytes for a in arrays)
    assert own + rope <= total <= 1.01 * (own + rope), (total, own, rope)
    large = [a.tobytes() for a in arrays if a.nbytes >= 1024]
    assert len({hashlib.sha256(b).digest() for b in large}) == len(large)


# ---------------------------------------------------------------------------------------------------- decisive logits

@pytest.mark.parametrize("name", ["cv_wide", "cv_equal"])
def test_greedy_trajectory_has_decisive_logits(models, name, monkeypatch):
    """Along a greedy run, the processed group-0 scores (repetition penalty, EOS block, suppression) have a top-1
    over top-2 margin far above fp32 noise at every step, so that greedy comparisons are meaningful; the codes
    vary in every group."""
    m = models(name)
    steps = []
    real = generate.DynamicSteps.predict

    def predict(self, feeds):
        logits = np.array(self.logits, copy=True)
        codes = real(self, feeds)
        steps.append((int(feeds["step"]), logits, codes.copy()))
        return codes

    monkeypatch.setattr(generate.DynamicSteps, "predict", predict)
    rows = m.ours._custom_voice_rows(TEXT, "ryan", "english", None, True)
    codes = m.ours.generate_codes(rows, max_new_tokens=40, **GREEDY)[0]
    assert codes.shape[0] >= 30 and len(steps) >= codes.shape[0]
    penalty, eos = m.ours.generate_defaults["repetition_penalty"], m.ours.cfg["codec_eos_token_id"]
    generated, margins = [], []
    for step, logits, frame in steps:
        scores = process_group0(logits, [generated], step, eos, penalty)[0]
        top2 = np.sort(scores)[-2:]
        assert scores.argmax() == frame[0, 0]  # the recorded logits are what the greedy pick came from
        margins.append(top2[1] - top2[0])
        generated.append(int(frame[0, 0]))
    assert min(margins) > 1e-3, sorted(margins)[:3]
    assert all(len(np.unique(codes[:, j])) >= codes.shape[0] // 2 for j in range(C.NUM_CODE_GROUPS))
