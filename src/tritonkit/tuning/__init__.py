"""Measured serving settings: `tritonkit tune` and the perf_analyzer driver it measures with.

`tune_pipeline(...)` searches a pipeline's serving settings on the real local server under a
p99 budget and returns the choice as a `SpecOverlay`; `write_tuning_report` shows the front.
`tune_model_with_model_analyzer(...)` does the same for one model alone with NVIDIA's Model
Analyzer (a manual brute grid; `tritonkit tune --engine model-analyzer`).
"""

from tritonkit.tuning.model_analyzer import tune_model_with_model_analyzer
from tritonkit.tuning.model_analyzer_setup import find_model_analyzer
from tritonkit.tuning.perf_analyzer import (
    B64_LIBRARY,
    BINARY_NAME,
    CUDART_LIBRARY,
    UNSTABLE_OUTPUT,
    CsvRow,
    LoadMode,
    PerfAnalyzer,
    SweepPoint,
    SweepSettings,
    find_perf_analyzer,
    input_data_document,
    input_rows_document,
    measure_concurrency,
    parse_csv,
    tensor_entry,
    write_input_data,
    write_input_rows,
)
from tritonkit.tuning.report import pareto_front, report_markdown, write_tuning_report
from tritonkit.tuning.search import (
    Knob,
    ModelSpace,
    Score,
    SearchResult,
    Trial,
    coordinate_search,
    score,
)
from tritonkit.tuning.session import (
    TuningRequest,
    TuningResult,
    overlay_for,
    search_space,
    tune_pipeline,
)
from tritonkit.tuning.workflow import input_data_from_files, tune_and_write

__all__ = ["UNSTABLE_OUTPUT",
           "Knob", "ModelSpace", "Score", "SearchResult", "Trial", "TuningRequest",
           "TuningResult", "coordinate_search", "input_data_from_files", "overlay_for",
           "pareto_front", "report_markdown", "score", "search_space", "tune_and_write",
           "tune_pipeline", "write_tuning_report",
           "find_model_analyzer", "tune_model_with_model_analyzer",
           "B64_LIBRARY", "BINARY_NAME", "CUDART_LIBRARY", "CsvRow", "LoadMode", "PerfAnalyzer",
           "SweepPoint", "SweepSettings", "find_perf_analyzer", "input_data_document",
           "input_rows_document", "measure_concurrency", "parse_csv", "tensor_entry",
           "write_input_data", "write_input_rows"]
