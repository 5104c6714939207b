from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_factories import make_classifier, make_image_model
from tritonkit.errors import AccuracyGateError, PrecisionError
from tritonkit.precision import accuracy
from tritonkit.precision.accuracy import (
    GATE_OPTIMIZATION_LEVEL,
    AccuracyReport,
    budget_met,
    check_accuracy,
    compare,
    emulate_fp16,
    evaluate_accuracy,
    evaluation_mode,
    gate_session_options,
    host_isa,
    measure,
)
from tritonkit.precision.transforms import transform_precision
from tritonkit.spec import AccuracyBudget, AccuracyMetric, Precision

FEATURES = 16
ROWS = 150  # more than two batches of 64, last one short


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accuracy")


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(11).normal(0, 1.5, (ROWS, FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def holdout(workdir: Path, rows: np.ndarray) -> Path:
    path = workdir / "holdout.npz"
    np.savez(path, x=rows, labels=np.zeros(ROWS, np.int64))
    return path


@pytest.fixture(scope="module")
def reference(workdir: Path) -> Path:
    return make_classifier(
        workdir / "reference.onnx", features=FEATURES, classes=4, seed=0, softmax=False
    )


@pytest.fixture(scope="module")
def int8(workdir: Path, reference: Path, rows: np.ndarray) -> Path:
    return transform_precision(
        reference, workdir / "int8.onnx", precision=Precision.INT8, calibration={"x": rows[:64]}
    )


def _outputs(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0], dtype=np.float64)


def test_identical_models_are_perfect(reference: Path, rows: np.ndarray) -> None:
    samples = {"x": rows}
    assert measure(reference, reference, samples, AccuracyMetric.TOP1_AGREEMENT) == 1.0
    assert measure(reference, reference, samples, AccuracyMetric.COSINE) == pytest.approx(1.0)
    assert measure(reference, reference, samples, AccuracyMetric.MAX_ABS_DIFF) == 0.0


def test_metrics_match_a_direct_numpy_computation(
    workdir: Path, reference: Path, rows: np.ndarray
) -> None:
    other = make_classifier(
        workdir / "other.onnx", features=FEATURES, classes=4, seed=1, softmax=False
    )
    ref, cand = _outputs(reference, rows), _outputs(other, rows)
    expected_top1 = float(np.mean(ref.argmax(1) == cand.argmax(1)))
    cos = np.sum(ref * cand, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1))
    samples = {"x": rows}
    top1 = measure(reference, other, samples, AccuracyMetric.TOP1_AGREEMENT)
    assert top1 == pytest.approx(expected_top1)
    assert 0.0 < top1 < 0.9  # a different model really disagrees
    assert measure(reference, other, samples, AccuracyMetric.COSINE) == pytest.approx(
        float(cos.min()), abs=1e-9
    )
    assert measure(reference, other, samples, AccuracyMetric.MAX_ABS_DIFF) == pytest.approx(
        float(np.abs(ref - cand).max()), rel=1e-9
    )


def test_compare_reports_rows_and_first_output(
    reference: Path, int8: Path, rows: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    # On AMD EPYC (AVX2, no VNNI) this measured 0.946 while ONNX Runtime fused the Q/DQ into its
    # saturating u8s8 kernels; the fake-quantization figure is the same on every host.
    result = compare(reference, int8, {"x": rows}, AccuracyMetric.COSINE)
    assert result.samples == ROWS
    assert result.output_name == "y"
    assert result.nonfinite_rows == 0
    assert result.evaluation == (
        "ONNX Runtime CPU, Q/DQ as fp32 fake-quantization (host-independent)")
    with capsys.disabled():  # shown in `make test` output: the figure next to the host's ISA
        print(f"\n[int8 gate] cosine {result.measured:.6f} ({result.evaluation}) "
              f"on {host_isa()}")
    assert 0.99 < result.measured < 1.0


def test_gate_sessions_never_fuse_qdq() -> None:
    options = gate_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert GATE_OPTIMIZATION_LEVEL == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.get_session_config_entry("session.disable_quant_qdq") == "1"


def test_compare_runs_both_models_with_the_gate_options(
    monkeypatch: pytest.MonkeyPatch, reference: Path, int8: Path, rows: np.ndarray
) -> None:
    seen: list[ort.SessionOptions | None] = []
    real = ort.InferenceSession

    def spy(model: object, options: ort.SessionOptions | None = None,
            **kwargs: object) -> ort.InferenceSession:
        seen.append(options)
        return real(model, options, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(accuracy.ort, "InferenceSession", spy)
    compare(reference, int8, {"x": rows[:8]}, AccuracyMetric.COSINE)
    assert len(seen) == 2
    for options in seen:
        assert options is not None
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        assert options.get_session_config_entry("session.disable_quant_qdq") == "1"


def test_evaluation_mode_names_what_the_candidate_contains(
    workdir: Path, reference: Path, int8: Path
) -> None:
    fp16 = transform_precision(reference, workdir / "mode16.onnx", precision=Precision.FP16)
    assert evaluation_mode(onnx.load(str(reference))) == (
        "ONNX Runtime CPU, fp32 (host-independent)")
    assert evaluation_mode(onnx.load(str(fp16))) == (
        "ONNX Runtime CPU, fp16 tensors rounded to fp16, computed in fp32 (host-independent)")
    assert evaluation_mode(onnx.load(str(int8))) == (
        "ONNX Runtime CPU, Q/DQ as fp32 fake-quantization (host-independent)")


def test_emulate_fp16_is_fp32_with_rounding(workdir: Path, reference: Path,
                                            rows: np.ndarray) -> None:
    fp16 = onnx.load(str(transform_precision(reference, workdir / "emul16.onnx",
                                             precision=Precision.FP16)))
    twin = emulate_fp16(fp16)
    onnx.checker.check_model(twin)
    assert {t.data_type for t in twin.graph.initializer} == {TensorProto.FLOAT}
    consumers = {i: n for n in twin.graph.node for i in n.input}
    # fp16 is left only inside rounding pairs: Cast(to=fp16) read by one Cast(to=fp32)
    for node in twin.graph.node:
        if node.op_type == "Cast" and node.attribute[0].i == TensorProto.FLOAT16:
            widen = consumers[node.output[0]]
            assert widen.op_type == "Cast" and widen.attribute[0].i == TensorProto.FLOAT
    # every compute node's output is rounded right after it
    for node in twin.graph.node:
        if node.op_type in ("MatMul", "Add", "Relu", "Gemm"):
            rounding = consumers[node.output[0]]
            assert rounding.op_type == "Cast", node.name
            assert rounding.attribute[0].i == TensorProto.FLOAT16
    session = ort.InferenceSession(twin.SerializeToString(), gate_session_options(),
                                   providers=["CPUExecutionProvider"])
    diff = float(np.max(np.abs(session.run(None, {"x": rows})[0] - _outputs(reference, rows))))
    assert 0 < diff < 0.05
    fp32 = onnx.load(str(reference))
    assert emulate_fp16(fp32) is fp32  # nothing to emulate


def test_host_isa_reads_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 avx2 fma avx512f\n")
    isa = host_isa(cpuinfo)
    assert " avx2 " in f"{isa} " and "(no avx512f," in isa and "avx512_vnni" in isa
    assert host_isa(tmp_path / "absent").endswith("(flags unknown)")
    assert host_isa().split()[0]  # the real host: machine name first


def test_gate_passes_with_a_sane_budget(reference: Path, int8: Path, holdout: Path) -> None:
    budget = AccuracyBudget(metric=AccuracyMetric.TOP1_AGREEMENT, threshold=0.9, holdout=holdout)
    report = check_accuracy(
        reference, int8, model_name="clf_int8", precision=Precision.INT8, budget=budget
    )
    assert report.passed
    assert report.samples == ROWS
    assert 0.9 <= report.measured <= 1.0
    assert report.margin == pytest.approx(report.measured - 0.9)
    text = report.describe()
    assert text.startswith(
        f"clf_int8 (int8) [output y]: top1_agreement {report.measured:.4f} "
        f"over {ROWS} samples, budget >= 0.9000 (margin +"
    )
    assert text.endswith(
        " PASS [ONNX Runtime CPU, Q/DQ as fp32 fake-quantization (host-independent); "
        f"host {host_isa()}]"
    )
    assert report.evaluation == (
        "ONNX Runtime CPU, Q/DQ as fp32 fake-quantization (host-independent)")
    assert report.to_dict()["evaluation"] == report.evaluation
    assert report.to_dict()["host_isa"] == host_isa()


def test_gate_fails_a_tiny_max_abs_diff_budget(reference: Path, int8: Path, holdout: Path) -> None:
    budget = AccuracyBudget(metric=AccuracyMetric.MAX_ABS_DIFF, threshold=1e-6, holdout=holdout)
    report = evaluate_accuracy(
        reference, int8, model_name="clf_int8", precision=Precision.INT8, budget=budget
    )
    assert not report.passed
    assert report.measured > 1e-3  # int8 really differs
    assert report.margin == pytest.approx(1e-6 - report.measured)
    with pytest.raises(AccuracyGateError) as info:
        check_accuracy(
            reference, int8, model_name="clf_int8", precision=Precision.INT8, budget=budget
        )
    message = str(info.value)
    assert isinstance(info.value, PrecisionError)
    assert f"max_abs_diff {report.measured:.4g}" in message
    assert f"budget <= 1e-06 (margin {report.margin:+.4g}) FAIL" in message
    assert re.search(r"margin -\d", message)


def test_gate_fails_a_damaged_candidate(workdir: Path, reference: Path, holdout: Path) -> None:
    damaged = workdir / "damaged.onnx"
    model = onnx.load(str(reference))
    w2 = next(t for t in model.graph.initializer if t.name == "w2")
    w2.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(w2), "w2"))  # flips the logits
    onnx.save(model, str(damaged))
    budget = AccuracyBudget(metric=AccuracyMetric.TOP1_AGREEMENT, threshold=0.98, holdout=holdout)
    with pytest.raises(
        AccuracyGateError,
        match=r"top1_agreement 0\.\d{4} over 150 samples, "
        r"budget >= 0\.9800 \(margin -0\.\d{4}\) FAIL",
    ):
        check_accuracy(
            reference, damaged, model_name="damaged", precision=Precision.FP16, budget=budget
        )


def test_lower_is_better_budget_passes_when_under(
    reference: Path, int8: Path, holdout: Path
) -> None:
    budget = AccuracyBudget(metric=AccuracyMetric.MAX_ABS_DIFF, threshold=10.0, holdout=holdout)
    report = check_accuracy(
        reference, int8, model_name="m", precision=Precision.INT8, budget=budget
    )
    assert report.passed
    assert 0 < report.measured < 10.0
    assert report.margin == pytest.approx(10.0 - report.measured)
    assert "budget <= 10 (margin +" in report.describe()


def test_fp16_passes_cosine_gate(workdir: Path, holdout: Path) -> None:
    source = make_classifier(workdir / "softmax.onnx", features=FEATURES)
    fp16 = transform_precision(source, workdir / "softmax16.onnx", precision=Precision.FP16)
    budget = AccuracyBudget(metric=AccuracyMetric.COSINE, threshold=0.999, holdout=holdout)
    report = check_accuracy(
        source, fp16, model_name="m_fp16", precision=Precision.FP16, budget=budget
    )
    assert 0.999 <= report.measured < 1.0


def test_describe_format_exactly() -> None:
    report = AccuracyReport(
        model_name="digits_classifier_int8",
        precision=Precision.INT8,
        metric=AccuracyMetric.TOP1_AGREEMENT,
        threshold=0.98,
        measured=0.995,
        samples=400,
        passed=True,
    )
    assert report.describe() == (
        "digits_classifier_int8 (int8): top1_agreement 0.9950 over 400 "
        "samples, budget >= 0.9800 (margin +0.0150) PASS"
    )
    assert report.to_dict()["margin"] == pytest.approx(0.015)
    labelled = AccuracyReport(
        model_name="m_int8", precision=Precision.INT8, metric=AccuracyMetric.COSINE,
        threshold=0.99, measured=0.9983, samples=150, passed=True,
        evaluation="ONNX Runtime CPU, Q/DQ as fp32 fake-quantization (host-independent)",
        host_isa="x86_64 avx2 (no avx512f)",
    )
    assert labelled.describe() == (
        "m_int8 (int8): cosine 0.998300 over 150 samples, budget >= 0.990000 (margin "
        "+0.008300) PASS [ONNX Runtime CPU, Q/DQ as fp32 fake-quantization "
        "(host-independent); host x86_64 avx2 (no avx512f)]"
    )


def _scale_model(path: Path, factor: np.ndarray) -> Path:
    """y = x * factor (per column): factor inf makes a non-finite candidate."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "f"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[numpy_helper.from_array(factor.astype(np.float32), "f")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_non_finite_candidate_counts_as_worst(tmp_path: Path) -> None:
    reference = _scale_model(tmp_path / "ref.onnx", np.ones(4))
    broken = _scale_model(tmp_path / "inf.onnx", np.array([np.inf, 1, 1, 1]))
    x = np.abs(np.random.default_rng(0).normal(size=(10, 4))).astype(np.float32) + 0.1
    x[:, 0] = 5.0  # reference argmax is column 0, and so is the (inf) candidate's
    samples = {"x": x}
    top1 = compare(reference, broken, samples, AccuracyMetric.TOP1_AGREEMENT)
    assert top1.measured == 0.0 and top1.nonfinite_rows == 10
    assert measure(reference, broken, samples, AccuracyMetric.COSINE) == -1.0
    assert measure(reference, broken, samples, AccuracyMetric.MAX_ABS_DIFF) == math.inf
    assert not budget_met(AccuracyMetric.COSINE, math.nan, 0.5)
    assert not budget_met(AccuracyMetric.MAX_ABS_DIFF, math.inf, 1.0)


def test_fixed_batch_model_runs_in_its_batch(tmp_path: Path, rows: np.ndarray) -> None:
    fixed = make_classifier(tmp_path / "fixed.onnx", features=FEATURES, batch=5)
    assert measure(fixed, fixed, {"x": rows[:15]}, AccuracyMetric.TOP1_AGREEMENT) == 1.0


def test_errors_name_the_problem(tmp_path: Path, reference: Path, rows: np.ndarray) -> None:
    with pytest.raises(PrecisionError, match="has no output 'nope'"):
        measure(reference, reference, {"x": rows}, AccuracyMetric.COSINE, output_name="nope")
    with pytest.raises(PrecisionError, match=r"holdout samples lack input\(s\) \['x'\]"):
        measure(reference, reference, {"z": rows}, AccuracyMetric.COSINE)
    image = make_image_model(tmp_path / "image.onnx")
    with pytest.raises(PrecisionError, match="image.onnx"):
        measure(reference, image, {"x": rows}, AccuracyMetric.COSINE)
    bad_holdout = tmp_path / "bad.npz"
    np.savez(bad_holdout, pixels=rows)
    budget = AccuracyBudget(metric=AccuracyMetric.COSINE, threshold=0.9, holdout=bad_holdout)
    with pytest.raises(PrecisionError, match=r"holdout samples .*bad\.npz: missing key"):
        check_accuracy(
            reference, reference, model_name="m", precision=Precision.FP32, budget=budget
        )
