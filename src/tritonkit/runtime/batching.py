"""Batch the requests of one `execute` call, run once, and answer each request alone.

No Triton import: the adapters translate Triton requests to `{name: ndarray}` mappings and
back; everything in between lives here and is unit-tested without a server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from tritonkit.errors import ToolkitError
from tritonkit.processing.step_api import StepInputError, StepResult

log = logging.getLogger(__name__)

MAX_ROW_ERRORS_IN_MESSAGE = 8


class AdapterError(ToolkitError, RuntimeError):
    """Root of every error raised by tritonkit.runtime."""


class AdapterConfigError(AdapterError):
    """The model config (parameters, label file, function, tensors) is unusable."""


class StepOutputError(AdapterError):
    """A step or model returned outputs that do not line up with the batch it was given."""


class ErrorKind(str, Enum):
    INVALID_INPUT = "invalid_input"  # the client's fault: answered with INVALID_ARG
    INTERNAL = "internal"  # the step's or model's fault: answered with INTERNAL


@dataclass(frozen=True, kw_only=True)
class RequestError:
    """Why one request failed; the other requests of its batch are unaffected."""

    message: str
    kind: ErrorKind


Outcome = dict[str, np.ndarray] | RequestError
BatchCall = Callable[[Mapping[str, np.ndarray]], StepResult]
Validator = Callable[[Mapping[str, np.ndarray]], str | None]


def row_count(request: Mapping[str, np.ndarray]) -> int:
    """The batch size of one request: the common leading dimension of its inputs."""
    if not request:
        raise StepInputError("request has no inputs")
    sizes = {name: (np.shape(arr)[0] if np.ndim(arr) else None) for name, arr in request.items()}
    if any(size is None for size in sizes.values()) or len(set(sizes.values())) != 1:
        described = ", ".join(f"{n}: {s}" for n, s in sorted(sizes.items()))
        raise StepInputError(f"inputs disagree on the batch size ({described})")
    return int(next(iter(sizes.values())))  # type: ignore[arg-type]


def concat_requests(
    per_request: Sequence[Mapping[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Concatenate every request's inputs along axis 0; also return each request's row count.

    All requests must carry the same input names, dtypes and per-row shapes.
    """
    if not per_request:
        return {}, []
    names = sorted(per_request[0])
    counts = [row_count(request) for request in per_request]
    for i, request in enumerate(per_request[1:], start=1):
        if sorted(request) != names:
            raise StepInputError(
                f"request {i} has inputs {sorted(request)}, request 0 has {names}")
    if len(per_request) == 1:
        return {name: np.asarray(per_request[0][name]) for name in names}, counts
    merged: dict[str, np.ndarray] = {}
    for name in names:
        arrays = [np.asarray(request[name]) for request in per_request]
        first = arrays[0]
        for i, arr in enumerate(arrays[1:], start=1):
            if arr.dtype != first.dtype or arr.shape[1:] != first.shape[1:]:
                raise StepInputError(
                    f"input {name!r}: request {i} is {arr.dtype}{list(arr.shape[1:])} per row, "
                    f"request 0 is {first.dtype}{list(first.shape[1:])}")
        merged[name] = np.concatenate(arrays, axis=0)
    return merged, counts


def _row_error_message(errors: Sequence[tuple[int, str]]) -> str:
    head = errors[:MAX_ROW_ERRORS_IN_MESSAGE]
    shown = "; ".join(f"row {row}: {message}" for row, message in head)
    hidden = len(errors) - MAX_ROW_ERRORS_IN_MESSAGE
    return f"{shown}; and {hidden} more failed rows" if hidden > 0 else shown


def split_result(
    result: StepResult, counts: Sequence[int],
) -> list[dict[str, np.ndarray] | str]:
    """Per request: its slice of every output, or one message combining its row errors.

    Row numbers in messages count from the start of that request.
    """
    total = sum(counts)
    for name, arr in result.outputs.items():
        if np.ndim(arr) == 0 or np.shape(arr)[0] != total:
            raise StepOutputError(
                f"output {name!r} has shape {list(np.shape(arr))}, expected {total} rows")
    stray = [row for row in result.errors if not 0 <= row < total]
    if stray:
        raise StepOutputError(f"row errors for rows {stray} outside the batch of {total}")
    answers: list[dict[str, np.ndarray] | str] = []
    start = 0
    for count in counts:
        stop = start + count
        failed = sorted((row - start, message) for row, message in result.errors.items()
                        if start <= row < stop)
        if failed:
            answers.append(_row_error_message(failed))
        else:
            answers.append({name: arr[start:stop] for name, arr in result.outputs.items()})
        start = stop
    return answers


def _outcomes(result: StepResult, counts: Sequence[int]) -> list[Outcome]:
    return [RequestError(message=a, kind=ErrorKind.INVALID_INPUT) if isinstance(a, str) else a
            for a in split_result(result, counts)]


def _run_alone(call: BatchCall, request: Mapping[str, np.ndarray]) -> Outcome:
    try:
        merged, counts = concat_requests([request])
        return _outcomes(call(merged), counts)[0]
    except StepInputError as e:
        return RequestError(message=str(e), kind=ErrorKind.INVALID_INPUT)
    except Exception as e:  # a failing step must fail its request, not the server's batch
        log.exception("request failed inside the step")
        return RequestError(message=f"{type(e).__name__}: {e}", kind=ErrorKind.INTERNAL)


def run_batched(
    call: BatchCall,
    per_request: Sequence[Mapping[str, np.ndarray]],
    *,
    validate: Validator | None = None,
) -> list[Outcome]:
    """Validate each request, run the valid ones as ONE batch, and answer each request.

    If the batched call raises (or the requests cannot be concatenated), every valid request
    is retried alone, so one bad request fails alone. Never raises.
    """
    outcomes: list[Outcome | None] = [None] * len(per_request)
    valid: list[int] = []
    for i, request in enumerate(per_request):
        problem = _validate(validate, request)
        if problem is not None:
            outcomes[i] = RequestError(message=problem, kind=ErrorKind.INVALID_INPUT)
        else:
            valid.append(i)
    if len(valid) == 1:
        outcomes[valid[0]] = _run_alone(call, per_request[valid[0]])
    elif valid:
        try:
            merged, counts = concat_requests([per_request[i] for i in valid])
            batched = _outcomes(call(merged), counts)
        except Exception as e:  # retried per request below; any error is reported there
            log.warning("batch of %d requests failed (%s: %s); retrying each request alone",
                        len(valid), type(e).__name__, e)
            batched = [_run_alone(call, per_request[i]) for i in valid]
        for i, outcome in zip(valid, batched, strict=True):
            outcomes[i] = outcome
    return [o if o is not None else RequestError(message="request was not processed",
                                                 kind=ErrorKind.INTERNAL) for o in outcomes]


def _validate(validate: Validator | None, request: Mapping[str, np.ndarray]) -> str | None:
    if validate is None:
        return None
    try:
        return validate(request)
    except StepInputError as e:
        return str(e)


# --- model-config helpers shared by the adapters (config is the JSON Triton hands over) ---


@dataclass(frozen=True, kw_only=True)
class TensorConfig:
    """One input or output of a model config; dims exclude the batch axis when batched."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]
    optional: bool = False


def config_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """`parameters { key: ... value { string_value: ... } }` as a plain str -> str mapping."""
    raw = config.get("parameters") or {}
    return {str(key): str(value.get("string_value", "")) if isinstance(value, Mapping)
            else str(value) for key, value in raw.items()}


def config_tensors(
    config: Mapping[str, Any], key: str, to_numpy: Callable[[str], Any],
) -> tuple[TensorConfig, ...]:
    """The config's "input" or "output" list with numpy dtypes (via `to_numpy("TYPE_FP32")`)."""
    tensors = []
    for entry in config.get(key) or ():
        try:
            dtype = np.dtype(to_numpy(entry["data_type"]))
        except (KeyError, TypeError) as e:
            raise AdapterConfigError(f"{key} {entry.get('name')!r}: unusable data_type "
                                     f"{entry.get('data_type')!r}") from e
        # With `reshape`, the backend sees the reshaped dims ({} or no shape: a scalar).
        dims = ((entry["reshape"] or {}).get("shape") or () if "reshape" in entry
                else entry.get("dims") or ())
        tensors.append(TensorConfig(
            name=str(entry["name"]), dtype=dtype, dims=tuple(int(d) for d in dims),
            optional=bool(entry.get("optional", False)),
        ))
    return tuple(tensors)


def conform_output(array: np.ndarray, tensor: TensorConfig, batched: bool) -> np.ndarray:
    """An output converted to the config's dtype (BYTES as np.object_), its shape checked."""
    arr = np.asarray(array)
    if tensor.dtype == np.object_:
        if arr.dtype != np.object_:
            if arr.dtype.kind not in "SU":
                raise StepOutputError(f"output {tensor.name!r} is {arr.dtype}, expected BYTES")
            arr = np.vectorize(_to_bytes, otypes=[np.object_])(arr) if arr.size else \
                arr.astype(np.object_)
    elif arr.dtype != tensor.dtype:
        if arr.dtype == np.object_:
            raise StepOutputError(f"output {tensor.name!r} is BYTES, expected {tensor.dtype}")
        arr = arr.astype(tensor.dtype)
    per_row = arr.shape[1:] if batched else arr.shape
    if len(per_row) != len(tensor.dims) or any(
            want not in (-1, got) for want, got in zip(tensor.dims, per_row, strict=True)):
        where = " after the batch axis" if batched else ""
        raise StepOutputError(f"output {tensor.name!r} has shape {list(arr.shape)}, config dims "
                              f"are {list(tensor.dims)}{where}")
    return np.ascontiguousarray(arr)


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)
