from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_factories import (
    make_baked_batch_model,
    make_classifier,
    make_image_model,
    save_graph,
)
from tritonkit.errors import PrecisionError
from tritonkit.precision import outlier_smoothing as smoothing_module
from tritonkit.precision.outlier_smoothing import outlier_smoothing
from tritonkit.precision.transforms import (
    INT8_OPS,
    SENSITIVE_OPS,
    fp16_block_list,
    transform_fingerprint,
    transform_precision,
)
from tritonkit.spec import Precision

FEATURES = 16


def make_layernorm_model(path: Path) -> Path:
    """x -> LayerNorm -> MatMul -> Relu -> MatMul -> LayerNorm -> Softmax -> y.

    Sensitive ops sit at the graph input, next to each other and at the graph output: the three
    places where the fp16 converter leaves fp32->fp16->fp32 round trips.
    """
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(np.ones(FEATURES, np.float32), "ln0_scale"),
        numpy_helper.from_array(np.zeros(FEATURES, np.float32), "ln0_bias"),
        numpy_helper.from_array(rng.normal(0, 0.4, (FEATURES, 32)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.4, (32, 8)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, 8).astype(np.float32), "ln1_scale"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "ln1_bias"),
    ]
    nodes = [
        helper.make_node(
            "LayerNormalization", ["x", "ln0_scale", "ln0_bias"], ["n0"], axis=-1, name="ln0"
        ),
        helper.make_node("MatMul", ["n0", "w1"], ["h0"], name="mm1"),
        helper.make_node("Relu", ["h0"], ["h1"], name="relu"),
        helper.make_node("MatMul", ["h1", "w2"], ["h2"], name="mm2"),
        helper.make_node(
            "LayerNormalization", ["h2", "ln1_scale", "ln1_bias"], ["n1"], axis=-1, name="ln1"
        ),
        helper.make_node("Softmax", ["n1"], ["y"], axis=-1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "layernorm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        initializer=inits,
    )
    return save_graph(graph, path)


def _run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, feed)[0])


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in (*g.input, *g.value_info, *g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _io_elem_types(model: onnx.ModelProto) -> list[int]:
    return [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(7).normal(0, 1.5, (96, FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_classifier(tmp_path_factory.mktemp("src") / "classifier.onnx", features=FEATURES)


@pytest.fixture(scope="module")
def layernorm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_layernorm_model(tmp_path_factory.mktemp("src") / "layernorm.onnx")


# ---------------------------------------------------------------------------------------- fp32


def test_fp32_is_a_byte_copy(tmp_path: Path, classifier: Path) -> None:
    out = transform_precision(classifier, tmp_path / "out" / "model.onnx", precision=Precision.FP32)
    assert out.read_bytes() == classifier.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no temp files left


# ---------------------------------------------------------------------------------------- fp16


def test_sensitive_ops_and_block_list() -> None:
    for op in (
        "LayerNormalization",
        "Softmax",
        "InstanceNormalization",
        "GroupNormalization",
        "ReduceMean",
        "Pow",
        "Sqrt",
        "Exp",
        "Log",
    ):
        assert op in SENSITIVE_OPS
    assert "BatchNormalization" not in SENSITIVE_OPS
    block = fp16_block_list(["Gelu"])
    assert {"Softmax", "Gelu", "TopK"} <= set(block)  # ORT's defaults are kept
    assert block == sorted(block)


def test_fp16_keeps_io_fp32_and_sensitive_ops_in_fp32(
    tmp_path: Path,
    layernorm: Path,
    rows: np.ndarray,
) -> None:
    out = transform_precision(layernorm, tmp_path / "fp16.onnx", precision=Precision.FP16)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert _io_elem_types(model) == [TensorProto.FLOAT, TensorProto.FLOAT]
    types = _types(model)
    by_name = {n.name: n for n in model.graph.node}
    for name in ("ln0", "ln1", "softmax"):
        node = by_name[name]
        for tensor in (*node.input, *node.output):
            assert types[tensor] == TensorProto.FLOAT, (name, tensor)
    for name in ("mm1", "relu", "mm2"):
        node = by_name[name]
        for tensor in (*node.input, *node.output):
            assert types[tensor] == TensorProto.FLOAT16, (name, tensor)
    # Only the two real region boundaries remain: no fp32->fp16->fp32 round trips at the input,
    # between the two fp32 ops or before the output.
    producer = {o: n.name for n in model.graph.node for o in n.output}
    casts = [
        (producer[n.input[0]], n.attribute[0].i) for n in model.graph.node if n.op_type == "Cast"
    ]
    assert casts == [("ln0", TensorProto.FLOAT16), ("mm2", TensorProto.FLOAT)]
    assert by_name["softmax"].output[0] == "y"
    assert [n.name for n in model.graph.node if n.op_type != "Cast"] == [
        "ln0",
        "mm1",
        "relu",
        "mm2",
        "ln1",
        "softmax",
    ]


def test_fp16_output_close_to_fp32(
    tmp_path: Path, layernorm: Path, classifier: Path, rows: np.ndarray
) -> None:
    for source in (layernorm, classifier):
        out = transform_precision(
            source, tmp_path / f"{source.stem}16.onnx", precision=Precision.FP16
        )
        ref, cand = _run(source, {"x": rows}), _run(out, {"x": rows})
        assert cand.dtype == np.float32
        diff = float(np.max(np.abs(ref - cand)))
        assert 0 < diff < 5e-3, diff  # changed (really fp16) but close
        assert np.mean(ref.argmax(1) == cand.argmax(1)) >= 0.97


def test_fp16_classifier_weights_are_fp16(tmp_path: Path, classifier: Path) -> None:
    out = transform_precision(classifier, tmp_path / "c16.onnx", precision=Precision.FP16)
    inits = {t.name: t.data_type for t in onnx.load(str(out)).graph.initializer}
    assert inits == {
        "w1": TensorProto.FLOAT16,
        "b1": TensorProto.FLOAT16,
        "w2": TensorProto.FLOAT16,
    }


def test_fp16_keep_fp32_ops_extends_the_block_list(tmp_path: Path, layernorm: Path) -> None:
    out = transform_precision(
        layernorm, tmp_path / "k.onnx", precision=Precision.FP16, keep_fp32_ops=["MatMul", "Relu"]
    )
    model = onnx.load(str(out))
    types = _types(model)
    for node in model.graph.node:
        if node.op_type in {"MatMul", "Relu"}:
            assert all(types[t] == TensorProto.FLOAT for t in (*node.input, *node.output))
    # Everything is fp32 now, so no Cast is left at all.
    assert [n.op_type for n in model.graph.node if n.op_type == "Cast"] == []


def test_fp16_is_deterministic(tmp_path: Path, layernorm: Path) -> None:
    a = transform_precision(layernorm, tmp_path / "a.onnx", precision=Precision.FP16)
    b = transform_precision(layernorm, tmp_path / "b.onnx", precision=Precision.FP16)
    assert a.read_bytes() == b.read_bytes()


# ---------------------------------------------------------------------------------------- int8


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def test_int8_is_symmetric_per_channel_qdq(tmp_path: Path) -> None:
    source = make_image_model(tmp_path / "image.onnx", channels=1, size=8, classes=10)
    pixels = np.random.default_rng(0).uniform(0, 1, (128, 1, 8, 8)).astype(np.float32)
    out = transform_precision(
        source, tmp_path / "int8.onnx", precision=Precision.INT8, calibration={"pixels": pixels}
    )
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert _io_elem_types(model) == [TensorProto.FLOAT, TensorProto.FLOAT]
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 1 and ops.count("DequantizeLinear") >= 2
    # Every zero point is int8 and exactly 0 (symmetric, as TensorRT requires).
    zero_points = [
        n.input[2] for n in model.graph.node if n.op_type in {"QuantizeLinear", "DequantizeLinear"}
    ]
    assert zero_points
    for name in zero_points:
        zp = _initializer(model, name)
        assert zp.dtype == np.int8 and not zp.any(), name
    # The Gemm weight (transB=1, [classes, features]) is int8 with one scale per output class.
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    weight_dq = next(n for n in model.graph.node if n.output[0] == gemm.input[1])
    assert weight_dq.op_type == "DequantizeLinear"
    assert _initializer(model, weight_dq.input[0]).dtype == np.int8
    scales = _initializer(model, weight_dq.input[1])
    assert scales.shape == (10,) and len(np.unique(scales)) == 10
    assert helper.get_attribute_value(weight_dq.attribute[0]) == 0  # axis
    # Q/DQ on the inputs only: the logits leave the Gemm in fp32; the bias stays fp32.
    assert gemm.output[0] == "logits"
    assert _initializer(model, gemm.input[2]).dtype == np.float32
    ref, cand = _run(source, {"pixels": pixels}), _run(out, {"pixels": pixels})
    assert 0 < float(np.max(np.abs(ref - cand))) < 0.2
    assert np.mean(ref.argmax(1) == cand.argmax(1)) >= 0.9


def test_int8_matmul_weights_per_output_channel(
    tmp_path: Path, classifier: Path, rows: np.ndarray
) -> None:
    out = transform_precision(
        classifier, tmp_path / "c8.onnx", precision=Precision.INT8, calibration={"x": rows}
    )
    model = onnx.load(str(out))
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    weight_dq = next(n for n in model.graph.node if n.output[0] == matmul.input[1])
    assert _initializer(model, weight_dq.input[1]).shape == (4,)  # w2 is [32, 4]: axis 1
    assert helper.get_attribute_value(weight_dq.attribute[0]) == 1
    # Softmax is not quantized and still produces the graph output.
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert softmax.output[0] == "y"
    assert not any(
        n.op_type == "QuantizeLinear" and n.input[0] in softmax.input for n in model.graph.node
    )


def make_gemm_matmul_model(path: Path) -> Path:
    """x -> Gemm(wa, transB) -> Relu -> MatMul(wb) -> Add(bb) -> y: a real Gemm, and a MatMul+Add
    that ORT's pre-processing fuses into a second Gemm."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.4, (32, FEATURES)).astype(np.float32), "wa"),
        numpy_helper.from_array(rng.normal(0, 0.4, (32, 6)).astype(np.float32), "wb"),
        numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), "bb"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "wa"], ["h0"], transB=1, name="gemm"),
        helper.make_node("Relu", ["h0"], ["h1"], name="relu"),
        helper.make_node("MatMul", ["h1", "wb"], ["h2"], name="matmul"),
        helper.make_node("Add", ["h2", "bb"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "gemm_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _quantized_weights(model: onnx.ModelProto) -> set[str]:
    """Names of the weights that reach their consumer through an int8 DequantizeLinear."""
    int8 = {t.name for t in model.graph.initializer if t.data_type == TensorProto.INT8}
    return {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in int8
    }


def test_int8_keep_fp32_ops_excludes_op_types(tmp_path: Path, rows: np.ndarray) -> None:
    source = make_gemm_matmul_model(tmp_path / "gm.onnx")
    everything = onnx.load(
        str(
            transform_precision(
                source, tmp_path / "all.onnx", precision=Precision.INT8, calibration={"x": rows}
            )
        )
    )
    assert len(_quantized_weights(everything)) == 2
    kept = onnx.load(
        str(
            transform_precision(
                source,
                tmp_path / "kept.onnx",
                precision=Precision.INT8,
                calibration={"x": rows},
                keep_fp32_ops=["MatMul"],
            )
        )
    )
    # The MatMul (fused with its Add into a Gemm by pre-processing) reads its fp32 weight
    # directly; the original Gemm is still int8.
    consumers = {i: n for n in kept.graph.node for i in n.input}
    assert consumers["wb"].op_type in {"Gemm", "MatMul"}
    assert {t.name: t.data_type for t in kept.graph.initializer}["wb"] == TensorProto.FLOAT
    (weight,) = _quantized_weights(kept)
    assert consumers[weight].name == "gemm"


def test_int8_keep_fp32_ops_excluding_everything_fails(
    tmp_path: Path, classifier: Path, rows: np.ndarray
) -> None:
    # The classifier's MatMul+Add becomes a Gemm before quantization; keeping MatMul in fp32
    # must still cover it, which leaves nothing to quantize.
    with pytest.raises(PrecisionError, match="excludes every"):
        transform_precision(
            classifier,
            tmp_path / "x.onnx",
            precision=Precision.INT8,
            calibration={"x": rows},
            keep_fp32_ops=["MatMul"],
        )
    assert "MatMul" in INT8_OPS


def test_int8_is_deterministic(tmp_path: Path, classifier: Path, rows: np.ndarray) -> None:
    a = transform_precision(
        classifier, tmp_path / "a.onnx", precision=Precision.INT8, calibration={"x": rows}
    )
    b = transform_precision(
        classifier, tmp_path / "b.onnx", precision=Precision.INT8, calibration={"x": rows}
    )
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]


def test_int8_requires_calibration(tmp_path: Path, classifier: Path) -> None:
    with pytest.raises(PrecisionError, match=r"digits_int8: int8 needs calibration"):
        transform_precision(
            classifier, tmp_path / "x.onnx", precision=Precision.INT8, model_name="digits_int8"
        )
    assert not (tmp_path / "x.onnx").exists()


def test_int8_calibration_must_match_the_model(tmp_path: Path, classifier: Path) -> None:
    with pytest.raises(PrecisionError, match=r"calibration samples lack input\(s\) \['x'\]"):
        transform_precision(
            classifier,
            tmp_path / "x.onnx",
            precision=Precision.INT8,
            calibration={"pixels": np.zeros((4, FEATURES), np.float32)},
        )
    with pytest.raises(PrecisionError, match="float64, the model expects float32"):
        transform_precision(
            classifier,
            tmp_path / "x.onnx",
            precision=Precision.INT8,
            calibration={"x": np.zeros((4, FEATURES))},
        )


def test_int8_with_nothing_to_quantize_fails(tmp_path: Path) -> None:
    source = make_baked_batch_model(tmp_path / "reshape.onnx")
    with pytest.raises(PrecisionError, match="nothing to quantize"):
        transform_precision(
            source,
            tmp_path / "x.onnx",
            precision=Precision.INT8,
            calibration={"x": np.zeros((1, 8), np.float32)},
        )


# -------------------------------------------------------------------------------------- errors


def test_missing_or_corrupt_source(tmp_path: Path) -> None:
    with pytest.raises(PrecisionError, match="does not exist"):
        transform_precision(tmp_path / "absent.onnx", tmp_path / "x.onnx", precision=Precision.FP16)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01\x12garbage\xff\xff")
    with pytest.raises(PrecisionError, match=r"my_model: cannot read ONNX model"):
        transform_precision(
            corrupt, tmp_path / "x.onnx", precision=Precision.FP16, model_name="my_model"
        )


def test_destination_is_replaced_atomically(tmp_path: Path, classifier: Path) -> None:
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"old")
    transform_precision(classifier, dest, precision=Precision.FP16)
    assert onnx.load(str(dest)).graph.node  # a real model replaced the old bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def make_conv_bn_model(path: Path) -> Path:
    """pixels[b,1,8,8] -> Conv(6) -> BatchNorm -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(9)
    inits = {
        "cw": rng.normal(0, 0.5, (6, 1, 3, 3)), "cb": rng.normal(0, 0.1, 6),
        "bn_scale": rng.uniform(0.5, 1.5, 6), "bn_bias": rng.normal(0, 0.1, 6),
        "bn_mean": rng.normal(0, 0.1, 6), "bn_var": rng.uniform(0.5, 1.5, 6),
        "fw": rng.normal(0, 0.5, (10, 6)), "fb": np.zeros(10),
    }
    nodes = [
        helper.make_node("Conv", ["pixels", "cw", "cb"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                         ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "conv_bn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_conv_bn_model_in_both_precisions(tmp_path: Path) -> None:
    source = make_conv_bn_model(tmp_path / "cnn.onnx")
    pixels = np.random.default_rng(1).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    ref = _run(source, {"pixels": pixels})
    # fp16: BatchNormalization is not sensitive, so the whole body is one fp16 region.
    fp16 = transform_precision(source, tmp_path / "cnn16.onnx", precision=Precision.FP16)
    assert [n.op_type for n in onnx.load(str(fp16)).graph.node].count("Cast") == 2
    assert np.max(np.abs(_run(fp16, {"pixels": pixels}) - ref)) < 1e-2
    # int8: pre-processing folds BatchNormalization into the Conv before per-channel weights.
    int8 = transform_precision(source, tmp_path / "cnn8.onnx", precision=Precision.INT8,
                               calibration={"pixels": pixels})
    model = onnx.load(str(int8))
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight_dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    assert _initializer(model, weight_dq.input[1]).shape == (6,)
    assert helper.get_attribute_value(weight_dq.attribute[0]) == 0
    cand = _run(int8, {"pixels": pixels})
    assert np.mean(ref.argmax(1) == cand.argmax(1)) >= 0.9


# ---------------------------------------------------------------------------------- int8 recipe

SEQ, DIM = 6, 16


def make_attention_block(path: Path) -> Path:
    """A post-LN encoder block: x -> LayerNorm -> n; Q/K/V projections of n; softmax(Q K^T) V;
    output projection + bias; residual Add with n; LayerNorm -> y.

    `scores` (Q.K^T) and `context` (softmax.V) multiply two activations; `residual` sums the
    output projection (a quantized MatMul through its bias Add) with the skip input n, which
    the Q/K/V MatMuls also read.
    """
    rng = np.random.default_rng(11)

    def w(name: str) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.3, (DIM, DIM)).astype(np.float32), name)

    inits = [
        numpy_helper.from_array(np.ones(DIM, np.float32), "g"),
        numpy_helper.from_array(np.zeros(DIM, np.float32), "b"),
        w("wq"), w("wk"), w("wv"), w("wo"),
        numpy_helper.from_array(rng.normal(0, 0.1, DIM).astype(np.float32), "bo"),
        numpy_helper.from_array(np.array(DIM ** -0.5, np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], axis=-1, name="ln0"),
        helper.make_node("MatMul", ["n", "wq"], ["q"], name="query"),
        helper.make_node("MatMul", ["n", "wk"], ["k"], name="key"),
        helper.make_node("MatMul", ["n", "wv"], ["v"], name="value"),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1], name="kt"),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Mul", ["s", "scale"], ["s2"], name="scale"),
        helper.make_node("Softmax", ["s2"], ["p"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["p", "v"], ["ctx"], name="context"),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"], name="out_proj"),
        helper.make_node("Add", ["o", "bo"], ["ob"], name="out_bias"),
        helper.make_node("Add", ["ob", "n"], ["r"], name="residual"),
        helper.make_node("LayerNormalization", ["r", "g", "b"], ["y"], axis=-1, name="ln1"),
    ]
    graph = helper.make_graph(
        nodes, "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SEQ, DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SEQ, DIM])],
        initializer=inits,
    )
    return save_graph(graph, path)


def make_preactivation_block(path: Path) -> Path:
    """pixels -> Conv (stem) -> h; h -> BatchNorm -> Relu -> Conv -> c; residual Add(c, h).

    The skip input h feeds only the BatchNorm and the Add, so the quantizer gives it no Q/DQ.
    """
    rng = np.random.default_rng(12)
    inits = {
        "w0": rng.normal(0, 0.4, (4, 2, 3, 3)), "b0": rng.normal(0, 0.1, 4),
        "s": rng.uniform(0.5, 1.5, 4), "t": rng.normal(0, 0.1, 4),
        "m": rng.normal(0, 0.1, 4), "var": rng.uniform(0.5, 1.5, 4),
        "w1": rng.normal(0, 0.4, (4, 4, 3, 3)), "b1": rng.normal(0, 0.1, 4),
    }
    nodes = [
        helper.make_node("Conv", ["pixels", "w0", "b0"], ["h"], pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("BatchNormalization", ["h", "s", "t", "m", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["a"], name="relu"),
        helper.make_node("Conv", ["a", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Add", ["c", "h"], ["y"], name="residual"),
    ]
    graph = helper.make_graph(
        nodes, "preact",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 6, 6])],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    return save_graph(graph, path)


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _reads_dequantized(model: onnx.ModelProto, node: onnx.NodeProto) -> list[bool]:
    producers = _producers(model)
    return [i in producers and producers[i].op_type == "DequantizeLinear" for i in node.input]


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    return np.random.default_rng(13).normal(0, 1, (24, SEQ, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def attention_int8(tmp_path_factory: pytest.TempPathFactory,
                   tokens: np.ndarray) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("attention")
    source = make_attention_block(root / "block.onnx")
    out = transform_precision(source, root / "block8.onnx", precision=Precision.INT8,
                              calibration={"x": tokens})
    return source, out


def test_int8_leaves_activation_by_activation_matmuls_in_float(
    attention_int8: tuple[Path, Path], tokens: np.ndarray
) -> None:
    source, out = attention_int8
    model = onnx.load(str(out))
    by_name = {n.name: n for n in model.graph.node}
    for name in ("scores", "context"):  # Q.K^T and softmax.V
        assert _reads_dequantized(model, by_name[name]) == [False, False], name
    for name in ("query", "key", "value", "out_proj"):
        assert _reads_dequantized(model, by_name[name]) == [True, True], name
    ref, cand = _run(source, {"x": tokens}), _run(out, {"x": tokens})
    assert 0 < float(np.max(np.abs(ref - cand))) < 0.2


def test_int8_transformer_residual_reads_the_skip_in_float(
    attention_int8: tuple[Path, Path]
) -> None:
    # ORT's quantizer routes every consumer of n (the Q/K/V input) through its DQ, which
    # quantized the residual stream too; after a MatMul backbone the skip stays float.
    _, out = attention_int8
    model = onnx.load(str(out))
    residual = next(n for n in model.graph.node if n.name == "residual")
    producers = _producers(model)
    assert [producers[i].name for i in residual.input] == ["out_bias", "ln0"]


def test_int8_conv_residual_quantizes_the_skip_input(tmp_path: Path) -> None:
    source = make_preactivation_block(tmp_path / "preact.onnx")
    pixels = np.random.default_rng(14).uniform(-1, 1, (32, 2, 6, 6)).astype(np.float32)
    out = transform_precision(source, tmp_path / "preact8.onnx", precision=Precision.INT8,
                              calibration={"pixels": pixels})
    model = onnx.load(str(out))
    producers = _producers(model)
    residual = next(n for n in model.graph.node if n.name == "residual")
    conv_side, skip_side = (producers[i] for i in residual.input)
    assert conv_side.name == "conv"  # the local branch: fused into the conv's epilogue
    assert skip_side.op_type == "DequantizeLinear"
    quantize = producers[skip_side.input[0]]
    assert quantize.op_type == "QuantizeLinear" and producers[quantize.input[0]].name == "stem"
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    h = _run_tensor(source, "h", {"pixels": pixels})
    assert float(inits[quantize.input[1]]) == pytest.approx(float(np.abs(h).max()) / 127,
                                                           rel=1e-6)
    assert not inits[quantize.input[2]].any() and inits[quantize.input[2]].dtype == np.int8
    ref, cand = _run(source, {"pixels": pixels}), _run(out, {"pixels": pixels})
    assert 0 < float(np.max(np.abs(ref - cand))) < 0.1


def _run_tensor(path: Path, name: str, feed: dict[str, np.ndarray]) -> np.ndarray:
    model = onnx.load(str(path))
    model.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([name], feed)[0])


def test_outlier_smoothing_shrinks_only_outlier_channels() -> None:
    absmax = np.ones(200, np.float32)
    absmax[7], absmax[42] = 40.0, 10.0
    weights = [np.full((200, 3), 0.5, np.float32)]
    s = outlier_smoothing(absmax, weights, alpha=0.5)
    assert s[7] > s[42] > 1.0
    assert np.all(np.delete(s, [7, 42]) == 1.0)  # never amplifies a quiet channel
    inverse = np.float32(1) / s
    assert np.all(inverse.astype(np.float16).astype(np.float32) == inverse)  # exact in fp16


def test_int8_smooths_an_outlier_channel_into_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(15)
    weight = rng.normal(0, 0.3, (DIM, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "outlier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        initializer=[numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    source = tmp_path / "outlier.onnx"
    onnx.save(model, str(source))
    x = rng.normal(0, 1, (256, DIM)).astype(np.float32)
    x[:, 3] *= 60.0  # one outlier channel
    smoothed = onnx.load(str(transform_precision(
        source, tmp_path / "s8.onnx", precision=Precision.INT8, calibration={"x": x})))
    mul = next(n for n in smoothed.graph.node if n.op_type == "Mul")
    inits = {t.name: numpy_helper.to_array(t) for t in smoothed.graph.initializer}
    inverse = inits[mul.input[1]]
    assert mul.input[0] == "x" and inverse[3] < 1.0 and np.all(np.delete(inverse, 3) == 1.0)
    assert _producers(smoothed)[next(n for n in smoothed.graph.node
                                     if n.op_type == "QuantizeLinear").input[0]] is mul
    monkeypatch.setattr(smoothing_module, "SMOOTH_ALPHAS", (None,))
    plain = transform_precision(source, tmp_path / "p8.onnx", precision=Precision.INT8,
                                calibration={"x": x})
    assert not any(n.op_type == "Mul" for n in onnx.load(str(plain)).graph.node)
    ref = _run(source, {"x": x})
    err_smoothed = float(np.mean((_run(tmp_path / "s8.onnx", {"x": x}) - ref) ** 2))
    err_plain = float(np.mean((_run(plain, {"x": x}) - ref) ** 2))
    assert err_smoothed < err_plain / 4


def test_int8_keeps_low_sqnr_matmuls_out(tmp_path: Path, classifier: Path, rows: np.ndarray,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smoothing_module, "MIN_INT8_SQNR_DB", 1000.0)  # nothing meets it
    with pytest.raises(PrecisionError, match=r"leaves nothing quantized.*SQNR"):
        transform_precision(classifier, tmp_path / "x.onnx", precision=Precision.INT8,
                            calibration={"x": rows})


def test_int8_recipe_is_deterministic(tmp_path: Path, tokens: np.ndarray) -> None:
    source = make_attention_block(tmp_path / "block.onnx")
    a = transform_precision(source, tmp_path / "a.onnx", precision=Precision.INT8,
                            calibration={"x": tokens})
    b = transform_precision(source, tmp_path / "b.onnx", precision=Precision.INT8,
                            calibration={"x": tokens})
    assert a.read_bytes() == b.read_bytes()


def test_transform_fingerprint_covers_the_recipe() -> None:
    fingerprint = transform_fingerprint()
    assert len(fingerprint) == 16 and fingerprint == transform_fingerprint()
