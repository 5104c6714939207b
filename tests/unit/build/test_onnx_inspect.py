"""ONNX inspection and the dynamic-batch proof on tiny generated models."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.onnx_factories import make_baked_batch_model, make_classifier, make_image_model
from tritonkit.build.onnx_inspect import inspect_onnx, prove_dynamic_batch
from tritonkit.errors import OnnxModelError
from tritonkit.spec import DataType


def test_inspect_reports_io_opset_and_batch_axis(tmp_path: Path) -> None:
    info = inspect_onnx(make_image_model(tmp_path / "m.onnx"))
    assert info.opset == 17
    assert [t.name for t in info.inputs] == ["pixels"]
    pixels = info.inputs[0]
    assert pixels.dtype is DataType.FP32
    assert pixels.shape == ("batch", 1, 8, 8)
    assert pixels.dims_without_batch == (1, 8, 8)
    assert info.outputs[0].shape == ("batch", 10)
    assert info.batched
    assert len(info.sha256) == 64


def test_static_batch_is_not_batched(tmp_path: Path) -> None:
    info = inspect_onnx(make_classifier(tmp_path / "m.onnx", batch=1))
    assert not info.batched
    with pytest.raises(OnnxModelError, match="no dynamic leading"):
        prove_dynamic_batch(info, max_batch_size=8, probe_batch=3)
    prove_dynamic_batch(info, max_batch_size=0, probe_batch=3)  # unbatched: nothing to prove


def test_dynamic_batch_is_proven(tmp_path: Path) -> None:
    info = inspect_onnx(make_classifier(tmp_path / "m.onnx"))
    prove_dynamic_batch(info, max_batch_size=8, probe_batch=5)


def test_baked_batch_fails_with_clear_message(tmp_path: Path) -> None:
    info = inspect_onnx(make_baked_batch_model(tmp_path / "baked.onnx"))
    assert info.batched  # it *declares* a dynamic batch ...
    with pytest.raises(OnnxModelError) as err:
        prove_dynamic_batch(info, max_batch_size=8, probe_batch=3)
    message = str(err.value)
    assert "baked.onnx" in message and "batch 3" in message and "Reshape" in message


def test_output_that_ignores_batch_is_caught(tmp_path: Path) -> None:
    # y = ReduceSum(x) over all axes, declared as [batch]: batch 3 yields a single value.
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
    )
    path = tmp_path / "sum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    info = inspect_onnx(path)
    with pytest.raises(OnnxModelError, match="output 'y' has batch a scalar"):
        prove_dynamic_batch(info, max_batch_size=4, probe_batch=3)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(OnnxModelError, match="not found"):
        inspect_onnx(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(OnnxModelError, match="bad.onnx"):
        inspect_onnx(bad)


def test_checker_failure_is_reported(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["y"])],
        "dup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    )
    path = tmp_path / "dup.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(OnnxModelError, match="fails onnx.checker"):
        inspect_onnx(path)


def test_external_data_outside_model_dir_is_refused(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    tensor = model.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    tensor.ClearField("raw_data")
    onnx.save(model, str(path))
    with pytest.raises(OnnxModelError, match="outside the model directory"):
        inspect_onnx(path)
