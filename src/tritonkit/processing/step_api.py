"""The contract between a pipeline step function and whatever runs it.

A step function receives the whole batch (rows of every request concatenated along axis 0)
and returns a `StepResult`. Rows it cannot process are reported in `StepResult.errors`
(row index -> message) instead of raising, so one bad row fails only its own request.
The Triton adapter (tritonkit.runtime.python_step) and the in-process reference call it alike.

A step that needs files (a tokenizer, a vocabulary) or costly set-up registers a `prepare`
companion with `@prepared_by(prepare)`. Runners call `prepare_step(function, context)` once,
when the model loads, so a missing or broken asset fails the load (not the first request),
and the function reads the result with `context.prepared(prepare)`. A plain call with a context
nobody prepared still works: `prepared` then runs `prepare` on the spot. Asset parameters name
paths relative to the model directory (`StepContext.asset_path`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, TypeVar, cast

import numpy as np

from tritonkit.errors import ToolkitError


class ProcessingError(ToolkitError):
    """Root of the errors the processing package raises."""


class StepInputError(ProcessingError, ValueError):
    """Input a step rejects as a whole (wrong dtype, missing tensor, ...): the caller's fault."""


class StepConfigError(ProcessingError, RuntimeError):
    """A step's parameters or assets are unusable: a deployment error, reported when the model
    loads (and as INTERNAL, not the caller's fault, should it surface in a request)."""


# Per-element bound on BYTES inputs (an encoded image, a text): bounds the work one row can cost.
DEFAULT_MAX_ELEMENT_BYTES = 16 * 1024 * 1024
_MAX_ROWS_NAMED = 8


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_MAX_ROWS_NAMED])
    more = len(rows) - _MAX_ROWS_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def non_finite_problem(name: str, array: np.ndarray) -> str | None:
    """Why a floating-point input is unusable (it holds NaN or Inf, naming the rows), or None.

    Integer, boolean and BYTES arrays are never a problem here.
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return None
    finite = np.isfinite(arr)
    if finite.all():
        return None
    kinds = []
    if np.isnan(arr).any():
        kinds.append("NaN")
    if np.isinf(arr).any():
        kinds.append("Inf")
    where = ""
    if arr.ndim >= 1:
        rows = np.flatnonzero(~finite.reshape(arr.shape[0], -1).all(axis=1))
        where = f" in row(s) {_rows_text(rows)}"
    return (f"input {name!r} contains {' and '.join(kinds)}{where}; "
            "only finite values are accepted")


def element_size_problem(name: str, array: np.ndarray, max_bytes: int) -> str | None:
    """Why a BYTES input is unusable (an element above `max_bytes`), or None."""
    arr = np.asarray(array)
    if arr.dtype != np.object_ and arr.dtype.kind != "S":
        return None
    for index, element in enumerate(arr.reshape(-1)):
        size = len(element) if isinstance(element, bytes | bytearray | str) else 0
        if size > max_bytes:
            return (f"input {name!r} element {index} is {size} bytes, above the limit of "
                    f"{max_bytes} bytes per element")
    return None


def decode_utf8(name: str, array: np.ndarray) -> list[str]:
    """BYTES elements as text; StepInputError naming the input and element if one is not UTF-8."""
    texts: list[str] = []
    for index, element in enumerate(np.asarray(array, dtype=np.object_).reshape(-1)):
        if isinstance(element, str):
            texts.append(element)
            continue
        try:
            texts.append(bytes(element).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise StepInputError(
                f"input {name!r} element {index} is not valid UTF-8 text "
                f"(byte {e.start}: {e.reason})") from e
        except TypeError as e:
            raise StepInputError(f"input {name!r} element {index} must be bytes, got "
                                 f"{type(element).__name__}") from e
    return texts


S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])
PrepareFunction = Callable[["StepContext"], object]
_PREPARE_ATTRIBUTE = "__step_prepare__"


@dataclass(frozen=True, kw_only=True)
class Preparation:
    """What a step's `prepare` companion returned when the model loaded."""

    prepare: PrepareFunction
    state: object


@dataclass(frozen=True, kw_only=True)
class StepContext:
    """What a step knows besides its inputs: config parameters, the model's labels, the model's
    directory (where relative asset paths resolve) and what its `prepare` made at load."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    model_dir: Path | None = None
    preparation: Preparation | None = field(default=None, repr=False, compare=False)

    def get_int(self, key: str, default: int) -> int:
        return int(self.parameters.get(key, default))

    def get_float(self, key: str, default: float) -> float:
        return float(self.parameters.get(key, default))

    def asset_path(self, key: str) -> Path:
        """The file or directory parameter `key` names: an absolute path as it is, a relative
        one inside the model directory. StepConfigError when it is missing, when it is
        relative and there is no model directory, or when it climbs out of the model directory.
        """
        if key not in self.parameters:
            raise StepConfigError(f"missing parameter {key!r} (a path relative to the model "
                                  "directory, set by the builder from the step's assets)")
        value = str(self.parameters[key])
        path = Path(value)
        if path.is_absolute():
            return path
        if self.model_dir is None:
            raise StepConfigError(f"parameter {key!r}: {value!r} is relative, and this step runs "
                                  "without a model directory to resolve it against; pass "
                                  "StepContext(model_dir=...) or an absolute path")
        if ".." in PurePath(value).parts:
            raise StepConfigError(f"parameter {key!r}: {value!r} leads outside the model "
                                  f"directory {self.model_dir}")
        return self.model_dir / path

    def prepared(self, prepare: Callable[[StepContext], S]) -> S:
        """What `prepare` made when the model loaded; made now if no runner prepared this
        context (a plain in-process call)."""
        if self.preparation is not None and self.preparation.prepare is prepare:
            return cast(S, self.preparation.state)
        return prepare(self)


def prepared_by(prepare: PrepareFunction) -> Callable[[F], F]:
    """Register `prepare(context) -> state` as the load-time companion of a step function.

    `prepare` loads and checks what the step needs (assets, parsed parameters) and raises when
    the step cannot serve. It sees the config's parameters, not a request's overrides. The
    function stays a plain function: it is returned unchanged, with `prepare` attached.
    """
    def register(function: F) -> F:
        setattr(function, _PREPARE_ATTRIBUTE, prepare)
        return function

    return register


def preparer_of(function: Callable[..., Any]) -> PrepareFunction | None:
    """The `prepare` companion registered for `function`, or None."""
    prepare = getattr(function, _PREPARE_ATTRIBUTE, None)
    return prepare if callable(prepare) else None


def prepare_step(function: Callable[..., Any], context: StepContext) -> StepContext:
    """`context` carrying what the function's `prepare` made (the context itself if it has
    none). Runners call it once, when the model loads; what `prepare` raises propagates."""
    prepare = preparer_of(function)
    if prepare is None:
        return context
    return replace(context, preparation=Preparation(prepare=prepare, state=prepare(context)))


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """Batched outputs (leading axis = rows) and per-row errors (failed rows hold filler)."""

    outputs: dict[str, np.ndarray]
    errors: dict[int, str] = field(default_factory=dict)


StepFunction = Callable[[Mapping[str, np.ndarray], StepContext], StepResult]
