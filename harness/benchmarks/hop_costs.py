"""What each hop costs with one request in flight: the no-op Python step (the floor), the
pipeline's Python step, and the whole ensemble, each over gRPC and over HTTP.

At concurrency 1 nothing queues, so the median latency is the per-request cost of the path:
the frontend, the scheduler, the Python backend's shared-memory round trip, the step's own
work. The differences between rows are what one layer adds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.benchmarks.python_floor import FLOOR_STEP
from harness.benchmarks.report import ProfileSection
from harness.benchmarks.workloads import Workload
from tritonkit.errors import PerfAnalyzerError
from tritonkit.server import ServerURLs
from tritonkit.tuning import (
    SweepSettings,
    find_perf_analyzer,
    measure_concurrency,
    write_input_data,
)

log = logging.getLogger(__name__)


def hop_costs(urls: ServerURLs, workload: Workload, first_step: str, work: Path, *,
              interval_ms: int = 2000) -> ProfileSection:
    analyzer = find_perf_analyzer()
    input_data = write_input_data(workload.samples(), work / "hop-costs.input.json")
    rows: list[tuple[object, ...]] = []
    for model, what in ((FLOOR_STEP, "a no-op Python step alone (the floor)"),
                        (first_step, "the pipeline's Python step alone"),
                        (workload.pipeline, "the ensemble")):
        for protocol, hostport in (("grpc", urls.grpc_hostport), ("http", urls.http_hostport)):
            settings = SweepSettings(protocol=protocol, measurement_interval_ms=interval_ms)
            try:
                [point] = measure_concurrency(analyzer, hostport, model, input_data=input_data,
                                              concurrencies=(1,), settings=settings,
                                              work_dir=work / "hop-costs")
            except PerfAnalyzerError as e:  # one unstable level must not void the run
                log.warning("hop costs: %s over %s: %s", model, protocol, e)
                rows.append((model, what, protocol, "unstable", "-", "-"))
                continue
            rows.append((model, what, protocol, round(point.throughput),
                         round(point.p50_ms * 1000), round(point.p99_ms * 1000)))
    return ProfileSection(
        title=f"{workload.name.value}: what each hop costs, one request in flight (perf_analyzer)",
        text="At concurrency 1 nothing queues: the median is the per-request cost of the path. "
             "Floor = frontend + scheduling + the Python backend's round trip + the adapter.",
        columns=("model", "what", "protocol", "infer/s", "p50 us", "p99 us"), rows=tuple(rows))
