"""Exception root of the benchmarks package."""

from __future__ import annotations

from tritonkit.errors import PerfAnalyzerError as _LibraryPerfAnalyzerError


class BenchmarkError(Exception):
    """Root of every error raised by the benchmark harness."""


class ScenarioError(BenchmarkError):
    """A scenarios YAML file is invalid. The message names the file, the field path and the fix."""

    def __init__(self, source: str, field_path: str, problem: str) -> None:
        self.source = source
        self.field_path = field_path
        self.problem = problem
        where = f"{source}: {field_path}" if field_path else source
        super().__init__(f"{where}: {problem}")


# perf_analyzer's errors come from the library's driver (tritonkit.tuning); the harness
# raises the same type for its own perf_analyzer failures.
PerfAnalyzerError = _LibraryPerfAnalyzerError
