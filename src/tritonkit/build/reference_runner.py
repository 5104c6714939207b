"""Run an ensemble of a built repository in-process: the reference that served results match.

It follows the ensemble's own `config.pbtxt` wiring, calls the same step functions the Python
backend calls, and runs each ONNX model with ONNX Runtime, so a difference between served and
in-process results points at serving, not at a second implementation.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonkit.errors import ToolkitError
from tritonkit.processing.step_api import StepContext, StepFunction, prepare_step
from tritonkit.repository.config_io import read_config
from tritonkit.runtime import parameters as parameter_names

log = logging.getLogger(__name__)


class ReferenceRunError(ToolkitError):
    """A step of the in-process reference failed for some rows."""


def _version_dir(model_dir: Path) -> Path:
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    if not versions:
        raise ToolkitError(f"{model_dir}: no version directory")
    return model_dir / str(versions[-1])


@dataclass(frozen=True, kw_only=True)
class _PythonStep:
    function: StepFunction
    context: StepContext

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.function(inputs, self.context)
        if result.errors:
            rows = ", ".join(f"row {i}: {m}" for i, m in sorted(result.errors.items()))
            raise ReferenceRunError(rows)
        return result.outputs


class _OnnxStep:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, dict(inputs)), strict=True))


def _load_step(repository: Path, name: str,
               onnx_models: Mapping[str, Path]) -> _PythonStep | _OnnxStep:
    model_dir = repository / name
    config = read_config(model_dir / "config.pbtxt")
    version_dir = _version_dir(model_dir)
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    if parameter_names.FUNCTION in parameters:
        module_name, _, attr = parameters.pop(parameter_names.FUNCTION).partition(":")
        labels: tuple[str, ...] = ()
        labels_file = parameters.pop(parameter_names.LABELS_FILE, None)
        if labels_file:
            labels = tuple((model_dir / labels_file).read_text(encoding="utf-8").splitlines())
        function = getattr(importlib.import_module(module_name), attr)
        # As the adapter does: assets resolve against the model directory, prepared once here.
        context = StepContext(parameters=parameters, labels=labels, model_dir=model_dir)
        try:
            prepared = prepare_step(function, context)
        except Exception as e:  # the step's own check (ProcessingError, or its library's)
            raise ToolkitError(f"{name}: {module_name}:{attr} cannot serve: "
                             f"{type(e).__name__}: {e}") from e
        return _PythonStep(function=function, context=prepared)
    onnx_path = version_dir / (config.default_model_filename
                               or parameter_names.DEFAULT_ONNX_MODEL_FILE)
    if not onnx_path.is_file() and name in onnx_models:
        onnx_path = onnx_models[name]  # e.g. a tensorrt-target repository holds only plans
    if not onnx_path.is_file():
        raise ToolkitError(f"{name}: the in-process reference needs model.onnx (build the "
                         f"local or onnxruntime target); {onnx_path} is missing")
    return _OnnxStep(onnx_path)


class ReferencePipeline:
    """`ReferencePipeline(repo, "digits")(inputs)` returns the ensemble's outputs.

    Models run from the repository's `model.onnx`; `onnx_models` names the ONNX file of models
    whose version directory holds none (a TensorRT plan, say).
    """

    def __init__(self, repository: Path, ensemble: str, *,
                 onnx_models: Mapping[str, Path] | None = None) -> None:
        self.config = read_config(repository / ensemble / "config.pbtxt")
        if self.config.platform != "ensemble":
            raise ToolkitError(f"{ensemble}: not an ensemble")
        self.steps = [(step, _load_step(repository, step.model_name, onnx_models or {}))
                      for step in self.config.ensemble_scheduling.step]
        self.output_names = [o.name for o in self.config.output]

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = dict(inputs)
        for step, run in self.steps:
            feeds = {model_input: tensors[tensor] for model_input, tensor in
                     step.input_map.items()}
            outputs = run(feeds)
            for model_output, tensor in step.output_map.items():
                tensors[tensor] = outputs[model_output]
        return {name: tensors[name] for name in self.output_names}
