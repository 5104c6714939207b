"""perf_analyzer against the real local Triton with real digits PNGs, and a per-step profile.

Windows are short (the harness, not the speed, is under test); stability is judged on the
median latency so a stalled request on this shared machine does not void a level.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from examples.model_zoo.digits import preprocess
from harness.benchmarks.perf_analyzer import profile_pipeline, run_perf_analyzer, step_inputs
from harness.benchmarks.scenarios import PerfScenario, Protocol, SharedMemory
from harness.benchmarks.workloads import WorkloadName, load_workload
from tritonkit.build import ReferencePipeline
from tritonkit.server.server_options import ServerURLs

pytestmark = pytest.mark.integration

SHORT = PerfScenario(name="light_online", workload=WorkloadName.LIGHT, model="digits",
                     protocol=Protocol.GRPC, concurrency=(1, 2), batch_images=1,
                     measurement_interval_ms=500, stability_percentage=1000,
                     stability_percentile=50, max_trials=5, timeout_s=120)


def test_digits_ensemble_over_grpc_with_real_pngs(triton: ServerURLs, tmp_path: Path) -> None:
    workload = load_workload("light", count=32)
    points = run_perf_analyzer(SHORT, triton.grpc, out_csv=tmp_path / "light.csv",
                               workload=workload)
    assert [p.load for p in points] == [1.0, 2.0]
    for p in points:
        assert p.model == "digits" and p.batch_images == 1
        assert p.throughput_infer_s > 0 and p.requests_per_s == p.throughput_infer_s
        assert 0 < p.latency_p50_us <= p.latency_p90_us <= p.latency_p95_us <= p.latency_p99_us
        assert p.breakdown.server_compute_infer_us > 0
        assert min(p.breakdown.client_send_us, p.breakdown.network_server_send_recv_us,
                   p.breakdown.server_queue_us, p.breakdown.server_compute_input_us,
                   p.breakdown.server_compute_output_us, p.breakdown.client_recv_us) >= 0
        assert p.server is not None and p.server.inference_count > 0
        assert p.server.request_latency_us > 0
        assert p.client_server_ratio > 0
    sent = json.loads((tmp_path / "light.input.json").read_text())["data"]
    assert len(sent) == 32
    raw = base64.b64decode(sent[5]["IMAGE"]["content"]["b64"])
    assert raw == struct.pack("<I", len(workload.images[5])) + workload.images[5]
    assert (tmp_path / "light.csv").read_text().startswith("Concurrency,")
    assert "Composing models" in (tmp_path / "light.log").read_text()


def test_offline_requests_through_system_shared_memory(triton: ServerURLs,
                                                       tmp_path: Path) -> None:
    offline = PerfScenario(name="light_offline", workload=WorkloadName.LIGHT, model="digits",
                           concurrency=(1,), batch_images=16,
                           shared_memory=SharedMemory.SYSTEM, measurement_interval_ms=500,
                           stability_percentage=1000, stability_percentile=50, max_trials=5,
                           timeout_s=120)
    (point,) = run_perf_analyzer(offline, triton.grpc, out_csv=tmp_path / "offline.csv",
                                 input_images=32)
    assert point.batch_images == 16
    assert point.requests_per_s == pytest.approx(point.throughput_infer_s / 16)
    assert point.server is not None
    assert point.server.inference_count == 16 * point.server.execution_count


def test_step_inputs_are_what_each_step_sees(example_repository: Path) -> None:
    workload = load_workload("light", count=8)
    captured = {s.model: s.inputs for s in step_inputs(example_repository, "digits",
                                                       workload.samples())}
    assert list(captured) == ["digits_preprocess", "digits_classifier"]
    assert list(captured["digits_preprocess"]) == ["IMAGE"]
    assert captured["digits_preprocess"]["IMAGE"][3, 0] == workload.images[3]
    assert list(captured["digits_classifier"]) == ["pixels"]
    pixels = captured["digits_classifier"]["pixels"]
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, preprocess(list(workload.images)))
    # the classifier fed these pixels gives the pipeline's answer: nothing runs after it
    session = ort.InferenceSession(str(example_repository / "digits_classifier" / "1" /
                                       "model.onnx"), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {"pixels": pixels})
    expected = ReferencePipeline(example_repository, "digits")(workload.samples())
    np.testing.assert_allclose(expected["PROBABILITIES"], probabilities, rtol=1e-6)


def test_profile_of_the_digits_pipeline_and_each_step(triton: ServerURLs,
                                                      example_repository: Path,
                                                      tmp_path: Path) -> None:
    one_level = PerfScenario(name="profile", workload=WorkloadName.LIGHT, model="digits",
                             concurrency=(1,), measurement_interval_ms=600,
                             stability_percentage=1000, stability_percentile=50, max_trials=5,
                             timeout_s=120)
    profile = profile_pipeline(example_repository, one_level, triton.grpc, out_dir=tmp_path,
                               input_images=16, step_samples=8)
    assert profile.pipeline == "digits"
    assert [p.model for p in profile.ensemble] == ["digits"]
    steps = {p.model: p for p in profile.steps}
    assert list(steps) == ["digits_preprocess", "digits_classifier"]
    for point in steps.values():
        assert point.throughput_infer_s > 0 and point.latency_p99_us >= point.latency_p50_us
        assert point.server is not None and point.server.compute_us > 0
    assert {s.step for s in profile.in_ensemble} == set(steps)
    assert all(s.inference_count > 0 and s.compute_infer_us > 0 for s in profile.in_ensemble)
    images = json.loads((tmp_path / "profile.digits_preprocess.input.json").read_text())
    assert len(images["data"]) == 8 and images["data"][0]["IMAGE"]["shape"] == [1]
    pixels = json.loads((tmp_path / "profile.digits_classifier.input.json").read_text())
    assert len(pixels["data"]) == 8 and pixels["data"][0]["pixels"]["shape"] == [1, 8, 8]
    assert sorted(p.name for p in tmp_path.glob("*.input.json")) == [
        "profile.digits.input.json", "profile.digits_classifier.input.json",
        "profile.digits_preprocess.input.json"]
