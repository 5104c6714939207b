"""tritonkit.runtime.onnx_runner: one batched ONNX Runtime run, per-request validation."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.onnx_factories import make_image_model
from tests.unit.runtime import pb_utils_standin as standin
from tritonkit.processing.step_api import StepResult
from tritonkit.runtime import onnx_runner, python_step
from tritonkit.runtime.batching import AdapterConfigError, ErrorKind, RequestError


class CountingRunner(onnx_runner.OnnxBatchRunner):
    calls: list[int]

    def run_batch(self, feeds: Mapping[str, np.ndarray]) -> StepResult:
        self.calls.append(len(next(iter(feeds.values()))))
        return super().run_batch(feeds)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_model(tmp_path_factory.mktemp("onnx") / "image.onnx")


@pytest.fixture
def runner(image_model: Path) -> CountingRunner:
    r = CountingRunner.from_path(image_model, intra_op_threads=1)
    r.calls = []
    return r


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def test_runner_reads_inputs(runner: CountingRunner) -> None:
    (spec,) = runner.inputs
    assert spec.name == "pixels" and spec.dtype == np.float32
    assert spec.shape == (None, 1, 8, 8)
    assert runner.output_names == ("logits",)


def test_one_run_for_all_requests_matches_separate_runs(runner: CountingRunner) -> None:
    requests = [{"pixels": pixels(n, seed=n)} for n in (1, 4, 2)]
    outcomes = runner.run(requests)
    assert runner.calls == [7]
    for request, outcome in zip(requests, outcomes, strict=True):
        assert isinstance(outcome, dict)
        alone = runner.session.run(None, request)[0]
        np.testing.assert_allclose(outcome["logits"], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("bad", "match"), [
    ({"pixels": np.zeros((2, 1, 7, 7), np.float32)}, r"shape \[-1, 1, 8, 8\], got \[2, 1, 7, 7\]"),
    ({"pixels": np.zeros((2, 1, 8, 8), np.float64)}, "must be float32, got float64"),
    ({"pixels": np.zeros((1, 8, 8), np.float32)}, "must have shape"),
    ({"other": np.zeros((1, 1, 8, 8), np.float32)}, "missing input"),
    ({"pixels": pixels(1), "other": pixels(1)}, "unknown input"),
])
def test_invalid_request_fails_alone(runner: CountingRunner, bad: dict, match: str) -> None:
    outcomes = runner.run([{"pixels": pixels(2)}, bad, {"pixels": pixels(3)}])
    assert runner.calls == [5]
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict)
    assert isinstance(outcomes[1], RequestError)
    assert outcomes[1].kind is ErrorKind.INVALID_INPUT
    assert re.search(match, outcomes[1].message)


def test_nan_and_inf_are_refused_alone(runner: CountingRunner) -> None:
    x = pixels(2)
    x[1, 0, 0, 0] = np.nan
    y = pixels(1)
    y[0, 0, 1, 1] = -np.inf
    good, nan, inf = runner.run([{"pixels": pixels(3)}, {"pixels": x}, {"pixels": y}])
    assert runner.calls == [3]
    assert isinstance(good, dict) and np.isfinite(good["logits"]).all()
    assert isinstance(nan, RequestError) and nan.kind is ErrorKind.INVALID_INPUT
    assert "contains NaN in row(s) 1" in nan.message
    assert isinstance(inf, RequestError) and "contains Inf in row(s) 0" in inf.message


def test_requests_that_cannot_share_a_run_are_retried_alone(tmp_path: Path) -> None:
    # x[batch, n] -> sum over n: requests with different n are each valid alone.
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "sum.onnx"))
    runner = CountingRunner.from_path(tmp_path / "sum.onnx")
    runner.calls = []
    outcomes = runner.run([{"x": np.ones((2, 3), np.float32)}, {"x": np.ones((1, 5), np.float32)}])
    assert runner.calls == [2, 1]
    assert outcomes[0]["y"].tolist() == [3.0, 3.0]  # type: ignore[index]
    assert outcomes[1]["y"].tolist() == [5.0]  # type: ignore[index]


def test_unloadable_model_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(AdapterConfigError, match="cannot load ONNX model"):
        onnx_runner.OnnxBatchRunner.from_path(tmp_path / "bad.onnx")


# --- the Triton model, with stand-ins for the stub's C++ objects ---


@pytest.fixture
def pb(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = standin.load()
    monkeypatch.setattr(python_step, "pb_utils", module)
    monkeypatch.setattr(onnx_runner, "pb_utils", module)
    return module


def model_dir(tmp_path: Path, image_model: Path) -> Path:
    (tmp_path / "3").mkdir()
    shutil.copy(image_model, tmp_path / "3" / "model.onnx")
    return tmp_path


def config(input_name: str = "pixels", threads: str = "1") -> dict:
    return {"name": "digits_classifier", "backend": "python", "max_batch_size": 64,
            "input": [{"name": input_name, "data_type": "TYPE_FP32", "dims": [1, 8, 8]}],
            "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10],
                        "label_filename": "labels.txt"}],
            "parameters": {"intra_op_threads": {"string_value": threads}}}


def initialize(path: Path, cfg: dict) -> onnx_runner.TritonPythonModel:
    model = onnx_runner.TritonPythonModel()
    model.initialize({"model_config": json.dumps(cfg), "model_repository": str(path),
                      "model_version": "3", "model_name": cfg["name"]})
    return model


def test_triton_model_executes_batched(tmp_path: Path, image_model: Path, pb: ModuleType) -> None:
    model = initialize(model_dir(tmp_path, image_model), config())
    x = pixels(5)
    responses = model.execute([standin.request(pixels=x[:2]), standin.request(pixels=x[2:])])
    expected = model.runner.session.run(None, {"pixels": x})[0]
    np.testing.assert_allclose(responses[0].as_dict()["logits"], expected[:2], rtol=1e-5)
    np.testing.assert_allclose(responses[1].as_dict()["logits"], expected[2:], rtol=1e-5)


def test_triton_model_checks_config_against_onnx(tmp_path: Path, image_model: Path,
                                                 pb: ModuleType) -> None:
    path = model_dir(tmp_path, image_model)
    with pytest.raises(AdapterConfigError, match="differ from the ONNX inputs"):
        initialize(path, config(input_name="PIXELS"))
    with pytest.raises(AdapterConfigError, match="must be an integer"):
        initialize(path, config(threads="many"))


def test_triton_model_execute_never_raises(tmp_path: Path, image_model: Path,
                                           pb: ModuleType) -> None:
    model = initialize(model_dir(tmp_path, image_model), config())
    responses = model.execute([object()])  # not a request at all
    assert responses[0].error().code() == pb.TritonError.INTERNAL
