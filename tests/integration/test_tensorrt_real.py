"""A real TensorRT build: a tiny ONNX model becomes a plan that deserializes with its profiles.

Runs only where TensorRT and an NVIDIA GPU are present (the NGC TensorRT container); skipped
elsewhere with the reason. Nothing here is faked.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from build_scripts.errors import EngineBuildError
from build_scripts.onnx_inspect import inspect_onnx
from build_scripts.spec import parse_spec
from build_scripts.tensorrt_plan import (
    build_engine,
    detect_gpu,
    plan_options,
    probe_tensorrt,
    timing_cache_path,
)
from tests.onnx_factories import make_image_model

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
    assert tuple(engine.get_tensor_shape("logits")) == (-1, 10)

    # The plan computes what the ONNX model computes (TF32 is off, so fp32 stays fp32).
    pixels = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"]).run(
        None, {"pixels": pixels})[0]
    with TrtRunner(engine) as runner:
        got = runner.infer({"pixels": pixels})["logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
