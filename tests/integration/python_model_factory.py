"""Tiny Python-backend model repositories for integration tests.

Configs are built as `ModelConfig` messages and written with `text_format`; the model.py
files are short strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    name: str
    data_type: int  # a model_config_pb2.DataType value, e.g. mc.TYPE_FP32
    dims: tuple[int, ...]


# A + B -> SUM, plus ENV: a JSON string describing the interpreter the stub runs, which proves
# the stub uses the caller's virtualenv and can import the project's packages.
ADD_MODEL_PY = '''
import json
import platform
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

import tritonkit.runtime


class TritonPythonModel:
    def initialize(self, args):
        self.env = json.dumps({
            "prefix": sys.prefix,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "tritonkit": tritonkit.runtime.__file__,
        })

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "A").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "B").as_numpy()
            env = np.array([self.env.encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("SUM", (a + b).astype(np.float32)),
                pb_utils.Tensor("ENV", env),
            ]))
        return responses
'''

ADD_INPUTS = (
    TensorSpec(name="A", data_type=mc.TYPE_FP32, dims=(-1,)),
    TensorSpec(name="B", data_type=mc.TYPE_FP32, dims=(-1,)),
)
ADD_OUTPUTS = (
    TensorSpec(name="SUM", data_type=mc.TYPE_FP32, dims=(-1,)),
    TensorSpec(name="ENV", data_type=mc.TYPE_STRING, dims=(1,)),
)


def failing_model_py(reason: str) -> str:
    """A model.py whose initialize() raises RuntimeError(reason)."""
    return (
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        f"        raise RuntimeError({reason!r})\n"
        "\n"
        "    def execute(self, requests):\n"
        "        return []\n"
    )


def python_model_config(
    name: str,
    *,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int = 0,
    instance_count: int = 1,
) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    for spec in inputs:
        config.input.add(name=spec.name, data_type=spec.data_type, dims=list(spec.dims))
    for spec in outputs:
        config.output.add(name=spec.name, data_type=spec.data_type, dims=list(spec.dims))
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=instance_count)
    return config


def write_python_model(
    repository: Path,
    name: str,
    *,
    model_py: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int = 0,
    instance_count: int = 1,
) -> Path:
    """Write `<repository>/<name>/config.pbtxt` and `<name>/1/model.py`; return the model dir."""
    model_dir = repository / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    config = python_model_config(
        name, inputs=inputs, outputs=outputs,
        max_batch_size=max_batch_size, instance_count=instance_count,
    )
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    (model_dir / "1" / "model.py").write_text(model_py)
    return model_dir


def write_add_model(repository: Path, name: str = "add") -> Path:
    return write_python_model(
        repository, name, model_py=ADD_MODEL_PY, inputs=ADD_INPUTS, outputs=ADD_OUTPUTS
    )


def write_failing_model(repository: Path, name: str, reason: str) -> Path:
    return write_python_model(
        repository, name, model_py=failing_model_py(reason),
        inputs=(TensorSpec(name="X", data_type=mc.TYPE_FP32, dims=(-1,)),),
        outputs=(TensorSpec(name="Y", data_type=mc.TYPE_FP32, dims=(-1,)),),
    )
