"""tritonkit.precision.accuracy: the map50_delta and mean_pooled_cosine metrics on tiny ONNX
models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonkit.precision.accuracy import compare, evaluate_accuracy
from tritonkit.spec import AccuracyBudget, AccuracyMetric, Precision


def scale_model(path: Path, *, factor: float, shape: list[object],
                mask: bool = False) -> Path:
    """y = x * factor (plus an unused attention_mask input when `mask`)."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    if mask:
        inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                                    shape[:2]))
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "scale", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=[helper.make_tensor("k", TensorProto.FLOAT, [], [factor])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def yolo_samples(rows: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perfect YOLO predictions for one 10x10 box per image, plus the ground truth."""
    x = np.zeros((rows, 6, 8), dtype=np.float32)
    x[:, :4, 0] = (20, 20, 10, 10)
    x[:, 4, 0] = 0.9
    boxes = np.zeros((rows, 2, 4), dtype=np.float32)
    boxes[:, 0] = (15, 15, 25, 25)
    classes = np.full((rows, 2), -1, dtype=np.int64)
    classes[:, 0] = 0
    return x, boxes, classes


def test_map50_delta_is_zero_for_the_same_model_and_full_when_scores_vanish(
        tmp_path: Path) -> None:
    x, boxes, classes = yolo_samples()
    ref = scale_model(tmp_path / "ref.onnx", factor=1.0, shape=["n", 6, 8])
    dead = scale_model(tmp_path / "dead.onnx", factor=0.1, shape=["n", 6, 8])
    holdout = tmp_path / "holdout.npz"
    np.savez(holdout, x=x, gt_boxes=boxes, gt_classes=classes)
    budget = AccuracyBudget(metric=AccuracyMetric.MAP50_DELTA, threshold=0.01, holdout=holdout)
    same = evaluate_accuracy(ref, ref, model_name="m", precision=Precision.FP16, budget=budget)
    assert same.measured == pytest.approx(0.0) and same.passed
    # x0.1 shrinks the boxes and the scores (0.09 < 0.25): nothing is detected any more
    lost = evaluate_accuracy(ref, dead, model_name="m", precision=Precision.INT8, budget=budget)
    assert lost.measured == pytest.approx(1.0) and not lost.passed
    assert "map50_delta 1.0000" in lost.describe() and "budget <= 0.0100" in lost.describe()


def test_map50_delta_needs_ground_truth(tmp_path: Path) -> None:
    x, _, _ = yolo_samples()
    ref = scale_model(tmp_path / "ref.onnx", factor=1.0, shape=["n", 6, 8])
    holdout = tmp_path / "holdout.npz"
    np.savez(holdout, x=x)
    budget = AccuracyBudget(metric=AccuracyMetric.MAP50_DELTA, threshold=0.01, holdout=holdout)
    with pytest.raises(Exception, match="gt_boxes"):
        evaluate_accuracy(ref, ref, model_name="m", precision=Precision.FP16, budget=budget)


def test_mean_pooled_cosine_ignores_padding_positions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=np.int64)
    ref = scale_model(tmp_path / "ref.onnx", factor=1.0, shape=["n", "l", 4], mask=True)
    doubled = scale_model(tmp_path / "double.onnx", factor=2.0, shape=["n", "l", 4], mask=True)
    negated = scale_model(tmp_path / "neg.onnx", factor=-1.0, shape=["n", "l", 4], mask=True)
    samples = {"x": hidden, "attention_mask": mask}
    assert compare(ref, doubled, samples, AccuracyMetric.MEAN_POOLED_COSINE).measured == \
        pytest.approx(1.0)
    assert compare(ref, negated, samples, AccuracyMetric.MEAN_POOLED_COSINE).measured == \
        pytest.approx(-1.0)


# ------------------------------------------------- host-independent evaluation (Q/DQ and fp16)
# These use only compare(): they hold the gate's figures to numpy references that do not depend
# on the CPU, and were written to fail on the evaluation the gate used before (ONNX Runtime's
# default optimizations, which fuse Q/DQ into host-dependent u8s8 kernels and drop fp16 rounding).

QDQ_FEATURES, QDQ_OUTPUTS = 32, 6


def qdq_matmul_models(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """y = x @ W in fp32, and its int8 Q/DQ form (x scale 0.1, per-channel weight scales).

    The int8 values sit at the edge of the range (activations up to 127, weights +-127 of one
    sign per column): u8 x s8 pair sums that saturate int16 in AVX2 / AVX-512BW kernels without
    VNNI, exactly what the gate must not measure. Returns (reference, candidate, x_scale, w_q).
    """
    rng = np.random.default_rng(3)
    signs = np.where(rng.random(QDQ_OUTPUTS) < 0.5, -1, 1)
    w_q = (rng.integers(100, 128, (QDQ_FEATURES, QDQ_OUTPUTS)) * signs).astype(np.int8)
    w_scale = rng.uniform(0.01, 0.02, QDQ_OUTPUTS).astype(np.float32)
    weight = w_q.astype(np.float32) * w_scale
    x_scale = np.float32(0.1)

    def save(graph: onnx.GraphProto, path: Path) -> Path:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(path))
        return path

    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", QDQ_FEATURES])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", QDQ_OUTPUTS])])
    reference = save(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "fp32", *io,
        initializer=[numpy_helper.from_array(weight, "w")]), tmp_path / "fp32.onnx")
    candidate = save(helper.make_graph([
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ], "qdq", *io, initializer=[
        numpy_helper.from_array(np.array(x_scale), "xs"),
        numpy_helper.from_array(np.array(0, np.int8), "xz"),
        numpy_helper.from_array(w_q, "wq"),
        numpy_helper.from_array(w_scale, "ws"),
        numpy_helper.from_array(np.zeros(QDQ_OUTPUTS, np.int8), "wz"),
    ]), tmp_path / "int8.onnx")
    return reference, candidate, np.array([x_scale]), weight


def test_int8_figure_is_the_fp32_fake_quantization_figure(tmp_path: Path) -> None:
    reference, candidate, x_scale, weight = qdq_matmul_models(tmp_path)
    rng = np.random.default_rng(4)
    # mostly positive activations near the top of the int8 range, some beyond it (saturate)
    x = np.clip(rng.normal(10.0, 3.0, (96, QDQ_FEATURES)), -15, 15).astype(np.float32)
    x_q = np.clip(np.round(x / x_scale[0]), -127, 127) * x_scale[0]
    w_q = weight.astype(np.float64)
    ref = x.astype(np.float64) @ w_q
    fake = x_q.astype(np.float64) @ w_q  # what the plan computes, in exact arithmetic
    cos = np.sum(ref * fake, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(fake, axis=1))
    samples = {"x": x}
    measured = compare(reference, candidate, samples, AccuracyMetric.COSINE).measured
    assert measured == pytest.approx(float(cos.min()), abs=1e-6)
    worst = compare(reference, candidate, samples, AccuracyMetric.MAX_ABS_DIFF).measured
    assert worst == pytest.approx(float(np.abs(ref - fake).max()), rel=1e-4)


def fp16_chain(path: Path, *, fp16: bool) -> Path:
    """y = (x * 300) / 300 through fp16 tensors (fp16=True) or in fp32 (the reference)."""
    kind, dtype = (TensorProto.FLOAT16, np.float16) if fp16 else (TensorProto.FLOAT, np.float32)
    nodes = [helper.make_node("Mul", ["h", "up"], ["big"]),
             helper.make_node("Mul", ["big", "down"], ["back"])]
    if fp16:
        nodes = [helper.make_node("Cast", ["x"], ["h"], to=kind), *nodes,
                 helper.make_node("Cast", ["back"], ["y"], to=TensorProto.FLOAT)]
    else:
        nodes = [helper.make_node("Identity", ["x"], ["h"]), *nodes,
                 helper.make_node("Identity", ["back"], ["y"])]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[numpy_helper.from_array(np.array([300.0], dtype), "up"),
                     numpy_helper.from_array(np.array([1 / 300], dtype), "down")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_fp16_figure_rounds_every_fp16_tensor(tmp_path: Path) -> None:
    """fp16 storage overflows at 65504: 300 * 300 is inf in fp16, and the gate must see it.

    ONNX Runtime on x86 computes these fp16 Muls in fp32 and drops the rounding in between, so
    it answered 300.06 (finite, cosine 1.0): an overflow TensorRT would hit went unseen.
    """
    reference = fp16_chain(tmp_path / "fp32.onnx", fp16=False)
    candidate = fp16_chain(tmp_path / "fp16.onnx", fp16=True)
    rng = np.random.default_rng(5)
    small = rng.uniform(1, 100, (6, 4)).astype(np.float32)
    big = np.full((2, 4), 300.0, np.float32)  # 90000 > 65504 in the middle
    x = np.concatenate([small, big])
    result = compare(reference, candidate, {"x": x}, AccuracyMetric.MAX_ABS_DIFF)
    assert result.nonfinite_rows == 2 and result.measured == float("inf")
    # the finite rows carry exactly the fp16 rounding of each stored tensor
    h = small.astype(np.float16)
    expected = ((h * np.float16(300)).astype(np.float16) * np.float16(1 / 300)).astype(np.float16)
    finite = compare(reference, candidate, {"x": small}, AccuracyMetric.MAX_ABS_DIFF)
    assert finite.measured == pytest.approx(
        float(np.abs(expected.astype(np.float64) - small).max()), rel=1e-6)
