"""The local server runs what production runs: every model step of the example repository on
Triton's own ONNX Runtime backend (KIND_CPU), and the Python backend only for Python steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tritonkit.repository import read_config
from tritonkit.runtime import parameters
from tritonkit.server import LocalTriton

pytestmark = pytest.mark.integration


def _configs(repository: Path) -> dict[str, mc.ModelConfig]:
    return {p.parent.name: read_config(p) for p in sorted(repository.glob("*/config.pbtxt"))}


def test_model_steps_use_the_onnxruntime_backend(example_repository: Path) -> None:
    configs = _configs(example_repository)
    onnx = {n for n, c in configs.items() if c.backend == "onnxruntime"}
    python = {n for n, c in configs.items() if c.backend == "python"}
    assert onnx and python
    for name in onnx:
        config = configs[name]
        assert config.platform == ""
        assert {g.kind for g in config.instance_group} == {mc.ModelInstanceGroup.KIND_CPU}
        assert not list((example_repository / name).glob("*/model.py")), name
        assert (example_repository / name / "1" / "model.onnx").is_file()
    # the Python backend serves Python steps only: no ONNX model runs through Python
    for name in python:
        assert parameters.FUNCTION in configs[name].parameters, name


def test_the_server_log_shows_the_onnxruntime_backend_serving_each_model(
        triton_server: LocalTriton, example_repository: Path) -> None:
    assert triton_server.log_path is not None
    log = triton_server.log_path.read_text(errors="replace")
    assert re.search(r'onnxruntime\.cc:\d+\] "TRITONBACKEND_Initialize: onnxruntime"', log)
    onnx = [n for n, c in _configs(example_repository).items() if c.backend == "onnxruntime"]
    for name in onnx:
        assert re.search(rf'onnxruntime\.cc:\d+\] "TRITONBACKEND_ModelInitialize: {name} '
                         rf'\(version 1\)"', log), name
        assert f"successfully loaded '{name}'" in log, name
