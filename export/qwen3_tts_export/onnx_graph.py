"""What the ONNX graph rewrites (snake_lut.py, graph_capture.py) share: an index of a graph's nodes by the values
they produce and read, and the pruning of what a rewrite left unread."""
from __future__ import annotations

from onnx import numpy_helper


class GraphIndex:
    """A graph's initializers, the node producing each value and the nodes reading it, as they were when made."""

    def __init__(self, graph):
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in graph.output}

    def only_consumer(self, name: str, op: str):
        """The one node reading `name`, if it is an `op` and `name` is no graph output; else None."""
        users = {id(n): n for n in self.consumers.get(name, [])}
        if len(users) != 1 or name in self.outputs:
            return None
        (n,) = users.values()
        return n if n.op_type == op else None

    def scalar_init(self, name: str) -> bool:
        return name in self.inits and len(self.inits[name].dims) == 0

    def constant(self, name: str):
        """The value of an initializer or a Constant node's output, as numpy; None if `name` is neither."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        n = self.producer.get(name)
        return numpy_helper.to_array(n.attribute[0].t) if n is not None and n.op_type == "Constant" else None


def prune(graph, nodes: list | None = None) -> None:
    """Sets graph's nodes to `nodes` (default: its own) less those whose outputs nobody reads, and drops the
    initializers nothing reads any more and the value infos of values that are gone."""
    nodes = list(graph.node) if nodes is None else nodes
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        kept = [n for n in nodes if any(o in used for o in n.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    names = {o for n in nodes for o in n.output} | {i.name for i in graph.input} | {t.name for t in kept_inits}
    kept_info = [v for v in graph.value_info if v.name in names]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
