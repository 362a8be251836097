"""A residual add and the RMSNorm after it as one node: ONNX Runtime's SkipSimplifiedLayerNormalization
(com.microsoft), as a torch custom op, so that the module code stays plain torch.

    x [B,S,H] ──┐
                Add ── s ──► RMSNorm(weight, eps) ──► normed [B,S,H]
    skip ───────┘      └───────────────────────────► s [B,S,H]     (the residual stream, for the next add)

ONNX Runtime fuses an Add into a following LayerNormalization by itself, but not into the RMS form, and not when
the sum is read again (the residual stream always is). A Qwen3 layer has two such pairs; fused, the talker's decode
step has 56 nodes fewer and the code predictor's frame 150, each an operator dispatch on the CPU.

As in gqa.py: `skip_rms_norm` is the reference (torch runs it when tracing and in the export check), `_onnx` is
what the exporter writes for it, and `register_schema()` declares the contrib op to onnx.
"""
from __future__ import annotations

import torch

DOMAIN = "com.microsoft"


@torch.library.custom_op("qwen3_tts::skip_rms_norm", mutates_args=())
def skip_rms_norm(x: torch.Tensor, skip: torch.Tensor, weight: torch.Tensor, eps: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    from .common import rms_norm

    s = x + skip
    return rms_norm(s, weight, eps), s


@skip_rms_norm.register_fake
def _(x, skip, weight, eps):
    return torch.empty_like(x), torch.empty_like(x)


def register_schema() -> None:
    """Declare SkipSimplifiedLayerNormalization (ONNX Runtime's inputs and outputs, in its order) to onnx, once."""
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has("SkipSimplifiedLayerNormalization", DOMAIN):
        return
    opt, one = OpSchema.FormalParameterOption.Optional, OpSchema.FormalParameterOption.Single
    param = OpSchema.FormalParameter
    onnx.defs.register_schema(OpSchema(
        "SkipSimplifiedLayerNormalization", DOMAIN, 1,
        inputs=[param("input", "T"), param("skip", "T"), param("gamma", "T"), param("bias", "T", param_option=opt)],
        outputs=[param("output", "T"), param("mean", "U", param_option=opt),
                 param("inv_std_var", "U", param_option=opt), param("input_skip_bias_sum", "T", param_option=opt)],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("U", ["tensor(float)"], "")],
        attributes=[OpSchema.Attribute("epsilon", OpSchema.AttrType.FLOAT, "")]))


def _onnx(x, skip, weight, eps: float):
    import onnxscript

    op = onnxscript.values.Opset(DOMAIN, 1).SkipSimplifiedLayerNormalization
    out, _, _, s = op(x, skip, weight, epsilon=eps, _outputs=4)
    return out, s


def translation_table() -> dict:
    """For torch.onnx.export(custom_translation_table=...)."""
    register_schema()
    return {torch.ops.qwen3_tts.skip_rms_norm.default: _onnx}
