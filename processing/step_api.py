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
