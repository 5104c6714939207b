"""build_scripts.accuracy: the map50_delta and mean_pooled_cosine metrics on tiny ONNX models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from build_scripts.accuracy import compare, evaluate_accuracy
from build_scripts.spec import AccuracyBudget, AccuracyMetric, Precision


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
