"""tritonkit: one YAML spec of ONNX models and pipelines becomes a checked Triton model repository.

Subpackages: `spec` (the typed spec), `build` (the builder), `precision` (fp16/int8 and their
accuracy gates), `tensorrt` (plans), `repository` (config I/O and lint), `server` (a real local
tritonserver), and what runs inside Triton: `runtime` (adapters) and `processing` (the steps).
"""
