"""Cuts and maps in an exported ONNX graph, for writer profiles (`hccr.adapt`): onnx only, no
torch, so that a recogniser on its export adapts without loading the float model.

The shipped students end in feature layer (Gemm) -> ReLU -> classifier (Gemm); the int8
exports put quantise / dequantise nodes between them and let the quantiser (uint8, zero point
0) do the ReLU's work. A profile maps the feature layer's pre-activation, so both functions find
that tensor: `onnx_feature_graph` ends the graph there (a profile passed per call), and
`onnx_mapped_graph` inserts the map there (a profile set for every call).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Ops an exporter or quantiser may put between the classifier and the "logits" output.
_PASS_THROUGH_OPS = ("QuantizeLinear", "DequantizeLinear", "Identity", "Cast")


def _final_classifier(graph: Any, producer: dict[str, Any]) -> Any:
    """The Gemm (or MatMul) node whose output becomes the graph's first output, or None.

    Walked back from the output through quantise / dequantise nodes (and an Add: MatMul + bias);
    `producer`: tensor name -> the node that outputs it.
    """
    node = producer.get(graph.output[0].name)
    while node is not None and node.op_type in _PASS_THROUGH_OPS:
        node = producer.get(node.input[0])
    if node is not None and node.op_type == "Add":  # MatMul + bias
        node = next(
            (producer[i] for i in node.input if i in producer and producer[i].op_type == "MatMul"),
            None,
        )
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        return None
    if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
        return None
    return node


def _pre_activation(graph: Any) -> str | None:
    """The name of the feature layer's pre-activation: the tensor the final classifier's input
    comes from through the ReLU (or the quantiser that absorbed it); None when the graph does
    not end in feature layer -> ReLU -> classifier."""
    producer = {out: n for n in graph.node for out in n.output}
    node = _final_classifier(graph, producer)
    if node is None:
        return None
    name, passed_relu = node.input[0], False
    while (p := producer.get(name)) is not None and p.op_type in (*_PASS_THROUGH_OPS, "Relu"):
        # an int8 export has no Relu: its quantiser (uint8, zero point 0) clips at 0 instead
        passed_relu |= p.op_type in ("Relu", "QuantizeLinear")
        name = p.input[0]
    return name if passed_relu and name in producer else None


def _graph_up_to(model: Any, tensor: str, output: str) -> Any:
    """`model` cut to the nodes `tensor` depends on, with `tensor` as its one output `output`."""
    import onnx
    from onnx import helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    needed, kept, stack = {tensor}, set(), [tensor]
    while stack:
        producing = producer.get(stack.pop())
        if producing is None or id(producing) in kept:
            continue
        kept.add(id(producing))
        for name in producing.input:
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    nodes = [n for n in graph.node if id(n) in kept]  # original (topological) order
    nodes.append(helper.make_node("Identity", [tensor], [output]))
    initializers = [t for t in graph.initializer if t.name in needed]
    out = helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)
    cut = helper.make_graph(nodes, output, list(graph.input), [out], initializers)
    cut_model = helper.make_model(cut, opset_imports=list(model.opset_import))
    cut_model.ir_version = model.ir_version
    return cut_model


def onnx_feature_graph(path: str | Path) -> bytes | None:
    """The export cut at its feature layer's pre-activation, as a serialised ONNX model, or None.

    Its one output, "features", is the feature layer before its ReLU (what a writer profile
    maps, `hccr.adapt`), so a recogniser can run the exported backbone, then the map, the ReLU
    and the classifier. None when the graph does not end in feature layer -> ReLU -> a Gemm
    (or MatMul + Add) classifier, quantise / dequantise nodes between them allowed.
    """
    import onnx

    model = onnx.load(str(path))
    tensor = _pre_activation(model.graph)
    return None if tensor is None else _graph_up_to(model, tensor, "features").SerializeToString()


# initializers of `onnx_mapped_graph` that a writer profile's map replaces (`OnnxRunner`)
MAP_WEIGHT, MAP_BIAS = "hccr_profile_At", "hccr_profile_b"


def onnx_mapped_graph(path: str | Path, feat_dim: int) -> bytes | None:
    """The export with an affine map z -> relu(z A^T + b) inserted at its feature layer's
    pre-activation, as a serialised ONNX model, or None (as `onnx_feature_graph`).

    A^T and b are the initializers `MAP_WEIGHT` and `MAP_BIAS` (identity and zero here): a
    session built with a writer profile's values in their place (`hccr.backends.OnnxRunner`)
    applies the profile to every character for one (d x d) product. The inserted ReLU is the
    feature layer's own; the Relu or quantiser after it then changes nothing.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    tensor = _pre_activation(graph)
    if tensor is None:
        return None
    mapped = f"{tensor}_hccr_profile"
    for node in graph.node:  # every reader of the pre-activation reads the mapped one instead
        node.input[:] = [mapped if name == tensor else name for name in node.input]
    graph.initializer.extend([numpy_helper.from_array(np.eye(feat_dim, dtype=np.float32), MAP_WEIGHT),
                              numpy_helper.from_array(np.zeros(feat_dim, np.float32), MAP_BIAS)])  # fmt: skip
    index = next(i for i, n in enumerate(graph.node) if tensor in n.output) + 1
    for offset, node in enumerate(
        [
            helper.make_node("MatMul", [tensor, MAP_WEIGHT], [f"{mapped}_matmul"]),
            helper.make_node("Add", [f"{mapped}_matmul", MAP_BIAS], [f"{mapped}_add"]),
            helper.make_node("Relu", [f"{mapped}_add"], [mapped]),
        ]
    ):
        graph.node.insert(index + offset, node)
    return model.SerializeToString()
