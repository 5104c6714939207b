"""The floor of one Python-backend hop: a step that does next to nothing, served alone.

`floor_step(spec, like)` is `tritonkit.processing.steps:byte_sizes` (IMAGE BYTES [1] -> SIZES
INT64 [1]) with the serving settings of the pipeline step `like`, so hey can send it the
pipeline's own request bodies. What it costs per request is what the Python backend itself
costs: the HTTP frontend, scheduling, the stub's shared-memory round trip and the adapter.
"""

from __future__ import annotations

import dataclasses

from harness.benchmarks.errors import BenchmarkError
from tritonkit.processing import IMAGE
from tritonkit.spec import BuildSpec, DataType, PythonStepSpec, TensorSpec

FLOOR_STEP = "python_floor"
FLOOR_OUTPUT = "SIZES"
FLOOR_FUNCTION = "tritonkit.processing.steps:byte_sizes"


def floor_step(spec: BuildSpec, like: str) -> PythonStepSpec:
    step = spec.python_step(like)
    if step is None:
        raise BenchmarkError(f"{spec.source.name} has no Python step {like!r} to model the "
                             "floor step on")
    return dataclasses.replace(
        step, name=FLOOR_STEP, function=FLOOR_FUNCTION, assets={},
        inputs=(TensorSpec(name=IMAGE, dtype=DataType.BYTES, dims=(1,)),),
        outputs=(TensorSpec(name=FLOOR_OUTPUT, dtype=DataType.INT64, dims=(1,)),))
