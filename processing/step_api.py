"""The contract between a pipeline step function and whatever runs it.

A step function receives the whole batch (rows of every request concatenated along axis 0)
and returns a `StepResult`. Rows it cannot process are reported in `StepResult.errors`
(row index -> message) instead of raising, so one bad row fails only its own request.
The Triton adapter (triton_adapters.python_step) and the in-process reference call it alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np


class StepInputError(ValueError):
    """Input a step rejects as a whole (wrong dtype, missing tensor, ...): the caller's fault."""


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


@dataclass(frozen=True, kw_only=True)
class StepContext:
    """What a step knows besides its inputs: config parameters and the model's labels."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()

    def get_int(self, key: str, default: int) -> int:
        return int(self.parameters.get(key, default))

    def get_float(self, key: str, default: float) -> float:
        return float(self.parameters.get(key, default))


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """Batched outputs (leading axis = rows) and per-row errors (failed rows hold filler)."""

    outputs: dict[str, np.ndarray]
    errors: dict[int, str] = field(default_factory=dict)


StepFunction = Callable[[Mapping[str, np.ndarray], StepContext], StepResult]
