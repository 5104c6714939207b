"""tritonkit.precision.accuracy: the psnr_delta metric on tiny ONNX image-to-image models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tritonkit.errors import PrecisionError
from tritonkit.precision.accuracy import compare, evaluate_accuracy
from tritonkit.processing import super_resolution as sr
from tritonkit.spec import AccuracyBudget, AccuracyMetric, Precision

SHAPE: list[object] = ["n", 1, 12, 12]


def add_model(path: Path, *, offset: float) -> Path:
    """y = x + offset on [n, 1, 12, 12]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["low_res", "k"], ["high_res"])], "add",
        [helper.make_tensor_value_info("low_res", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("high_res", TensorProto.FLOAT, SHAPE)],
        initializer=[helper.make_tensor("k", TensorProto.FLOAT, [], [offset])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def holdout(tmp_path: Path, *, target: np.ndarray | None = None) -> tuple[Path, np.ndarray]:
    x = np.full((3, 1, 12, 12), 0.5, dtype=np.float32)
    path = tmp_path / "holdout.npz"
    arrays = {"low_res": x}
    if target is not None:
        arrays["target"] = target
    np.savez(path, **arrays)
    return path, x


def budget(path: Path) -> AccuracyBudget:
    return AccuracyBudget(metric=AccuracyMetric.PSNR_DELTA, threshold=0.05, holdout=path)


def test_psnr_delta_is_the_mean_psnr_loss_against_the_target(tmp_path: Path) -> None:
    target = np.full((3, 1, 12, 12), 0.5, dtype=np.float32)
    target[0, 0, 5, 5] = 0.6  # fp32 output (0.5 + 0.01) is off by 0.09 at one pixel
    path, _ = holdout(tmp_path, target=target)
    ref = add_model(tmp_path / "ref.onnx", offset=0.01)
    worse = add_model(tmp_path / "worse.onnx", offset=0.05)
    better = add_model(tmp_path / "better.onnx", offset=0.0)

    def expected(offset: float) -> float:
        out = np.full_like(target, 0.5 + offset, dtype=np.float64)
        return float(np.mean(sr.psnr_rows(out, target.astype(np.float64), crop=2)))

    same = evaluate_accuracy(ref, ref, model_name="m", precision=Precision.FP16,
                             budget=budget(path))
    assert same.measured == pytest.approx(0.0) and same.passed
    lost = evaluate_accuracy(ref, worse, model_name="m", precision=Precision.FP16,
                             budget=budget(path))
    assert lost.measured == pytest.approx(expected(0.01) - expected(0.05), abs=1e-4)
    assert lost.measured > 10.0 and not lost.passed  # 0.01 vs 0.05 off: ~14 dB worse
    assert "psnr_delta" in lost.describe() and "budget <= 0.0500" in lost.describe()
    gained = evaluate_accuracy(ref, better, model_name="m", precision=Precision.FP16,
                               budget=budget(path))
    assert gained.measured < 0 and gained.passed  # closer to the target than fp32


def test_psnr_delta_clips_outputs_and_ignores_the_border(tmp_path: Path) -> None:
    target = np.ones((3, 1, 12, 12), dtype=np.float32)
    target[..., :2, :] = 0.0  # inside the 2 px border crop: never scored
    _, x = holdout(tmp_path, target=target)
    ref = add_model(tmp_path / "ref.onnx", offset=0.5)  # exactly 1.0: PSNR capped
    over = add_model(tmp_path / "over.onnx", offset=3.0)  # 3.5, clipped to 1.0
    result = compare(ref, over, {"low_res": x}, AccuracyMetric.PSNR_DELTA,
                     truth={"target": target})
    assert result.measured == pytest.approx(0.0)


def test_psnr_delta_non_finite_candidate_is_the_worst_case(tmp_path: Path) -> None:
    target = np.full((3, 1, 12, 12), 0.5, dtype=np.float32)
    path, _ = holdout(tmp_path, target=target)
    ref = add_model(tmp_path / "ref.onnx", offset=0.0)
    broken = add_model(tmp_path / "broken.onnx", offset=math.inf)
    report = evaluate_accuracy(ref, broken, model_name="m", precision=Precision.FP16,
                               budget=budget(path))
    assert report.measured == math.inf and report.nonfinite_rows == 3 and not report.passed


def test_psnr_delta_needs_the_target(tmp_path: Path) -> None:
    path, _ = holdout(tmp_path)
    ref = add_model(tmp_path / "ref.onnx", offset=0.0)
    with pytest.raises(PrecisionError, match=r"'target'.*holdout\.npz"):
        evaluate_accuracy(ref, ref, model_name="m", precision=Precision.FP16, budget=budget(path))


def test_psnr_delta_target_shape_must_match_the_output(tmp_path: Path) -> None:
    path, _ = holdout(tmp_path, target=np.zeros((3, 1, 24, 24), dtype=np.float32))
    ref = add_model(tmp_path / "ref.onnx", offset=0.0)
    with pytest.raises(PrecisionError, match=r"holdout\.npz.*'target' has shape \[3, 1, 24, 24\]"
                                             r".*output has shape \[3, 1, 12, 12\]"):
        evaluate_accuracy(ref, ref, model_name="m", precision=Precision.FP16, budget=budget(path))
