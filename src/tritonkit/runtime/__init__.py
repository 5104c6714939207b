"""What runs inside Triton's Python backend: thin adapters around plain functions and ONNX Runtime.

`python_step` runs a `module:callable` step, `onnx_runner` runs an ONNX model on the CPU;
`batching` holds their Triton-free core (concatenate requests, run once, answer each).
Importing this package imports neither Triton nor ONNX Runtime, and nothing of `tritonkit.build`.
"""

from typing import Any

from tritonkit.runtime import parameters

__all__ = ["OnnxBatchRunner", "parameters"]


def __getattr__(name: str) -> Any:
    if name == "OnnxBatchRunner":  # imports onnxruntime: only when asked for
        from tritonkit.runtime.onnx_runner import OnnxBatchRunner  # noqa: PLC0415

        return OnnxBatchRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
