"""Triton Python-backend adapter that runs one step function (`module:callable`) per batch.

The model directory holds a one-line `model.py`:
`from tritonkit.runtime.python_step import TritonPythonModel  # noqa: F401`.
The stub imports that file and instantiates `TritonPythonModel` from its namespace.
`initialize` prepares the step (`tritonkit.processing.step_api.prepare_step`): a step that needs
assets
loads and checks them there, against the model's own directory (`args["model_repository"]`),
so a missing or broken asset fails the model load with its reason, and READY means the model
can serve. All requests of an `execute` call go through the function ONCE; a request whose
rows fail gets its own INVALID_ARG error response, logged on the server, and the others
succeed.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit.processing.step_api import (
    DEFAULT_MAX_ELEMENT_BYTES,
    StepContext,
    StepFunction,
    StepResult,
    decode_utf8,
    element_size_problem,
    non_finite_problem,
    prepare_step,
)
from tritonkit.runtime import parameters as parameter_names
from tritonkit.runtime.batching import (
    AdapterConfigError,
    ErrorKind,
    Outcome,
    RequestError,
    StepOutputError,
    TensorConfig,
    config_parameters,
    config_tensors,
    conform_output,
    run_batched,
)

try:  # only importable inside the Triton Python-backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # unit tests and tools import the pure helpers below
    pb_utils = None

log = logging.getLogger(__name__)


class InputValidator:
    """Checks every request before the step sees it: floats finite, BYTES elements bounded,
    text inputs valid UTF-8. A problem becomes that request's INVALID_ARG error."""

    def __init__(self, inputs: Sequence[TensorConfig], parameters: Mapping[str, str]) -> None:
        raw_limit = parameters.get(parameter_names.MAX_ELEMENT_BYTES) or str(
            DEFAULT_MAX_ELEMENT_BYTES)
        try:
            self.max_element_bytes = int(raw_limit)
        except ValueError as e:
            raise AdapterConfigError(f"parameter {parameter_names.MAX_ELEMENT_BYTES!r} must be "
                                     f"an integer, got {raw_limit!r}") from e
        if self.max_element_bytes <= 0:
            raise AdapterConfigError(f"parameter {parameter_names.MAX_ELEMENT_BYTES!r} must be "
                                     f"positive, got {self.max_element_bytes}")
        names = {t.name for t in inputs}
        text = parameters.get(parameter_names.TEXT_INPUTS) or ""
        self.text_inputs = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = sorted(set(self.text_inputs) - names)
        if unknown:
            raise AdapterConfigError(f"parameter {parameter_names.TEXT_INPUTS!r} names "
                                     f"unknown inputs {unknown} (inputs: {sorted(names)})")

    def __call__(self, request: Mapping[str, np.ndarray]) -> str | None:
        for name, array in request.items():
            problem = (non_finite_problem(name, array)
                       or element_size_problem(name, array, self.max_element_bytes))
            if problem is not None:
                return problem
        for name in self.text_inputs:
            if name in request:
                decode_utf8(name, request[name])  # StepInputError -> INVALID_ARG
        return None


def allowed_request_parameters(parameters: Mapping[str, str]) -> frozenset[str]:
    """The step parameters a request may override (config parameter `request_parameters`)."""
    raw = parameters.get(parameter_names.REQUEST_PARAMETERS) or ""
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def request_overrides(request: Any, allowed: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The request's own parameters named in `allowed`, as sorted (name, text) pairs.

    Triton hands request parameters over as a JSON object; booleans become "true"/"false".
    """
    getter = getattr(request, "parameters", None)
    if getter is None or not allowed:
        return ()
    try:
        raw = json.loads(getter() or "{}")
    except (TypeError, ValueError):
        return ()
    if not isinstance(raw, dict):
        return ()
    return tuple(sorted((str(k), str(v).lower() if isinstance(v, bool) else str(v))
                        for k, v in raw.items() if k in allowed))


def resolve_function(spec: str) -> StepFunction:
    """Import `package.module:callable` and return the callable."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AdapterConfigError(f"parameter {parameter_names.FUNCTION!r} must look like "
                                 f"'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AdapterConfigError(f"cannot import module {module_name!r} of {spec!r}: {e}") from e
    function = getattr(module, attribute, None)
    if not callable(function):
        raise AdapterConfigError(f"{spec!r}: module {module_name!r} has no callable "
                                 f"{attribute!r}")
    return function  # type: ignore[no-any-return]


def labels_path(config: Mapping[str, Any], model_dir: Path) -> Path | None:
    """The label file: an output's `label_filename`, else the `labels_file` parameter.

    Relative to the model directory; a path that leaves the directory is refused.
    """
    name = next((str(o["label_filename"]) for o in config.get("output") or ()
                 if o.get("label_filename")), None)
    if name is None:
        name = config_parameters(config).get(parameter_names.LABELS_FILE) or None
    if name is None:
        return None
    root = model_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise AdapterConfigError(f"label file {name!r} is outside the model directory {root}")
    return path


def read_labels(path: Path) -> tuple[str, ...]:
    """One label per line (UTF-8); trailing whitespace and a final empty line are dropped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AdapterConfigError(f"cannot read label file {path}: {e}") from e
    return tuple(line.rstrip() for line in text.splitlines())


def error_response(message: str, kind: ErrorKind) -> Any:
    """`InferenceResponse(error=TritonError(message, code))`, INVALID_ARG for bad input."""
    error_type = pb_utils.TritonError
    code_name = "INVALID_ARG" if kind is ErrorKind.INVALID_INPUT else "INTERNAL"
    code = getattr(error_type, code_name, None)
    error = error_type(message) if code is None else error_type(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def server_log(message: str, *, error: bool) -> None:
    """Log on the Triton server (pb_utils.Logger), falling back to Python logging."""
    logger = getattr(pb_utils, "Logger", None)
    if logger is None:
        (log.error if error else log.warning)("%s", message)
    elif error:
        logger.log_error(message)
    else:
        logger.log_warn(message)


def build_responses(
    model_name: str, outcomes: Sequence[Outcome], outputs: Sequence[TensorConfig],
    *, batched: bool,
) -> list[Any]:
    """One InferenceResponse per outcome; failures are logged on the server."""
    responses = []
    for i, outcome in enumerate(outcomes):
        tensors = _output_tensors(outcome, outputs, batched)
        if isinstance(tensors, RequestError):
            server_log(f"{model_name}: request {i} of the batch failed: {tensors.message}",
                       error=tensors.kind is ErrorKind.INTERNAL)
            responses.append(error_response(tensors.message, tensors.kind))
        else:
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses


def _output_tensors(
    outcome: Outcome, outputs: Sequence[TensorConfig], batched: bool,
) -> list[Any] | RequestError:
    if isinstance(outcome, RequestError):
        return outcome
    try:
        return [pb_utils.Tensor(t.name, conform_output(_pick(outcome, t.name), t, batched))
                for t in outputs]
    except StepOutputError as e:
        return RequestError(message=str(e), kind=ErrorKind.INTERNAL)


def _pick(outcome: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in outcome:
        raise StepOutputError(f"the step produced no output {name!r} "
                              f"(produced: {', '.join(sorted(outcome)) or 'none'})")
    return outcome[name]


def gather_inputs(request: Any, inputs: Sequence[TensorConfig]) -> dict[str, np.ndarray]:
    """The request's inputs named in the config, as numpy arrays (absent optionals skipped)."""
    gathered = {}
    for tensor in inputs:
        found = pb_utils.get_input_tensor_by_name(request, tensor.name)
        if found is not None:
            gathered[tensor.name] = found.as_numpy()
    return gathered


def failed_responses(model_name: str, count: int, error: Exception) -> list[Any]:
    message = f"{model_name}: internal error: {type(error).__name__}: {error}"
    server_log(message, error=True)
    return [error_response(message, ErrorKind.INTERNAL) for _ in range(count)]


class TritonPythonModel:
    """Python-backend model running `parameters.function` over each batch of requests."""

    def initialize(self, args: Mapping[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model_name = str(args.get("model_name") or config.get("name", "python_step"))
        parameters = config_parameters(config)
        if parameter_names.FUNCTION not in parameters:
            raise AdapterConfigError(f"{self.model_name}: config has no "
                                     f"{parameter_names.FUNCTION!r} parameter naming the step "
                                     "function")
        function_name = parameters[parameter_names.FUNCTION]
        self.function = resolve_function(function_name)
        model_dir = Path(args["model_repository"])  # this model's directory in the repository
        path = labels_path(config, model_dir)
        labels = read_labels(path) if path is not None else ()
        context = StepContext(parameters=parameters, labels=labels, model_dir=model_dir)
        try:
            self.context = prepare_step(self.function, context)
        except Exception as e:  # the step's own check: Triton reports it as the load failure
            raise AdapterConfigError(f"{self.model_name}: {function_name} cannot serve: "
                                     f"{type(e).__name__}: {e}") from e
        self.inputs = config_tensors(config, "input", pb_utils.triton_string_to_numpy)
        self.outputs = config_tensors(config, "output", pb_utils.triton_string_to_numpy)
        self.batched = int(config.get("max_batch_size") or 0) > 0
        self.validate = InputValidator(self.inputs, parameters)
        self.request_parameters = allowed_request_parameters(parameters)
        log.info("%s: step %s loaded with %d labels%s", self.model_name, function_name,
                 len(labels), " and prepared" if self.context.preparation else "")

    def _run_grouped(self, requests: Sequence[Any],
                     per_request: Sequence[Mapping[str, np.ndarray]]) -> list[Outcome]:
        """One batch per distinct set of request-parameter overrides (usually one batch)."""
        if not self.request_parameters:
            return run_batched(self._call, per_request, validate=self.validate)
        groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for i, request in enumerate(requests):
            key = request_overrides(request, self.request_parameters)
            groups.setdefault(key, []).append(i)
        outcomes: list[Outcome | None] = [None] * len(per_request)
        for overrides, members in groups.items():
            context = replace(self.context,
                              parameters={**self.context.parameters, **dict(overrides)})

            def call(inputs: Mapping[str, np.ndarray],
                     context: StepContext = context) -> StepResult:
                return self.function(inputs, context)

            answers = run_batched(call, [per_request[i] for i in members],
                                  validate=self.validate)
            for i, answer in zip(members, answers, strict=True):
                outcomes[i] = answer
        return [o for o in outcomes if o is not None]

    def _call(self, inputs: Mapping[str, np.ndarray]) -> StepResult:
        return self.function(inputs, self.context)

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        try:
            per_request = [gather_inputs(request, self.inputs) for request in requests]
            outcomes = self._run_grouped(requests, per_request)
            return build_responses(self.model_name, outcomes, self.outputs,
                                   batched=self.batched)
        except Exception as e:  # never raise from execute: it would fail the whole batch
            return failed_responses(self.model_name, len(requests), e)

    def finalize(self) -> None:
        log.info("%s: unloaded", self.model_name)
