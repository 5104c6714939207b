"""What runs inside Triton's Python backend: the thin adapter around plain step functions.

`python_step` runs a `module:callable` step; `batching` holds its Triton-free core (concatenate
requests, run once, answer each); `parameters` names the config parameters both sides read.
ONNX models are served by Triton's own ONNX Runtime (or TensorRT) backend, not from Python.
Importing this package imports neither Triton nor ONNX Runtime, and nothing of `tritonkit.build`.
"""

from tritonkit.runtime import parameters

__all__ = ["parameters"]
