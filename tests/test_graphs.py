"""Each graph against the official torch modules on the same inputs: max abs difference within 1e-4 (fp32)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

TOL = 1e-4


def _session(m, name):
    return ort.InferenceSession(str(m.art / f"{name}.onnx"), providers=["CPUExecutionProvider"])


def _past(cfg, b=1, capacity=16):
    """Empty KV cache buffers with room for `capacity` positions."""
    shape = (b, cfg["num_key_value_heads"], capacity, cfg["head_dim"])
    return {f"past_key_values.{i}.{k}": np.zeros(shape, np.float32)
            for i in range(cfg["num_hidden_layers"]) for k in ("key", "value")}


@pytest.mark.parametrize("name", ["cv_wide", "cv_equal"])
def test_talker_prefill_and_decode_step(models, name):
    m = models(name)
    talker, cfg = m.ref.model.talker, m.ours.cfg
    x = torch.randn(1, 12, cfg["hidden_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = talker.model(inputs_embeds=x, use_cache=False)
        hidden = out.last_hidden_state[:, -1]
        want_logits, want_hidden = talker.codec_head(hidden).numpy(), hidden.numpy()
    sess = _session(m, "talker")
    names = [o.name for o in sess.get_outputs()]
    # prefill all 12 positions
    got = sess.run(None, {"inputs_embeds": x.numpy(), "attention_mask": np.ones((1, 12), np.int64), **_past(cfg)})
    assert np.abs(got[0] - want_logits).max() <= TOL
    assert np.abs(got[1] - want_hidden).max() <= TOL
    # prefill 11, then one cached decode step on the buffers the prefill returned (positions 0..10 written)
    first = sess.run(None, {"inputs_embeds": x[:, :11].numpy(), "attention_mask": np.ones((1, 11), np.int64),
                            **_past(cfg)})
    past = {n.replace("present", "past_key_values"): v for n, v in zip(names[2:], first[2:])}
    assert all(v.shape[2] == 16 and not v[:, :, 11:].any() and v[:, :, :11].any() for v in past.values())
    step = sess.run(None, {"inputs_embeds": x[:, 11:].numpy(), "attention_mask": np.ones((1, 12), np.int64),
                           **past})
    assert np.abs(step[0] - want_logits).max() <= TOL
    assert np.abs(step[1] - want_hidden).max() <= TOL
    # the same step with a mask of the cache's capacity (zeros past position 11), as a replayed CUDA graph feeds it
    fixed = np.zeros((1, 16), np.int64)
    fixed[:, :12] = 1
    again = sess.run(None, {"inputs_embeds": x[:, 11:].numpy(), "attention_mask": fixed,
                            **{n.replace("present", "past_key_values"): v for n, v in zip(names[2:], first[2:])}})
    assert np.array_equal(again[0], step[0]) and np.array_equal(again[1], step[1])
    # a batch of rows of different lengths, right-padded: the 12 positions above (prefill 11, then one step) beside
    # a row of 15 (prefill 14, then one step); each row equals the official talker on its own sequence
    y = torch.randn(1, 15, cfg["hidden_size"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_y = talker.codec_head(talker.model(inputs_embeds=y, use_cache=False).last_hidden_state[:, -1]).numpy()
    xb = np.zeros((2, 15, cfg["hidden_size"]), np.float32)
    xb[0, :12], xb[1] = x[0].numpy(), y[0].numpy()
    mask = np.zeros((2, 15), np.int64)
    mask[0, :11], mask[1, :14] = 1, 1
    first = sess.run(None, {"inputs_embeds": xb[:, :14], "attention_mask": mask[:, :14], **_past(cfg, b=2)})
    past = {n.replace("present", "past_key_values"): v for n, v in zip(names[2:], first[2:])}
    mask[0, 11], mask[1, 14] = 1, 1  # each row's next position
    step_x = np.stack([xb[0, 11], xb[1, 14]])[:, None]
    step = sess.run(None, {"inputs_embeds": step_x, "attention_mask": mask, **past})
    assert np.abs(step[0][0] - want_logits[0]).max() <= TOL
    assert np.abs(step[1][0] - want_hidden[0]).max() <= TOL
    assert np.abs(step[0][1] - want_y[0]).max() <= TOL


@pytest.mark.parametrize("name", ["cv_wide", "cv_equal"])
def test_code_predictor_greedy(models, name):
    m = models(name)
    talker, h = m.ref.model.talker, m.ours.cfg["hidden_size"]
    g = torch.Generator().manual_seed(1)
    b = 4
    past_hidden = torch.randn(b, h, generator=g)
    token = torch.randint(0, 2048, (b,), generator=g)
    text = torch.randn(b, h, generator=g)
    with torch.no_grad():
        e0 = talker.model.codec_embedding(token)
        seq = talker.code_predictor.generate(inputs_embeds=torch.stack((past_hidden, e0), 1), max_new_tokens=15,
                                             do_sample=False, output_hidden_states=True,
                                             return_dict_in_generate=True).sequences
        embeds = [e0] + [talker.code_predictor.model.codec_embedding[j](seq[:, j]) for j in range(15)]
        want_next = (torch.stack(embeds, 1).sum(1) + text).numpy()[:, None, :]  # the talker's next inputs_embeds
    # group 0 is sampled in the graph: logits whose argmax is `token` pick it (greedy)
    logits = np.random.default_rng(1).standard_normal((b, 3072)).astype(np.float32)
    logits[np.arange(b), token.numpy()] = 20.0
    seen = np.zeros((b, 3072), bool)
    options = {"do_sample": np.array(False), "temperature": np.array(0.9, np.float32), "top_k": np.array(50),
               "top_p": np.array(1.0, np.float32)}
    codes, nxt, seen_next = _session(m, "code_predictor").run(None, {
        "past_hidden": past_hidden.numpy(), "logits": logits, "seen": seen, "step": np.array(3),
        "finished": np.zeros(b, bool), "text_embed": text.numpy(),
        "noise": np.random.default_rng(0).random((b, 16), dtype=np.float32),
        **{"group0_" + k: v for k, v in options.items()}, "repetition_penalty": np.array(1.05, np.float32),
        **options})
    np.testing.assert_array_equal(codes[:, 0], token.numpy())
    np.testing.assert_array_equal(np.flatnonzero(seen_next[0]), [token[0]])
    np.testing.assert_array_equal(codes[:, 1:], seq.numpy())
    assert nxt.shape == want_next.shape and np.abs(nxt - want_next).max() <= TOL


def test_text_embedder(models):
    m = models("cv_wide")
    talker = m.ref.model.talker
    text = torch.tensor([[151644, 77091, 198, 9707, 4337, 151671, 151672, -1]])
    codec = torch.tensor([[-1, -1, -1, 2148, -1, 2155, 3061, 2149]])
    with torch.no_grad():
        want = talker.text_projection(talker.model.text_embedding(text.clamp(min=0)))
        want = want * (text >= 0)[..., None] + talker.model.codec_embedding(codec.clamp(min=0)) * (codec >= 0)[..., None]
    got = _session(m, "text_embedder").run(None, {"text_ids": text.numpy(), "codec_ids": codec.numpy()})[0]
    assert np.abs(got - want.numpy()).max() <= TOL


@pytest.mark.parametrize("frames", [1, 50, 160])
def test_speech_decoder_window(models, frames):
    m = models("cv_wide")
    codes = torch.from_numpy(np.random.default_rng(frames).integers(0, 2048, (1, 16, frames)))
    with torch.no_grad():
        want = m.ref.model.speech_tokenizer.model.decoder(codes).squeeze(1).numpy()
    state = m.ours.decoder.new_state()  # a fresh decode: zero conv contexts, no past keys/values, offset 0
    feeds = {"codes": codes.numpy(), "offset": np.array(0), **state.tensors}
    got = _session(m, "speech_decoder").run(["waveform"], feeds)[0]
    assert got.shape == want.shape == (1, frames * 1920)
    assert np.abs(got - want).max() <= TOL


def test_speaker_encoder_from_the_released_config():
    """The released configs give only enc_dim and sample_rate; the rest are the official class defaults."""
    from qwen3_tts_export.modules.speaker_encoder import SpeakerEncoder
    from qwen3_tts_export.reference import official_classes

    official_classes()
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSSpeakerEncoderConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSSpeakerEncoder

    cfg = {"enc_dim": 64, "sample_rate": 24000}
    torch.manual_seed(0)
    ref = Qwen3TTSSpeakerEncoder(Qwen3TTSSpeakerEncoderConfig(**cfg)).eval()
    ours = SpeakerEncoder({"speaker_encoder." + k: v for k, v in ref.state_dict().items()}, cfg).eval()
    mels = torch.randn(2, 40, 128, generator=torch.Generator().manual_seed(1)) * 2 - 4
    with torch.no_grad():
        assert (ours(mels) - ref(mels)).abs().max().item() <= TOL
