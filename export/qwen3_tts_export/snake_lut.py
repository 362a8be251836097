"""The int8 speech decoder's Snake activations on quantized inputs, as table lookups.

In the int8 decoder (precision.py) the inner Snake of each residual unit reads the dequantized output of an int8
convolution, and its result is quantized again for the next int8 convolution:

    q (uint8) ─► DequantizeLinear ─► x ─► Mul α ─► Sin ─► Mul (square) ─► Mul 1/β ─► Add x ─► QuantizeLinear ─► q'
                                     └──────────────────────────────────────────────┘

x takes one of 256 values per tensor, so q' is a function of (channel, q): a table of channels x 256 bytes. The
table is computed by running those very nodes in ONNX Runtime on every q of every channel, and the chain becomes

    q ─► Cast int32 ─► GatherElements(table, expanded to the batch; axis 2) ─► q'

which gives the same bytes for three passes over the tensor instead of seven, one of them ONNX Runtime's Sin (on
one thread). The other Snakes read the fp32 residual stream (a sum), which has no such finite set of values, and
stay as they are.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEVELS = 256  # uint8


class _Graph:
    def __init__(self, graph):
        self.graph = graph
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in graph.output}

    def only_consumer(self, name: str, op: str):
        users = {id(n): n for n in self.consumers.get(name, [])}
        if len(users) != 1 or name in self.outputs:
            return None
        (n,) = users.values()
        return n if n.op_type == op else None

    def scalar_init(self, name: str) -> bool:
        return name in self.inits and len(self.inits[name].dims) == 0

    def channel_init(self, names) -> tuple:
        """(the Mul input that is a [1, C, 1] initializer, the other input), or None."""
        for i, name in enumerate(names):
            t = self.inits.get(name)
            if t is not None and len(t.dims) == 3 and t.dims[0] == 1 and t.dims[2] == 1:
                return name, names[1 - i]
        return None


def _match(g: _Graph, sin) -> list | None:
    """The seven nodes [DequantizeLinear, Mul α, Sin, Mul square, Mul 1/β, Add, QuantizeLinear] around `sin`, or
    None when it is not that chain (whose x has no other reader)."""
    mul_a = g.producer.get(sin.input[0])
    if mul_a is None or mul_a.op_type != "Mul" or len(mul_a.input) != 2:
        return None
    alpha = g.channel_init(list(mul_a.input))
    if alpha is None:
        return None
    dq = g.producer.get(alpha[1])
    if dq is None or dq.op_type != "DequantizeLinear" or not all(g.scalar_init(i) for i in dq.input[1:3]):
        return None
    square = g.only_consumer(sin.output[0], "Mul")
    if square is None or list(square.input) != [sin.output[0]] * 2:
        return None
    mul_b = g.only_consumer(square.output[0], "Mul")
    if mul_b is None or g.channel_init(list(mul_b.input)) is None:
        return None
    add = g.only_consumer(mul_b.output[0], "Add")
    x = dq.output[0]
    if add is None or sorted(add.input) != sorted([x, mul_b.output[0]]):
        return None
    if {id(n) for n in g.consumers[x]} != {id(mul_a), id(add)} or x in g.outputs:
        return None
    qn = g.only_consumer(add.output[0], "QuantizeLinear")
    if qn is None or not all(g.scalar_init(i) for i in qn.input[1:3]):
        return None
    return [dq, mul_a, sin, square, mul_b, add, qn]


def _table(model, g: _Graph, chain: list) -> np.ndarray:
    """q' for every (channel, q): the chain's own nodes run by ONNX Runtime on [1, C, 256] inputs."""
    import onnxruntime as ort

    channels = g.inits[g.channel_init(list(chain[1].input))[0]].dims[1]
    names = {i for n in chain for i in n.input if i in g.inits}
    sub = helper.make_graph(
        [n for n in chain], "snake", [helper.make_tensor_value_info(chain[0].input[0], TensorProto.UINT8, None)],
        [helper.make_tensor_value_info(chain[-1].output[0], TensorProto.UINT8, None)],
        [g.inits[n] for n in sorted(names)])
    m = helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the nodes as they are, unfused
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    q = np.ascontiguousarray(np.broadcast_to(np.arange(LEVELS, dtype=np.uint8), (1, channels, LEVELS)))
    return s.run(None, {chain[0].input[0]: q})[0]


def snake_luts(model) -> int:
    """Rewrites `model` (a QDQ speech decoder) in place; returns the number of Snakes turned into lookups. The
    tables are expanded to the batch size, taken from the first axis of the graph's first input (the codes)."""
    g = _Graph(model.graph)
    chains = [c for c in (_match(g, n) for n in model.graph.node if n.op_type == "Sin") if c]
    if not chains:
        return 0
    batch = "snake_lut_batch_shape"  # [batch, 1, 1], from the codes input
    codes = model.graph.input[0].name
    head = [helper.make_node("Shape", [codes], ["snake_lut_codes_shape"]),
            helper.make_node("Gather", ["snake_lut_codes_shape", "snake_lut_zero"], ["snake_lut_batch"], axis=0),
            helper.make_node("Concat", ["snake_lut_batch", "snake_lut_ones"], [batch], axis=0)]
    model.graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "snake_lut_zero"),
                                    numpy_helper.from_array(np.array([1, 1], np.int64), "snake_lut_ones")])
    replace, drop = {}, set()
    for i, chain in enumerate(chains):
        table = f"snake_lut.{i}"
        model.graph.initializer.append(numpy_helper.from_array(_table(model, g, chain), table))
        q, out = chain[0].input[0], chain[-1].output[0]
        replace[id(chain[-1])] = [
            helper.make_node("Cast", [q], [f"{table}_index"], to=TensorProto.INT32, name=f"{table}_index"),
            helper.make_node("Expand", [table, batch], [f"{table}_batch"], name=f"{table}_batch"),
            helper.make_node("GatherElements", [f"{table}_batch", f"{table}_index"], [out], axis=2, name=table)]
        drop |= {id(n) for n in chain}
    nodes = head[:]
    for n in model.graph.node:
        nodes += replace.get(id(n), []) if id(n) in drop else [n]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return len(chains)
