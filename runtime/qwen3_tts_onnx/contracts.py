"""The single source of truth for what the export writes and the runtime reads.

Graph file names, every graph's input and output names, shapes and dtypes, and the manifest schema. The export
stage imports this module to name its graph I/O; the runtime checks loaded sessions and manifests against it. If
the two ever disagree, `artifacts.load_manifest` refuses the artifacts.

Shapes use symbolic names for dynamic dimensions ("batch", "seq", ...) and integers for fixed ones.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

FORMAT_VERSION = 8  # 2: the speech decoder carries its streaming state; 3: next_embed is [batch, 1, hidden];
                    # 4: speech_decoder_context (frames whose samples are not needed skip the convolution stack);
                    # 5: the talker's KV cache is a buffer of some capacity that it writes in place;
                    # 6: the code predictor samples group 0 from the talker's logits;
                    # 7: the talker rotates at its cache positions (no position_ids input);
                    # 8: the talker's rows are right-padded (its mask's ones first, then zeros)
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 1920  # 24 kHz / 12.5 Hz
NUM_CODE_GROUPS = 16
CODEBOOK_SIZE = 2048  # codes 0..2047 in every group
TALKER_VOCAB = 3072  # group-0 codes + control tokens + speaker rows
DECODE_CHUNK_FRAMES = 300  # the official decoder's window ...
DECODE_LEFT_CONTEXT = 25  # ... and the left context each window re-decodes
MEL_BINS = 128  # the speaker encoder's log-mel input (SPEC §4.1)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32 | int64 | bool
    shape: tuple  # ints are fixed, strings are dynamic


@dataclass(frozen=True)
class GraphSpec:
    name: str
    file: str
    inputs: tuple
    outputs: tuple

    def to_json(self) -> dict:
        return {"file": self.file,
                "inputs": [asdict(t) | {"shape": list(t.shape)} for t in self.inputs],
                "outputs": [asdict(t) | {"shape": list(t.shape)} for t in self.outputs]}

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


PAST_PREFIX, PRESENT_PREFIX = "past_key_values.", "present."  # the talker's KV cache inputs / outputs


def past_key_name(i: int) -> str:
    return f"{PAST_PREFIX}{i}.key"


def past_value_name(i: int) -> str:
    return f"{PAST_PREFIX}{i}.value"


def present_key_name(i: int) -> str:
    return f"{PRESENT_PREFIX}{i}.key"


def present_value_name(i: int) -> str:
    return f"{PRESENT_PREFIX}{i}.value"


def talker_spec(hidden: int, num_layers: int, num_kv_heads: int, head_dim: int, kv_dtype: str = "float32") -> GraphSpec:
    """One graph for prefill and decode; P = 0 is the prefill.

    attention_mask: row b's T_b = P_b + S_b positions as ones, then zeros (right padding: rows of a batch may
    differ in length; the zeros may run on up to the cache's capacity, a fixed size for graph replay); RoPE
    positions are the cache positions, 0..T_b-1, the official positions. Outputs are for each row's last position
    of the call (index min(T_b, S) - 1): group-0 logits and the final-norm hidden state. The KV cache: per layer a
    key and a value buffer of a capacity C ≥ T whose first P_b positions hold row b's past; the graph writes the new
    positions at P_b..T_b-1 and returns the buffers as present (bind each present output to its past input and
    nothing is copied: ONNX Runtime's GroupQueryAttention then writes in place).
    kv_dtype: the cache's dtype (float16 in the fp16 variant, whose attention runs in fp16 as CUDA requires).
    """
    kv = (("batch", num_kv_heads, "capacity", head_dim),) * 2
    inputs = [TensorSpec("inputs_embeds", "float32", ("batch", "seq", hidden)),
              TensorSpec("attention_mask", "int64", ("batch", "total"))]
    outputs = [TensorSpec("logits", "float32", ("batch", TALKER_VOCAB)),
               TensorSpec("hidden", "float32", ("batch", hidden))]
    for i in range(num_layers):
        inputs += [TensorSpec(past_key_name(i), kv_dtype, kv[0]), TensorSpec(past_value_name(i), kv_dtype, kv[0])]
        outputs += [TensorSpec(present_key_name(i), kv_dtype, kv[1]),
                    TensorSpec(present_value_name(i), kv_dtype, kv[1])]
    return GraphSpec("talker", "talker.onnx", tuple(inputs), tuple(outputs))


def _sampler_options(prefix: str) -> tuple:
    return (TensorSpec(prefix + "do_sample", "bool", ()), TensorSpec(prefix + "temperature", "float32", ()),
            TensorSpec(prefix + "top_k", "int64", ()), TensorSpec(prefix + "top_p", "float32", ()))


def code_predictor_spec(hidden: int) -> GraphSpec:
    """One run per frame: group 0 sampled from the talker's logits as the official loop does (repetition penalty on
    `seen`, the ids each row generated so far; EOS blocked while `step` < 2; control ids suppressed; EOS forced for
    `finished` rows), then groups 1..15 from the talker's hidden state, all drawn in-graph from host noise
    (`noise[:, j]` draws group j) with their own options (`group0_*` and `repetition_penalty` for group 0, the
    unprefixed ones for the sub-talker); plus `seen_next` (seen with this frame's group 0) and the next talker input:
    the sum of the 16 group embeddings plus `text_embed` (the text-track vector for the next position), shaped as
    the talker's `inputs_embeds` so that it feeds the next talker step as it is, on the device. The talker's logits
    stay on the device; the host reads the codes."""
    return GraphSpec(
        "code_predictor", "code_predictor.onnx",
        (TensorSpec("past_hidden", "float32", ("batch", hidden)),
         TensorSpec("logits", "float32", ("batch", TALKER_VOCAB)),
         TensorSpec("seen", "bool", ("batch", TALKER_VOCAB)),
         TensorSpec("step", "int64", ()),
         TensorSpec("finished", "bool", ("batch",)),
         TensorSpec("text_embed", "float32", ("batch", hidden)),
         TensorSpec("noise", "float32", ("batch", NUM_CODE_GROUPS)),
         *_sampler_options("group0_"),
         TensorSpec("repetition_penalty", "float32", ()),
         *_sampler_options("")),
        (TensorSpec("codes", "int64", ("batch", NUM_CODE_GROUPS)),
         TensorSpec("next_embed", "float32", ("batch", 1, hidden)),
         TensorSpec("seen_next", "bool", ("batch", TALKER_VOCAB))))


def text_embedder_spec(hidden: int) -> GraphSpec:
    """The dual-track prompt embedding: text_projection(text_embedding(text_ids)) + codec_embedding(codec_ids);
    an id of -1 leaves its track out at that position."""
    return GraphSpec(
        "text_embedder", "text_embedder.onnx",
        (TensorSpec("text_ids", "int64", ("batch", "seq")), TensorSpec("codec_ids", "int64", ("batch", "seq"))),
        (TensorSpec("embeds", "float32", ("batch", "seq", hidden)),))


def decoder_state_names(layout: dict) -> list[str]:
    """The speech decoder's state inputs in order; each output is the input's name with "new_" in front."""
    names = [f"conv_state.{i}" for i in range(len(layout["conv"]))]
    for i in range(layout["layers"]):
        names += [f"attn_key.{i}", f"attn_value.{i}"]
    return names


def speech_decoder_spec(layout: dict) -> GraphSpec:
    """Codes to waveform, streaming exactly: the frames from `offset` on, with the state the previous call returned
    (a zero state, empty attention keys/values and offset 0 start a fresh decode; the official windowed decode
    runs each window that way).

    layout (manifest config "speech_decoder_state", written by the export from the decoder module):
      conv: [[channels, context], ...]  each causal conv's last `context` inputs, in call order
      layers, heads, head_dim, window:  the transformer's rotated keys/values of the last window - 1 positions
      stack_frames: frames after which the convolution stack's output no longer depends on its incoming state
    """
    inputs = [TensorSpec("codes", "int64", ("batch", NUM_CODE_GROUPS, "frames")), TensorSpec("offset", "int64", ())]
    outputs = [TensorSpec("waveform", "float32", ("batch", "samples"))]
    for name in decoder_state_names(layout):
        if name.startswith("conv_state."):
            shape_in = shape_out = ("batch", *layout["conv"][int(name.split(".")[1])])
        else:
            shape_in = ("batch", layout["heads"], "past", layout["head_dim"])
            shape_out = ("batch", layout["heads"], "kept", layout["head_dim"])
        inputs.append(TensorSpec(name, "float32", tuple(shape_in)))
        outputs.append(TensorSpec("new_" + name, "float32", tuple(shape_out)))
    return GraphSpec("speech_decoder", "speech_decoder.onnx", tuple(inputs), tuple(outputs))


def speech_decoder_context_spec(layout: dict) -> GraphSpec:
    """The speech decoder's front alone (codebooks, pre_conv, transformer): advances a stream's pre_conv state
    (conv_state.0) and attention keys/values over frames whose samples are not needed; the convolution stack's
    states are left as they were, and decoding the last layout["stack_frames"] of those frames through
    speech_decoder (samples dropped) makes them exact again (see decode.py)."""
    names = ["conv_state.0"] + [n for n in decoder_state_names(layout) if not n.startswith("conv_state.")]
    decoder = speech_decoder_spec(layout)
    full = {t.name: t for t in decoder.inputs + decoder.outputs}
    inputs = [full["codes"], full["offset"]] + [full[n] for n in names]
    outputs = [full["new_" + n] for n in names]
    return GraphSpec("speech_decoder_context", "speech_decoder_context.onnx", tuple(inputs), tuple(outputs))


def speaker_encoder_spec(hidden: int) -> GraphSpec:
    """Base models: log-mel frames of 24 kHz audio (runtime front end, SPEC §4.1) -> the x-vector that takes the
    speaker slot of the prompt (its width is the talker's)."""
    return GraphSpec(
        "speaker_encoder", "speaker_encoder.onnx",
        (TensorSpec("mels", "float32", ("batch", "mel_frames", MEL_BINS)),),
        (TensorSpec("x_vector", "float32", ("batch", hidden)),))


def speech_encoder_spec() -> GraphSpec:
    """Base models: 24 kHz waveform -> the first 16 code groups of the 12 Hz speech tokenizer (Mimi). The graph
    returns Mimi's encoded length; the runtime keeps ceil(samples / 1920) frames, as the official encode."""
    return GraphSpec(
        "speech_encoder", "speech_encoder.onnx",
        (TensorSpec("waveform", "float32", ("batch", "samples")),),
        (TensorSpec("codes", "int64", ("batch", NUM_CODE_GROUPS, "frames")),))


def codec_embedder_spec(hidden: int) -> GraphSpec:
    """Base models: reference-audio frames -> talker inputs, each the sum of its 16 group embeddings (the talker's
    codec embedding for group 0, the code predictor's tables for groups 1-15), as the official ICL prompt."""
    return GraphSpec(
        "codec_embedder", "codec_embedder.onnx",
        (TensorSpec("codes", "int64", ("batch", "frames", NUM_CODE_GROUPS)),),
        (TensorSpec("embeds", "float32", ("batch", "frames", hidden)),))


def graph_specs(cfg: dict) -> dict:
    """Every graph's spec, keyed by graph name, from a config holding the talker's dimensions, the model type and
    the speech decoder's state layout (the manifest's config; at export, the checkpoint's talker_config plus
    tts_model_type and speech_decoder_state)."""
    h = cfg["hidden_size"]
    specs = [text_embedder_spec(h),
             talker_spec(h, cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_dim"],
                         cfg.get("kv_cache_dtype", "float32")),
             code_predictor_spec(h), speech_decoder_spec(cfg["speech_decoder_state"]),
             speech_decoder_context_spec(cfg["speech_decoder_state"])]
    if cfg["tts_model_type"] == "base":
        specs += [speaker_encoder_spec(h), speech_encoder_spec(), codec_embedder_spec(h)]
    return {s.name: s for s in specs}


# Which config values the manifest carries (everything the runtime needs, so it never reads a checkpoint config).
MANIFEST_CONFIG_KEYS = (
    "tts_model_type", "tts_model_size", "hidden_size", "num_hidden_layers", "num_key_value_heads", "head_dim",
    "vocab_size", "codec_pad_id", "codec_bos_id", "codec_eos_token_id", "codec_think_id", "codec_nothink_id",
    "codec_think_bos_id", "codec_think_eos_id", "codec_language_id", "spk_id", "spk_is_dialect",
    "tts_bos_token_id", "tts_eos_token_id", "tts_pad_token_id", "max_position_embeddings", "speech_decoder_state",
    "kv_cache_dtype",  # only in fp16 variants (float16); absent means float32
)
