from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonkit.build.path_safety import check_external_data, model_dir
from tritonkit.errors import UnsafePathError


@pytest.mark.parametrize("name", ["..", "a/b", "/etc", "", ".hidden", "a\x00b"])
def test_model_dir_refuses_escaping_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError):
        model_dir(tmp_path, name)


def test_model_dir_accepts_plain_names(tmp_path: Path) -> None:
    assert model_dir(tmp_path, "digits_1") == tmp_path.resolve() / "digits_1"


def _model_with_external(tmp_path: Path, location: str) -> Path:
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
                              initializer=[weight])
    model = helper.make_model(graph)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_the_model_dir_is_refused(tmp_path: Path, location: str) -> None:
    with pytest.raises(UnsafePathError, match="external data must be a file inside"):
        check_external_data(_model_with_external(tmp_path, location))


def test_external_data_inside_is_listed(tmp_path: Path) -> None:
    path = _model_with_external(tmp_path, "weights.bin")
    assert check_external_data(path) == (path.parent.resolve() / "weights.bin",)
