"""Tiny ONNX models for tests, built with onnx.helper (no downloads, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def save_graph(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_classifier(
    path: Path, *, features: int = 16, classes: int = 4, seed: int = 0,
    batch: int | str = "batch", softmax: bool = True,
) -> Path:
    """x[batch, features] -> MatMul -> Add -> Relu -> MatMul -> (Softmax) -> y[batch, classes]."""
    rng = np.random.default_rng(seed)
    hidden = 32
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (features, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, (hidden,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (hidden, classes)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["logits" if softmax else "y"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=-1))
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, classes])],
        initializer=[w1, b1, w2],
    )
    return save_graph(graph, path)


def make_baked_batch_model(path: Path, *, features: int = 8) -> Path:
    """Declares a dynamic batch axis, but a Reshape constant bakes batch 1 in (a classic)."""
    shape = numpy_helper.from_array(np.array([1, features], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "baked",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        initializer=[shape],
    )
    return save_graph(graph, path)


def make_image_model(path: Path, *, channels: int = 1, size: int = 8, classes: int = 10) -> Path:
    """pixels[batch, C, H, W] -> Flatten -> Gemm -> logits[batch, classes] (digits-like I/O)."""
    rng = np.random.default_rng(1)
    flat = channels * size * size
    w = numpy_helper.from_array(rng.normal(0, 0.2, (classes, flat)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(classes, np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
        ],
        "image",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                       ["batch", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=[w, b],
    )
    return save_graph(graph, path)


def make_sequence_encoder(path: Path, *, second_axis: str | None = "sequence") -> Path:
    """ids[batch, sequence], mask[batch, sequence] -> hidden[batch, sequence]."""
    axis: str | int = second_axis if second_axis is not None else -1
    dims = ["batch", axis]
    graph = helper.make_graph(
        [helper.make_node("Add", ["ids", "mask"], ["hidden"])],
        "encoder",
        [helper.make_tensor_value_info("ids", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, dims)],
    )
    if second_axis is None:  # an unnamed dynamic axis: no dim_value, no dim_param
        for value in (*graph.input, *graph.output):
            value.type.tensor_type.shape.dim[1].Clear()
    return save_graph(graph, path)


def make_upscaler(path: Path, *, scale: int = 2) -> Path:
    """low_res[batch, 1, height, width] -> Conv 3x3 -> DepthToSpace(scale)
    -> high_res[batch, 1, scale*height, scale*width] (ESPCN-like I/O, any height and width)."""
    rng = np.random.default_rng(3)
    channels = scale * scale
    w = numpy_helper.from_array(rng.normal(0, 0.3, (channels, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(channels, np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["low_res", "w", "b"], ["features"], pads=[1, 1, 1, 1]),
            helper.make_node("DepthToSpace", ["features"], ["high_res"], blocksize=scale),
        ],
        "upscaler",
        [helper.make_tensor_value_info("low_res", TensorProto.FLOAT,
                                       ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("high_res", TensorProto.FLOAT,
                                       ["batch", 1, "high_height", "high_width"])],
        initializer=[w, b],
    )
    return save_graph(graph, path)


# A tokenizer step (max_length 64) feeding make_sequence_encoder's model "enc.onnx".
SEQUENCE_PIPELINE_SPEC = """
models:
  - name: enc
    onnx: enc.onnx
    max_batch_size: 16
    tensorrt: {opt_batch_size: 4, extra_profiles: [{min: 1, opt: 1, max: 2}]}
python_steps:
  - name: tok
    function: tritonkit.processing.steps:tokenize_text
    parameters: {max_length: 64}
    inputs: [{name: TEXT, dtype: BYTES, dims: [1]}]
    outputs:
      - {name: IDS, dtype: FP32, dims: [-1]}
      - {name: MASK, dtype: FP32, dims: [-1]}
    max_batch_size: 16
pipelines:
  - name: embed
    max_batch_size: 16
    steps:
      - tok
      - {model: enc, inputs: {ids: IDS, mask: MASK}}
"""


# make_upscaler's model "up.onnx" with TensorRT ranges for height and width besides batch.
UPSCALER_SPEC = """
models:
  - name: upscaler
    onnx: up.onnx
    max_batch_size: 4
    tensorrt:
      opt_batch_size: 1
      dynamic_axes:
        height: {min: 8, opt: 32, max: 64}
        width: {min: 8, opt: 32, max: 64}
"""
