"""The int8 speech decoder's Snake activations on quantized inputs, as table lookups.

In the int8 decoder (precision.py) most Snakes (x + sin^2(alpha x) / beta, per channel) read the dequantized output
of an int8 convolution and feed the next int8 convolution, which quantizes their result again:

    q (uint8) ─► DequantizeLinear ─► [Reshape/Transpose] ─► x ─► Mul α ─► Sin ─► square ─► Mul 1/β ─► Add x ─► y
    y ─► QuantizeLinear ─► q'                                        "bytes": q' is looked up
    y ─► Concat(the convolution's state, ·) ─► QuantizeLinear ─► q'  "values": DequantizeLinear(q') is looked up

x takes one of 256 values per tensor, so the result is a function of (channel, byte): a table of channels x 256,
computed by running those very nodes in ONNX Runtime on every byte of every channel (the moves leave values alone
and are left out). The Snake becomes

    q ─► [the same moves, on bytes] ─► Cast int32 ─► GatherElements(table expanded to the batch; axis 2)

which gives the same bytes after the QuantizeLinear: two passes over the tensor instead of five to seven, and no
Sin (which ONNX Runtime runs on one thread). A DequantizeLinear that something else still reads (a residual add)
stays. The Snakes that read the fp32 residual stream (a sum: no finite set of values) stay as they are.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .onnx_graph import GraphIndex, prune

LEVELS = 256  # uint8


class _Graph(GraphIndex):
    def channel_init(self, names) -> tuple:
        """(the Mul input that is a [1, C, 1] initializer, the other input), or None."""
        for i, name in enumerate(names):
            t = self.inits.get(name)
            if t is not None and len(t.dims) == 3 and t.dims[0] == 1 and t.dims[2] == 1:
                return name, names[1 - i]
        return None


VALUE_PRESERVING = ("Reshape", "Transpose", "Squeeze", "Unsqueeze")  # move bytes, change no value


def _source(g: _Graph, x: str):
    """(DequantizeLinear, [nodes that only move its values, in order]) producing x, or None."""
    path, n = [], g.producer.get(x)
    while n is not None and n.op_type in VALUE_PRESERVING:
        path.append(n)
        n = g.producer.get(n.input[0])
    if n is None or n.op_type != "DequantizeLinear" or not all(g.scalar_init(i) for i in n.input[1:3]):
        return None
    return n, path[::-1]


def _match(g: _Graph, sin) -> dict | None:
    """The Snake around `sin` when its input is dequantized (maybe moved by VALUE_PRESERVING nodes) and its output
    is quantized: by a QuantizeLinear ("bytes": the table holds its uint8 output), or by a QuantizeLinear after a
    Concat with the convolution's state ("values": the table holds the values that QuantizeLinear's bytes stand for,
    so the Concat and its QuantizeLinear give the same bytes). None otherwise."""
    mul_a = g.producer.get(sin.input[0])
    if mul_a is None or mul_a.op_type != "Mul" or len(mul_a.input) != 2:
        return None
    alpha = g.channel_init(list(mul_a.input))
    if alpha is None:
        return None
    x = alpha[1]
    source = _source(g, x)
    square = g.only_consumer(sin.output[0], "Mul")
    if source is None or square is None or list(square.input) != [sin.output[0]] * 2:
        return None
    mul_b = g.only_consumer(square.output[0], "Mul")
    if mul_b is None or g.channel_init(list(mul_b.input)) is None:
        return None
    add = g.only_consumer(mul_b.output[0], "Add")
    if add is None or sorted(add.input) != sorted([x, mul_b.output[0]]):
        return None
    snake = [mul_a, sin, square, mul_b, add]
    qn = g.only_consumer(add.output[0], "QuantizeLinear")
    if qn is not None and all(g.scalar_init(i) for i in qn.input[1:3]):
        return {"dq": source[0], "path": source[1], "snake": snake, "quantize": qn, "out": qn.output[0],
                "kind": "bytes"}
    cat = g.only_consumer(add.output[0], "Concat")
    qn = g.only_consumer(cat.output[0], "QuantizeLinear") if cat is not None else None
    if qn is not None and all(g.scalar_init(i) for i in qn.input[1:3]):
        return {"dq": source[0], "path": source[1], "snake": snake, "quantize": qn, "out": add.output[0],
                "kind": "values"}
    return None


def _table(model, g: _Graph, m: dict) -> np.ndarray:
    """The chain's result for every (channel, byte): its own nodes (DequantizeLinear, the Snake, QuantizeLinear,
    and for "values" a DequantizeLinear with the same scale) run by ONNX Runtime on [1, C, 256] inputs. The nodes
    that only move values are left out: the table is per value and channel."""
    import onnxruntime as ort

    dq, snake, qn = m["dq"], m["snake"], m["quantize"]
    channels = g.inits[g.channel_init(list(snake[0].input))[0]].dims[1]
    x = next(i for i in snake[0].input if i not in g.inits)  # the Snake's input, after the moves

    def from_dq(n):  # the node reading the DequantizeLinear's output where it read x
        return helper.make_node(n.op_type, [dq.output[0] if i == x else i for i in n.input], list(n.output))

    nodes = [dq, from_dq(snake[0]), *snake[1:4], from_dq(snake[4]),
             helper.make_node("QuantizeLinear", [snake[4].output[0], *qn.input[1:3]], ["bytes"])]
    out, out_type = "bytes", TensorProto.UINT8
    if m["kind"] == "values":
        nodes.append(helper.make_node("DequantizeLinear", ["bytes", *qn.input[1:3]], ["values"]))
        out, out_type = "values", TensorProto.FLOAT
    names = {i for n in nodes for i in n.input if i in g.inits}
    sub = helper.make_graph(nodes, "snake", [helper.make_tensor_value_info(dq.input[0], TensorProto.UINT8, None)],
                            [helper.make_tensor_value_info(out, out_type, None)], [g.inits[n] for n in sorted(names)])
    sub_model = helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the nodes as they are, unfused
    s = ort.InferenceSession(sub_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    q = np.ascontiguousarray(np.broadcast_to(np.arange(LEVELS, dtype=np.uint8), (1, channels, LEVELS)))
    return s.run(None, {dq.input[0]: q})[0]


def snake_luts(model) -> int:
    """Rewrites `model` (a QDQ speech decoder) in place; returns the number of Snakes turned into lookups. The
    tables are expanded to the batch size, taken from the first axis of the graph's first input (the codes)."""
    g = _Graph(model.graph)
    found = [m for m in (_match(g, n) for n in model.graph.node if n.op_type == "Sin") if m]
    if not found:
        return 0
    batch = "snake_lut_batch_shape"  # [batch, 1, 1], from the codes input
    codes = model.graph.input[0].name
    head = [helper.make_node("Shape", [codes], ["snake_lut_codes_shape"]),
            helper.make_node("Gather", ["snake_lut_codes_shape", "snake_lut_zero"], ["snake_lut_batch"], axis=0),
            helper.make_node("Concat", ["snake_lut_batch", "snake_lut_ones"], [batch], axis=0)]
    model.graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "snake_lut_zero"),
                                    numpy_helper.from_array(np.array([1, 1], np.int64), "snake_lut_ones")])
    replace, drop = {}, set()
    for i, m in enumerate(found):
        table = f"snake_lut.{i}"
        model.graph.initializer.append(numpy_helper.from_array(_table(model, g, m), table))
        new, q = [], m["dq"].input[0]
        for j, n in enumerate(m["path"]):  # the same moves on the bytes
            new.append(helper.make_node(n.op_type, [q, *n.input[1:]], [f"{table}_moved{j}"], name=f"{table}_moved{j}",
                                        **{a.name: helper.get_attribute_value(a) for a in n.attribute}))
            q = new[-1].output[0]
        new += [helper.make_node("Cast", [q], [f"{table}_index"], to=TensorProto.INT32, name=f"{table}_index"),
                helper.make_node("Expand", [table, batch], [f"{table}_batch"], name=f"{table}_batch"),
                helper.make_node("GatherElements", [f"{table}_batch", f"{table}_index"], [m["out"]], axis=2,
                                 name=table)]
        last = m["quantize"] if m["kind"] == "bytes" else m["snake"][-1]  # the node whose output the lookup gives
        replace[id(last)] = new
        drop |= {id(n) for n in m["snake"]} | {id(last)}
    nodes = head[:]
    for n in model.graph.node:
        nodes += replace.get(id(n), []) if id(n) in drop else [n]
    prune(model.graph, nodes)  # the DequantizeLinear and moves a lookup made unused
    onnx.checker.check_model(model)
    return len(found)

