"""Real TensorRT builds: tiny ONNX models become plans that deserialize with their profiles and
compute what ONNX Runtime computes (Polygraphy's comparator), one plan per precision, one
with a dynamic sequence axis besides batch, and one with dynamic height and width (the
super-resolution model's profile).

Runs only where TensorRT and an NVIDIA GPU are present (the NGC TensorRT container); skipped
elsewhere with the reason. Nothing here is faked.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_factories import (
    SEQUENCE_PIPELINE_SPEC,
    UPSCALER_SPEC,
    make_classifier,
    make_image_model,
    make_sequence_encoder,
    make_upscaler,
)
from tritonkit.build.onnx_inspect import inspect_onnx
from tritonkit.errors import EngineBuildError
from tritonkit.precision.transforms import transform_precision
from tritonkit.spec import Precision, parse_spec
from tritonkit.tensorrt.plan import (
    build_engine,
    detect_gpu,
    plan_options,
    probe_tensorrt,
    timing_cache_path,
)
from tritonkit.tensorrt.profiles import fed_axis_bounds

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu, pytest.mark.slow]


def _skip_reason() -> str | None:
    try:
        importlib.import_module("tensorrt")
    except ImportError as e:
        return f"tensorrt cannot be imported ({e}); run in the NGC TensorRT container"
    try:
        detect_gpu()
    except EngineBuildError as e:
        return str(e)
    return None


_REASON = _skip_reason()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)


SPEC = """
models:
  - name: digits
    onnx: image.onnx
    max_batch_size: 8
    tensorrt:
      opt_batch_size: 4
      extra_profiles: [{min: 1, opt: 1, max: 2}]
      workspace_mib: 256
      builder_optimization_level: 1
"""


def test_real_plan_deserializes_with_the_derived_profiles(tmp_path: Path):
    # Imported after the capability check: Polygraphy's TensorRT runner needs TensorRT.
    import onnxruntime as ort
    from polygraphy.backend.trt import TrtRunner, engine_from_path

    make_image_model(tmp_path / "image.onnx")
    model = parse_spec(SPEC, tmp_path / "models.yaml").models[0]
    info = inspect_onnx(model.onnx)
    env = probe_tensorrt()
    cache = timing_cache_path(tmp_path / "cache", env)
    options = plan_options(model, info, timing_cache=cache)
    plan = tmp_path / "repo" / "digits" / "1" / "model.plan"

    assert build_engine(model.onnx, plan, options) == plan

    assert plan.stat().st_size > 0
    assert cache.is_file() and cache.stat().st_size > 0
    assert sorted(p.name for p in plan.parent.iterdir()) == ["model.plan"]
    engine = engine_from_path(str(plan))
    assert engine.num_optimization_profiles == 2
    shapes = [[tuple(s) for s in engine.get_tensor_profile_shape("pixels", index)]
              for index in range(2)]
    assert shapes == [
        [(1, 1, 8, 8), (4, 1, 8, 8), (8, 1, 8, 8)],
        [(1, 1, 8, 8), (1, 1, 8, 8), (2, 1, 8, 8)],
    ]
    assert tuple(engine.get_tensor_shape("pixels")) == (-1, 1, 8, 8)
    assert tuple(engine.get_tensor_shape("probabilities")) == (-1, 10)

    # The plan computes what the ONNX model computes (TF32 is off, so fp32 stays fp32).
    pixels = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"]).run(
        None, {"pixels": pixels})[0]
    with TrtRunner(engine) as runner:
        got = runner.infer({"pixels": pixels})["probabilities"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _compare(onnx_path, plan, feeds, *, atol: float, rtol: float, ort_level=None) -> None:
    """Polygraphy's comparator: ONNX Runtime (CPU) against the plan, on the given feeds."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, CompareFunc

    runners = [
        OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["CPUExecutionProvider"],
                                     graph_optimization_level=ort_level)),
        TrtRunner(EngineFromBytes(BytesFromPath(str(plan)))),
    ]
    results = Comparator.run(runners, data_loader=feeds)
    accuracy = Comparator.compare_accuracy(
        results, compare_func=CompareFunc.simple(atol=atol, rtol=rtol))
    assert bool(accuracy), f"TensorRT differs from ONNX Runtime beyond atol {atol}, rtol {rtol}"


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16, Precision.INT8])
def test_one_plan_per_precision_computes_what_onnx_runtime_computes(
        tmp_path: Path, precision: Precision):
    import onnxruntime as ort

    make_classifier(tmp_path / "fp32.onnx", features=16, classes=4)
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((64, 16)).astype(np.float32)
    onnx_path = tmp_path / "fp32.onnx"
    if precision is not Precision.FP32:
        onnx_path = transform_precision(tmp_path / "fp32.onnx", tmp_path / "model.onnx",
                                        precision=precision, calibration={"x": rows})
    model = parse_spec("models: [{name: m, onnx: fp32.onnx, max_batch_size: 8}]",
                       tmp_path / "models.yaml").models[0]
    options = plan_options(model, inspect_onnx(onnx_path), timing_cache=None)
    plan = build_engine(onnx_path, tmp_path / "model.plan", options)

    feeds = [{"x": rows[i:i + n]} for i, n in ((0, 1), (1, 3), (4, 8))]
    # fp32 without TF32 is fp32; fp16 rounds; int8 (Q/DQ executed by TensorRT in int8 against
    # ONNX Runtime's fp32 fake-quantization, its graph fusions off) requantizes differently
    tolerance = {Precision.FP32: 1e-4, Precision.FP16: 1e-2, Precision.INT8: 5e-2}[precision]
    _compare(onnx_path, plan, feeds, atol=tolerance, rtol=tolerance,
             ort_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)


def test_a_plan_with_a_dynamic_sequence_axis_takes_every_length_in_its_profile(tmp_path: Path):
    from polygraphy.backend.trt import engine_from_path

    make_sequence_encoder(tmp_path / "enc.onnx")
    spec = parse_spec(SEQUENCE_PIPELINE_SPEC, tmp_path / "models.yaml")  # sequence fed up to 64
    model = spec.models[0]
    info = inspect_onnx(model.onnx)
    fed = fed_axis_bounds(spec, model.name, [t.name for t in info.inputs])
    options = plan_options(model, info, timing_cache=None, fed=fed)
    plan = build_engine(model.onnx, tmp_path / "enc.plan", options)

    engine = engine_from_path(str(plan))
    assert engine.num_optimization_profiles == 2
    assert [tuple(s) for s in engine.get_tensor_profile_shape("ids", 0)] == [
        (1, 1), (4, 64), (16, 64)]
    rng = np.random.default_rng(2)
    feeds = [{"ids": rng.standard_normal((b, n)).astype(np.float32),
              "mask": rng.standard_normal((b, n)).astype(np.float32)}
             for b, n in ((1, 1), (3, 17), (16, 64))]
    _compare(model.onnx, plan, feeds, atol=1e-5, rtol=1e-5)



def test_a_plan_with_dynamic_height_and_width_takes_every_size_in_its_profile(tmp_path: Path):
    from polygraphy.backend.trt import engine_from_path

    make_upscaler(tmp_path / "up.onnx")
    model = parse_spec(UPSCALER_SPEC, tmp_path / "models.yaml").models[0]
    options = plan_options(model, inspect_onnx(model.onnx), timing_cache=None)
    plan = build_engine(model.onnx, tmp_path / "up.plan", options)

    engine = engine_from_path(str(plan))
    assert engine.num_optimization_profiles == 1
    assert [tuple(s) for s in engine.get_tensor_profile_shape("low_res", 0)] == [
        (1, 1, 8, 8), (1, 1, 32, 32), (4, 1, 64, 64)]
    assert tuple(engine.get_tensor_shape("low_res")) == (-1, 1, -1, -1)
    rng = np.random.default_rng(4)
    feeds = [{"low_res": rng.standard_normal((b, 1, h, w)).astype(np.float32)}
             for b, h, w in ((1, 8, 8), (2, 17, 40), (4, 64, 64))]
    _compare(model.onnx, plan, feeds, atol=1e-4, rtol=1e-4)
