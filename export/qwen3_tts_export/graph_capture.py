"""Make a graph replayable as an ONNX Runtime CUDA graph, and list what stands in the way of one.

ONNX Runtime can capture a session's run into a CUDA graph (CUDA provider option `enable_cuda_graph`) and replay
it: one launch for the whole run instead of one per kernel (the code predictor runs ~1,000 kernels per frame, a few
microseconds of launch each, more than the GPU's work for them). It captures only when

  - the graph holds no control flow (If, Loop, Scan): a captured graph has one path;
  - every value a CUDA kernel reads on the host (TopK's k, Slice's bounds, Reshape's shape, GroupQueryAttention's
    total length, ...: HOST_INPUTS) is known without reading the device, from constants and shapes. A value
    computed from data would need a copy to the host, which ONNX Runtime refuses to capture; a value bound from the
    host would be frozen into the graph at capture, so that a later call with another top_k replays the old one;
  - every replay has the same input shapes and addresses (the runtime's side: runtime's graph_replay.py).

make_capturable() rewrites the code predictor's sampler (export's modules/sampling.py), which the CPU graphs keep
behind If nodes so that a frame pays only for the path it takes, into the same results without either:

    If(cond) ─┬─ then: nodes ─► t          then's nodes ─► t ─┐
              └─ else: nodes ─► e    ──►   else's nodes ─► e ─┴─► Where(cond, t, e)

    TopK(x, k) ─► values ─► Slice [k-1, k)    ──►    TopK(x, K = length of x's axis) ─► values ─► Gather(k - 1)
                                                     (the k-th largest value, read from a full sort)

Both sides compute the same numbers (tests/test_graph_capture.py holds the rewritten graph equal to the original).
capture_blockers() is a static check of the first two conditions, and of one thing the CUDA provider refuses
outright (an attention_bias on GroupQueryAttention): ONNX Runtime decides at session creation, on a GPU, which
kernels run where; this reads the graph alone.
"""
from __future__ import annotations

import copy

import numpy as np
from onnx import helper, numpy_helper

from .onnx_graph import GraphIndex, prune

CONTROL_FLOW = ("If", "Loop", "Scan")
# Inputs that ONNX Runtime's CUDA kernels read on the host (their OrtMemTypeCPUInput), by operator: input indices.
HOST_INPUTS = {"TopK": (1,), "Slice": (1, 2, 3, 4), "Reshape": (1,), "Expand": (1,), "ConstantOfShape": (0,),
               "Tile": (1,), "Range": (0, 1, 2), "Unsqueeze": (1,), "Squeeze": (1,), "ReduceSum": (1,),
               "ReduceMax": (1,), "ReduceMin": (1,), "ReduceMean": (1,), "Split": (1,), "Pad": (1, 2, 3),
               "Resize": (1, 2, 3), "CumSum": (1,), "Clip": (1, 2), "OneHot": (1,), "GroupQueryAttention": (6,)}
# operators whose output is known on the host whatever their input holds
SHAPE_OPS = ("Shape", "Size")


def _host_known(graph) -> set:
    """Names of the values computed from constants and shapes alone (nodes in graph order, as ONNX keeps them)."""
    known = {i.name for i in graph.initializer} | {""}
    for n in graph.node:
        if n.op_type in ("Constant", *SHAPE_OPS) or all(i in known for i in n.input):
            known.update(n.output)
    return known


def capture_blockers(model) -> list[str]:
    """What stands in the way of capturing `model` as a CUDA graph: control-flow nodes, and host inputs of CUDA
    kernels computed from data. Empty when nothing does (as far as the graph alone tells)."""
    graph = model.graph
    problems = [f"{n.op_type} node {n.name!r} (control flow)" for n in graph.node if n.op_type in CONTROL_FLOW]
    # ONNX Runtime's CUDA GroupQueryAttention refuses an attention_bias ("attention_bias is not supported in
    # GroupQueryAttention cuda kernel"): such a graph does not run on the GPU at all
    problems += [f"GroupQueryAttention node {n.name!r} has an attention_bias, which the CUDA kernel refuses"
                 for n in graph.node if n.op_type == "GroupQueryAttention" and len(n.input) > 10 and n.input[10]]
    known = _host_known(graph)
    for n in graph.node:
        for i in HOST_INPUTS.get(n.op_type, ()):
            if i < len(n.input) and n.input[i] not in known:
                problems.append(f"{n.op_type} node {n.name!r} reads input {i} ({n.input[i]!r}) on the host, and it "
                                f"is computed from data")
    return problems


def _inline_ifs(graph, prefix: str = "") -> int:
    """Replace every If node of `graph` (nested ones first) by both branches' nodes and a Where per output.
    Returns how many If nodes went."""
    nodes, count = [], 0
    for n in graph.node:
        if n.op_type != "If":
            nodes.append(n)
            continue
        outs = []
        for attr in sorted(n.attribute, key=lambda a: a.name != "then_branch"):  # then_branch first
            branch = copy.deepcopy(attr.g)
            tag = f"{prefix}{n.name or 'If'}/{attr.name}/"
            count += _inline_ifs(branch, tag)
            local = {i.name for i in branch.initializer} | {o for b in branch.node for o in b.output}
            rename = {name: tag + name for name in local}
            for init in branch.initializer:
                init.name = rename[init.name]
                graph.initializer.append(init)
            for b in branch.node:
                b.name = tag + (b.name or b.op_type)
                b.input[:] = [rename.get(i, i) for i in b.input]
                b.output[:] = [rename[o] for o in b.output]
                nodes.append(b)
            outs.append([rename.get(o.name, o.name) for o in branch.output])
        for out, then, other in zip(n.output, *outs):
            nodes.append(helper.make_node("Where", [n.input[0], then, other], [out], name=f"{prefix}{n.name}/{out}"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def _full_topk(graph) -> int:
    """TopK(x, k) whose k comes from data, read only through Slice [k-1, k) of its values (the sampler's k-th
    largest value): TopK over the whole axis and a Gather of position k-1. Returns how many were rewritten; a TopK
    read any other way raises (this rewrite would need extending)."""
    known, g = _host_known(graph), GraphIndex(graph)
    count = 0
    for n in list(graph.node):
        if n.op_type != "TopK" or n.input[1] in known:
            continue
        values, indices = n.output[0], n.output[1] if len(n.output) > 1 else ""
        slices = g.consumers.get(values, [])
        if indices and g.consumers.get(indices) or len(slices) != 1 or slices[0].op_type != "Slice":
            raise ValueError(f"TopK node {n.name!r} has a k computed from data and is read other than by one Slice "
                             "of its values: graph_capture._full_topk does not know this pattern")
        s = slices[0]
        starts, ends = g.producer.get(s.input[1]), g.producer.get(s.input[2])
        sub = g.producer.get(starts.input[0]) if starts is not None and starts.op_type == "Reshape" else None
        one = g.constant(sub.input[1]) if sub is not None and sub.op_type == "Sub" else None
        ok = (one is not None and one.size == 1 and int(one.reshape(-1)[0]) == 1 and ends is not None
              and ends.op_type == "Reshape" and ends.input[0] == sub.input[0]
              and (len(s.input) < 5 or int(g.constant(s.input[4]).reshape(-1)[0]) == 1))
        if not ok:
            raise ValueError(f"Slice node {s.name!r} after TopK {n.name!r} is not [k-1, k) of its values: "
                             "graph_capture._full_topk does not know this pattern")
        axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
        slice_axis = int(g.constant(s.input[3]).reshape(-1)[0]) if len(s.input) > 3 and s.input[3] else 0
        tag = f"{n.name or 'TopK'}/full"
        shape, length, axis_const = f"{tag}/shape", f"{tag}/length", f"{tag}/axis"
        graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), axis_const))
        at = list(graph.node).index(n)
        graph.node.insert(at, helper.make_node("Shape", [n.input[0]], [shape], name=f"{tag}/Shape"))
        graph.node.insert(at + 1, helper.make_node("Gather", [shape, axis_const], [length], name=f"{tag}/Gather",
                                                   axis=0))
        n.input[1] = length
        gather = helper.make_node("Gather", [values, s.input[1]], list(s.output), name=f"{s.name or 'Slice'}/gather",
                                  axis=slice_axis)
        graph.node.insert(list(graph.node).index(s), gather)
        graph.node.remove(s)
        count += 1
    return count


def make_capturable(model) -> dict:
    """Rewrite `model` in place as the module docstring says; returns what changed and what still blocks capture
    (an empty list when nothing does)."""
    ifs = _inline_ifs(model.graph)
    topks = _full_topk(model.graph)
    prune(model.graph)  # the k arithmetic of the old Slices and TopKs
    return {"ifs_inlined": ifs, "topk_full_sorts": topks, "capture_blockers": capture_blockers(model)}
