"""The exception root of `tritonkit`: every error the library raises is a `ToolkitError`."""

from __future__ import annotations


class ToolkitError(Exception):
    """Root of every error raised by tritonkit (build, server, runtime and processing)."""


class SpecError(ToolkitError):
    """The YAML spec is invalid. The message names the file, the field path and the fix."""

    def __init__(self, source: str, field_path: str, problem: str) -> None:
        self.source = source
        self.field_path = field_path
        self.problem = problem
        where = f"{source}: {field_path}" if field_path else source
        super().__init__(f"{where}: {problem}")


class OnnxModelError(ToolkitError):
    """An ONNX model is unreadable, fails the checker, or its dynamic axes are not dynamic."""


class ExportError(ToolkitError):
    """A PyTorch source could not be exported to ONNX, or its export disagrees with PyTorch or
    has a declared dynamic axis that is not dynamic. The message names the input and axis."""


class PrecisionError(ToolkitError):
    """A precision transform (fp16, int8) could not be produced."""


class AccuracyGateError(PrecisionError):
    """A transformed model exceeds the accuracy budget declared in the spec."""


class EngineBuildError(ToolkitError):
    """A TensorRT plan could not be built (TensorRT or a GPU missing, or the build failed)."""


class UnsafePathError(ToolkitError):
    """A model name or a path inside a model leaves the directory it must stay in."""


class ConfigError(ToolkitError):
    """A config.pbtxt could not be generated or parsed."""


class EnsembleError(ToolkitError):
    """An ensemble's wiring is invalid. The message names the ensemble and the failing step."""


class RepositoryCheckError(ToolkitError):
    """`build --check` found differences between the spec and a committed repository."""


class ServerError(ToolkitError):
    """The local Triton server could not be started, became unhealthy, or failed to load a model."""


class NativeBuildError(ToolkitError):
    """A native helper library (the BYTES batch guard) could not be compiled."""


class TensorRTApiError(ToolkitError):
    """A TensorRT API surface is not held, or NVIDIA's sources for one could not be read."""


class TuningError(ToolkitError):
    """`tritonkit tune` cannot run or measure: missing inputs, a model that fails to load."""


class PerfAnalyzerError(TuningError):
    """perf_analyzer is missing, failed, or wrote output that cannot be parsed."""
