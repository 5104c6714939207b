"""Turn one YAML spec of ONNX models and pipelines into a checked Triton model repository."""
