"""The light parts of tritonkit.export: finding the factory's module without importing it,
seeded example data, and the build stamp's inputs of a PyTorch source (no torch needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tritonkit.build.build_stamp import input_files
from tritonkit.errors import ExportError
from tritonkit.export import example_arrays, export_inputs, factory_module_file
from tritonkit.spec import DataType, DynamicAxis, ExampleInput, parse_spec

SPEC = """
models:
  - name: up
    pytorch:
      factory: zoo.models:build
      weights: up.pt
      inputs: [{name: x, dtype: FP32, shape: [2, 3], dynamic_axes: {0: batch}}]
      outputs: [y]
    max_batch_size: 4
"""


def write_zoo(root: Path) -> Path:
    (root / "zoo").mkdir(parents=True)
    (root / "zoo" / "__init__.py").write_text("")
    module = root / "zoo" / "models.py"
    module.write_text("def build():\n    raise RuntimeError('not called here')\n")
    (root / "up.pt").write_bytes(b"weights")
    return module


def test_the_factory_module_is_found_in_the_spec_folder_first(tmp_path: Path) -> None:
    module = write_zoo(tmp_path)
    assert factory_module_file("zoo.models:build", tmp_path) == module.resolve()
    assert factory_module_file("zoo:build", tmp_path) == (tmp_path / "zoo" /
                                                          "__init__.py").resolve()
    assert factory_module_file("no_such_module:build", tmp_path) is None
    assert "zoo.models" not in sys.modules  # found without importing it


def test_the_build_stamp_reads_the_weights_and_the_module_not_the_published_onnx(
        tmp_path: Path) -> None:
    module = write_zoo(tmp_path)
    spec = parse_spec(SPEC, tmp_path / "models.yaml")
    assert input_files(spec) == sorted([module.resolve(), tmp_path.resolve() / "up.pt"])


def test_the_export_key_follows_the_module_and_the_weights(tmp_path: Path) -> None:
    module = write_zoo(tmp_path)
    spec = parse_spec(SPEC, tmp_path / "models.yaml")
    first = export_inputs(spec.models[0], base_dir=spec.base_dir)
    assert export_inputs(spec.models[0], base_dir=spec.base_dir) == first
    module.write_text(module.read_text() + "# changed\n")
    second = export_inputs(spec.models[0], base_dir=spec.base_dir)
    assert second["module_sha256"] != first["module_sha256"]
    (tmp_path / "up.pt").write_bytes(b"other weights")
    third = export_inputs(spec.models[0], base_dir=spec.base_dir)
    assert third["weights_sha256"] != second["weights_sha256"]
    assert third["inputs"] == [{"name": "x", "dtype": "FP32", "shape": [2, 3], "high": None,
                                "dynamic_axes": {"0": {"name": "batch", "probe": 4}}}]


def test_example_data_is_seeded_and_resized_by_axis_name() -> None:
    inputs = [
        ExampleInput(name="pixels", dtype=DataType.FP32, shape=(2, 3, 4),
                     dynamic_axes={0: DynamicAxis(name="batch", probe=4),
                                   2: DynamicAxis(name="width", probe=8)}),
        ExampleInput(name="ids", dtype=DataType.INT64, shape=(2, 5), high=7,
                     dynamic_axes={0: DynamicAxis(name="batch", probe=4)}),
    ]
    first = example_arrays(inputs)
    assert {k: (v.shape, v.dtype) for k, v in first.items()} == {
        "pixels": ((2, 3, 4), np.float32), "ids": ((2, 5), np.int64)}
    assert all(np.array_equal(first[k], v) for k, v in example_arrays(inputs).items())
    assert 0 <= first["pixels"].min() and first["pixels"].max() < 1
    assert 0 <= first["ids"].min() and first["ids"].max() < 7
    probe = example_arrays(inputs, {"batch": 4}, seed=1)
    assert (probe["pixels"].shape, probe["ids"].shape) == ((4, 3, 4), (4, 5))


def test_missing_weights_fail_the_export_key(tmp_path: Path) -> None:
    write_zoo(tmp_path)
    (tmp_path / "up.pt").unlink()
    spec = parse_spec(SPEC, tmp_path / "models.yaml")
    with pytest.raises(ExportError, match=r"model 'up' \(pytorch:zoo.models:build\): weights "
                                          r"file .*up.pt not found"):
        export_inputs(spec.models[0], base_dir=spec.base_dir)
