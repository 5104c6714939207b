"""perf_analyzer on the detection and embeddings ensembles with real inputs (issue 6).

One short level each (concurrency 1, ~one window): the harness is under test, not the speed.
`make bench` runs the full scenarios (harness/benchmarks/scenarios.yaml: detection_online,
embeddings_online at concurrency 1, 2, 4, 8, plus each step).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from harness.benchmarks.perf_analyzer import run_perf_analyzer, step_inputs
from harness.benchmarks.scenarios import PerfScenario, Protocol
from harness.benchmarks.workloads import PIPELINES, WorkloadName, load_workload
from tritonkit.server.server_options import ServerURLs

pytestmark = pytest.mark.integration

NEW_WORKLOADS = (WorkloadName.DETECTION, WorkloadName.EMBEDDINGS)


def one_window(workload: WorkloadName) -> PerfScenario:
    return PerfScenario(name=f"{workload.value}_short", workload=workload,
                        model=PIPELINES[workload], protocol=Protocol.GRPC, concurrency=(1,),
                        batch_images=1, measurement_interval_ms=800, stability_percentage=1000,
                        stability_percentile=50, max_trials=3, timeout_s=120)


def failed_requests(url: str, model: str) -> tuple[int, int]:
    """Triton's own (failed, successful) request counts of `model` since it loaded."""
    with grpcclient.InferenceServerClient(url.removeprefix("grpc://")) as client:
        stats = client.get_inference_statistics(model, as_json=True)
    inference = stats["model_stats"][0]["inference_stats"]
    return (int(inference.get("fail", {}).get("count", 0)),
            int(inference.get("success", {}).get("count", 0)))


@pytest.mark.parametrize("workload", NEW_WORKLOADS, ids=lambda w: w.value)
def test_ensemble_under_perf_analyzer_with_real_inputs(triton: ServerURLs, tmp_path: Path,
                                                        workload: WorkloadName) -> None:
    scenario = one_window(workload)
    failed_before, succeeded_before = failed_requests(triton.grpc, scenario.model)
    (point,) = run_perf_analyzer(scenario, triton.grpc, out_csv=tmp_path / "out.csv",
                                 input_images=8)
    assert point.model == PIPELINES[workload] and point.load == 1.0
    assert point.throughput_infer_s > 0 and point.latency_p50_us > 0
    assert point.server is not None and point.server.inference_count > 0
    failed_after, succeeded_after = failed_requests(triton.grpc, scenario.model)
    assert failed_after == failed_before  # zero errors: no request perf_analyzer sent failed
    assert succeeded_after - succeeded_before >= point.server.inference_count
    assert "Composing models" in (tmp_path / "out.log").read_text()
    sent = json.loads((tmp_path / "out.input.json").read_text())["data"]
    assert len(sent) == 8 and list(sent[0]) == [load_workload(workload, count=1).input_name]


def test_token_rows_are_captured_at_their_own_length(example_repository: Path) -> None:
    workload = load_workload("embeddings", count=4)
    captured = {s.model: s for s in step_inputs(example_repository, "embeddings",
                                                workload.samples(), one_row_at_a_time=True)}
    assert list(captured) == ["text_tokenize", "text_encoder", "text_pool"]
    encoder = captured["text_encoder"]
    lengths = [row["input_ids"].shape[0] for row in encoder.rows]
    assert len(lengths) == 4 and len(set(lengths)) > 1 and encoder.ragged
    for row in encoder.rows:
        assert row["input_ids"].dtype == np.int64 and row["input_ids"][0] == 101  # [CLS]
        assert int(row["attention_mask"].sum()) == row["input_ids"].shape[0]  # no padding
    hidden = captured["text_pool"].rows[2]["HIDDEN"]
    assert hidden.shape == (lengths[2], 384) and hidden.dtype == np.float32
