"""Triton Python-backend model that runs `<model dir>/<version>/model.onnx` with ONNX Runtime (CPU).

Used by the `local` target, whose Triton has no ONNX Runtime backend. All requests of an
`execute` call are validated one by one, concatenated and run ONCE; if that batched run
fails, each request is retried alone so a bad request fails alone (INVALID_ARG for input the
client got wrong, INTERNAL otherwise). NaN and Inf inputs are refused (INVALID_ARG).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from tritonkit.processing.step_api import StepResult, non_finite_problem
from tritonkit.runtime import parameters as parameter_names
from tritonkit.runtime.batching import (
    AdapterConfigError,
    Outcome,
    config_parameters,
    config_tensors,
    run_batched,
)
from tritonkit.runtime.python_step import build_responses, failed_responses, gather_inputs

try:  # only importable inside the Triton Python-backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # unit tests import OnnxBatchRunner without a server
    pb_utils = None

log = logging.getLogger(__name__)


_ORT_TYPES: dict[str, np.dtype] = {
    f"tensor({name})": np.dtype(dtype) for name, dtype in {
        "float": np.float32, "float16": np.float16, "double": np.float64,
        "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
        "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
        "bool": np.bool_, "string": np.object_,
    }.items()
}


@dataclass(frozen=True, kw_only=True)
class OnnxInput:
    """An ONNX graph input: dtype and shape with None for symbolic (dynamic) dims."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def problem(self, array: np.ndarray) -> str | None:
        """Why `array` cannot feed this input, or None."""
        if array.dtype != self.dtype:
            return f"input {self.name!r} must be {self.dtype}, got {array.dtype}"
        if array.ndim != len(self.shape) or any(
                want is not None and want != got
                for want, got in zip(self.shape, array.shape, strict=True)):
            want_text = ["-1" if d is None else str(d) for d in self.shape]
            return (f"input {self.name!r} must have shape [{', '.join(want_text)}], "
                    f"got {list(array.shape)}")
        return None


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


class OnnxBatchRunner:
    """An ONNX Runtime session that answers a list of requests with one batched run."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.inputs = tuple(
            OnnxInput(name=i.name, dtype=_ort_dtype(i.type, i.name),
                      shape=tuple(_dim(d) for d in i.shape))
            for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())

    @classmethod
    def from_path(cls, path: Path, *, intra_op_threads: int = 0) -> OnnxBatchRunner:
        """CPU session; `intra_op_threads` > 0 caps ONNX Runtime's intra-op thread pool."""
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        try:
            session = ort.InferenceSession(str(path), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own pybind exception types
            raise AdapterConfigError(f"cannot load ONNX model {path}: {e}") from e
        return cls(session)

    def validate(self, request: Mapping[str, np.ndarray]) -> str | None:
        """Why this request cannot run (missing/unknown input, dtype or shape), or None."""
        expected = {i.name for i in self.inputs}
        missing = sorted(expected - set(request))
        if missing:
            return f"missing input(s) {missing}"
        unknown = sorted(set(request) - expected)
        if unknown:
            return f"unknown input(s) {unknown} (the model takes {sorted(expected)})"
        for spec in self.inputs:
            array = np.asarray(request[spec.name])
            problem = (spec.problem(array) or non_finite_problem(spec.name, array)
                       or _empty_problem(spec.name, array))
            if problem is not None:
                return problem
        return None

    def run_batch(self, feeds: Mapping[str, np.ndarray]) -> StepResult:
        """One session run over already-concatenated inputs."""
        values = self.session.run(list(self.output_names), dict(feeds))
        return StepResult(outputs=dict(zip(self.output_names, values, strict=True)))

    def run(self, per_request: Sequence[Mapping[str, np.ndarray]]) -> list[Outcome]:
        """Validate each request, run the valid ones once, split the outputs per request."""
        return run_batched(self.run_batch, per_request, validate=self.validate)


def _empty_problem(name: str, array: np.ndarray) -> str | None:
    if array.size == 0:
        return f"input {name!r} has an empty dimension (shape {list(array.shape)})"
    return None


def _ort_dtype(type_name: str, name: str) -> np.dtype:
    try:
        return _ORT_TYPES[type_name]
    except KeyError as e:
        raise AdapterConfigError(f"input {name!r} has unsupported ONNX type {type_name}") from e


class TritonPythonModel:
    """Python-backend model for the `local` target: ONNX Runtime on the CPU."""

    def initialize(self, args: Mapping[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model_name = str(args.get("model_name") or config.get("name", "onnx_model"))
        parameters = config_parameters(config)
        raw_threads = parameters.get(parameter_names.INTRA_OP_THREADS, "0") or "0"
        try:
            threads = int(raw_threads)
        except ValueError as e:
            raise AdapterConfigError(
                f"{self.model_name}: parameter {parameter_names.INTRA_OP_THREADS!r} must be an "
                f"integer, got {raw_threads!r}") from e
        file_name = parameters.get(parameter_names.ONNX_MODEL_FILE) or (
            parameter_names.DEFAULT_ONNX_MODEL_FILE)
        if Path(file_name).name != file_name:
            raise AdapterConfigError(f"{self.model_name}: parameter "
                                     f"{parameter_names.ONNX_MODEL_FILE!r} must be a file name "
                                     f"in the version directory, got {file_name!r}")
        path = Path(args["model_repository"]) / str(args["model_version"]) / file_name
        self.runner = OnnxBatchRunner.from_path(path, intra_op_threads=threads)
        self.inputs = config_tensors(config, "input", pb_utils.triton_string_to_numpy)
        self.outputs = config_tensors(config, "output", pb_utils.triton_string_to_numpy)
        self.batched = int(config.get("max_batch_size") or 0) > 0
        onnx_inputs = {i.name for i in self.runner.inputs}
        config_inputs = {t.name for t in self.inputs}
        if config_inputs != onnx_inputs:
            raise AdapterConfigError(f"{self.model_name}: config inputs {sorted(config_inputs)} "
                                     f"differ from the ONNX inputs {sorted(onnx_inputs)}")
        unknown = sorted({t.name for t in self.outputs} - set(self.runner.output_names))
        if unknown:
            raise AdapterConfigError(f"{self.model_name}: config outputs {unknown} are not "
                                     f"ONNX outputs {list(self.runner.output_names)}")
        log.info("%s: loaded %s (intra_op_threads=%d)", self.model_name, path, threads)

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        try:
            per_request = [gather_inputs(request, self.inputs) for request in requests]
            outcomes = self.runner.run(per_request)
            return build_responses(self.model_name, outcomes, self.outputs,
                                   batched=self.batched)
        except Exception as e:  # never raise from execute: it would fail the whole batch
            return failed_responses(self.model_name, len(requests), e)

    def finalize(self) -> None:
        log.info("%s: unloaded", self.model_name)
