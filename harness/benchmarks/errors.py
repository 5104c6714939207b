"""Exception root of the benchmarks package."""

from __future__ import annotations


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


class PerfAnalyzerError(BenchmarkError):
    """perf_analyzer is missing, failed, or wrote output that cannot be parsed."""
