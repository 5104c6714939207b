"""`triton_python_backend_utils` for tests outside the server.

The module's Python half is the real file shipped with tritonserver 2.51 (in the
nvidia-pytriton wheel). Its C++ half (Tensor, InferenceResponse, TritonError, Logger) exists
only inside the backend stub process, so small stand-ins with the same call signatures are
attached here. Integration tests exercise the real objects against a running server.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np


def real_utils_path() -> Path:
    spec = importlib.util.find_spec("pytriton")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "tritonserver" / "backends" / "python" / "triton_python_backend_utils.py"


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        if not isinstance(array, np.ndarray):
            raise TypeError("Tensor needs a numpy array")
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None,
                 error: TritonError | None = None) -> None:
        self._outputs = list(output_tensors or [])
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def as_dict(self) -> dict[str, np.ndarray]:
        return {t.name(): t.as_numpy() for t in self._outputs}


@dataclass
class Logger:
    lines: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.lines.append(("info", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.lines.append(("warn", message))

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.lines.append(("error", message))


@dataclass
class InferenceRequest:
    tensors: list[Tensor] = field(default_factory=list)

    def inputs(self) -> list[Tensor]:
        return self.tensors


def request(**arrays: Any) -> InferenceRequest:
    return InferenceRequest([Tensor(name, np.asarray(a)) for name, a in arrays.items()])


def load() -> ModuleType:
    """A fresh module: the real Python helpers plus the stand-ins above."""
    spec = importlib.util.spec_from_file_location("pb_utils_for_tests", real_utils_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Logger.lines = []
    for obj in (Tensor, TritonError, InferenceResponse, Logger):
        setattr(module, obj.__name__, obj)
    return module
