"""Thin Triton Python-backend adapters around plain functions and ONNX Runtime.

`python_step` runs a `module:callable` step, `onnx_runner` runs an ONNX model on the CPU;
`batching` holds their Triton-free core (concatenate requests, run once, answer each).
Importing this package imports neither Triton nor ONNX Runtime.
"""
