"""Benchmark scenario files: the shipped ones load, and bad ones fail naming file and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.benchmarks.errors import BenchmarkError, ScenarioError
from harness.benchmarks.scenarios import (
    BenchConfig,
    LoadMode,
    LoadRange,
    MeasurementMode,
    Protocol,
    SharedMemory,
    load_scenarios,
    split_ranges,
)
from harness.benchmarks.workloads import WorkloadName

BENCH_DIR = Path(__file__).resolve().parents[4] / "harness" / "benchmarks"

VALID = """\
version: 1
input_images: 16
divergence_factor: 3
defaults:
  protocol: grpc
  measurement_interval_ms: 700
  max_trials: 4
perf_analyzer:
  - {name: light_online, workload: light, batch_images: 1, concurrency: [1, 2, 4, 8]}
  - name: heavy_offline
    workload: heavy
    batch_images: 16
    concurrency: {start: 1, end: 7, step: 3}
    measurement_interval_ms: 2500
    shared_memory: system
  - name: preprocess_rate
    workload: light
    model: digits_preprocess
    protocol: http
    request_rate: [50, 100.5]
    measurement_mode: count_windows
    measurement_request_count: 40
    stability_percentile: 50
load_test: {duration_s: 3, concurrency: [1, 2], batch_images: [1, 16]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenarios.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> BenchConfig:
    return load_scenarios(write(tmp_path, text))


def test_a_valid_file_loads_with_defaults_and_overrides(tmp_path: Path) -> None:
    config = load(tmp_path, VALID)
    assert config.input_images == 16 and config.divergence_factor == 3.0
    light, heavy, rate = config.perf
    assert light.workload is WorkloadName.LIGHT and light.model == "digits"
    assert light.concurrency == (1, 2, 4, 8) and light.request_rate is None
    assert light.load_mode is LoadMode.CONCURRENCY
    assert light.measurement_interval_ms == 700 and light.max_trials == 4  # from defaults
    assert light.shared_memory is SharedMemory.NONE and light.stability_percentile is None
    assert heavy.model == "resnet" and heavy.batch_images == 16
    assert heavy.concurrency == (1, 4, 7)  # {start, end, step}
    assert heavy.measurement_interval_ms == 2500  # its own value wins over defaults
    assert heavy.shared_memory is SharedMemory.SYSTEM
    assert rate.model == "digits_preprocess" and rate.protocol is Protocol.HTTP
    assert rate.request_rate == (50.0, 100.5) and rate.load_mode is LoadMode.REQUEST_RATE
    assert rate.measurement_mode is MeasurementMode.COUNT_WINDOWS
    assert rate.measurement_request_count == 40 and rate.stability_percentile == 50
    assert config.load_test.duration_s == 3.0 and config.load_test.warmup_s == 0.0
    assert config.load_test.concurrency == (1, 2)
    assert config.load_test.batch_images == (1, 16)
    assert config.scenario("heavy_offline") is heavy


def test_unknown_scenario_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no scenario named 'nope'; have light_online"):
        load(tmp_path, VALID).scenario("nope")


@pytest.mark.parametrize("name", ["scenarios.yaml", "scenarios_smoke.yaml"])
def test_the_shipped_files_cover_both_workloads_online_and_offline(name: str) -> None:
    config = load_scenarios(BENCH_DIR / name)
    shapes = {(s.workload, s.batch_images) for s in config.perf}
    online = {(WorkloadName.LIGHT, 1), (WorkloadName.HEAVY, 1)}
    offline = {(WorkloadName.LIGHT, 16), (WorkloadName.HEAVY, 16)}
    new = {(WorkloadName.DETECTION, 1), (WorkloadName.EMBEDDINGS, 1)}
    # the smoke run keeps perf_analyzer to the online shape of light and heavy (its time must
    # not grow; tests/integration/test_bench_new_workloads.py covers the new ensembles)
    assert shapes == (online if "smoke" in name else online | offline | new)
    models = {"digits", "resnet"} | (set() if "smoke" in name else {"detection", "embeddings"})
    assert {s.model for s in config.perf} == models
    assert all(s.protocol is Protocol.GRPC for s in config.perf)
    assert config.load_test.batch_images == (1, 16)


def test_the_new_pipelines_run_online_at_concurrency_1_to_8() -> None:
    full = load_scenarios(BENCH_DIR / "scenarios.yaml")
    for name, pipeline in (("detection_online", "detection"),
                           ("embeddings_online", "embeddings")):
        scenario = full.scenario(name)
        assert scenario.model == pipeline and scenario.batch_images == 1
        assert scenario.concurrency == (1, 2, 4, 8)
        assert scenario.protocol is Protocol.GRPC


def test_the_smoke_file_is_short() -> None:
    smoke = load_scenarios(BENCH_DIR / "scenarios_smoke.yaml")
    full = load_scenarios(BENCH_DIR / "scenarios.yaml")
    for scenario in smoke.perf:
        assert scenario.concurrency == (2,)
        assert scenario.measurement_interval_ms <= 1200
        worst_case_s = (len(scenario.load_values) * scenario.max_trials
                        * scenario.measurement_interval_ms * 1.2 / 1000)
        assert worst_case_s <= 15, scenario.name
    assert max(s.concurrency or (0,) for s in full.perf) == (1, 2, 4, 8)
    assert smoke.load_test.concurrency == (8,)  # the dynamic-batching gain is defined at >= 8
    assert smoke.load_test.duration_s <= 2


@pytest.mark.parametrize(("values", "expected"), [
    ((1.0, 2.0, 4.0, 8.0), ["1:2:1", "4:8:4"]),
    ((1.0,), ["1:1:1"]),
    ((1.0, 2.0, 3.0), ["1:3:1"]),
    ((1.0, 3.0, 4.0), ["1:3:2", "4:4:1"]),
    ((2.5, 5.0, 7.5), ["2.5:7.5:2.5"]),
])
def test_load_values_split_into_evenly_spaced_sweeps(values: tuple[float, ...],
                                                     expected: list[str]) -> None:
    ranges = split_ranges(values)
    assert [r.flag_value() for r in ranges] == expected
    assert tuple(v for r in ranges for v in r.values()) == values


def test_load_range_values_include_the_end() -> None:
    assert LoadRange(start=4, end=8, step=4).values() == (4.0, 8.0)
    assert LoadRange(start=1, end=8, step=3).values() == (1.0, 4.0, 7.0)


BAD_CASES = [
    ("version: 2\n", "version", "must be 1"),
    (VALID.replace("input_images: 16", "input_images: 0"), "input_images", "must be >= 1"),
    (VALID.replace("divergence_factor: 3", "divergence_factor: 1"), "divergence_factor",
     "must be > 1"),
    (VALID + "extra: 1\n", "scenarios.yaml", "unknown field(s) extra"),
    (VALID.replace("max_trials: 4", "max_trials: 2"), "defaults.max_trials", "must be >= 3"),
    (VALID.replace("concurrency: [1, 2, 4, 8]", "concurrency: [1, 4, 2]"),
     "perf_analyzer[0].concurrency", "strictly increasing"),
    (VALID.replace("concurrency: [1, 2, 4, 8]", "concurrency: [1, 1.5]"),
     "perf_analyzer[0].concurrency", "must hold integers"),
    (VALID.replace("concurrency: [1, 2, 4, 8]", "concurrency: [0, 1]"),
     "perf_analyzer[0].concurrency[0]", "must be > 0"),
    (VALID.replace("concurrency: [1, 2, 4, 8]", "concurrency: [1], request_rate: 5"),
     "perf_analyzer[0]", "exactly one of concurrency or request_rate"),
    (VALID.replace("batch_images: 1,", "batch_images: 1, burst: 3,"), "perf_analyzer[0]",
     "unknown field(s) burst"),
    (VALID.replace("workload: light, batch", "workload: medium, batch"),
     "perf_analyzer[0].workload", "must be one of light, heavy"),
    (VALID.replace("protocol: http", "protocol: websocket"), "perf_analyzer[2].protocol",
     "must be one of http, grpc"),
    (VALID.replace("shared_memory: system", "shared_memory: cuda"),
     "perf_analyzer[1].shared_memory", "must be one of none, system"),
    (VALID.replace("stability_percentile: 50", "stability_percentile: 100"),
     "perf_analyzer[2].stability_percentile", "between 1 and 99"),
    (VALID.replace("model: digits_preprocess", "model: ../etc"), "perf_analyzer[2].model",
     "not a valid Triton model name"),
    (VALID.replace("name: heavy_offline", "name: light_online"), "perf_analyzer[1].name",
     "duplicate scenario name"),
    (VALID.replace("measurement_interval_ms: 2500", "measurement_interval_ms: 10"),
     "perf_analyzer[1].measurement_interval_ms", "must be >= 50"),
    (VALID.replace("end: 7", "end: 0"), "perf_analyzer[1].concurrency.end", "must be >= 1"),
    (VALID.split("load_test", maxsplit=1)[0], "load_test", "is required"),
    (VALID.replace("duration_s: 3", "duration_s: -1"), "load_test.duration_s", "must be > 0"),
    ("version: 1\nperf_analyzer: []\n", "perf_analyzer", "is required"),
]


@pytest.mark.parametrize(("text", "field", "problem"), BAD_CASES)
def test_invalid_files_name_the_file_and_the_field(tmp_path: Path, text: str, field: str,
                                                   problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenarios(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert field in message and problem in message
    assert isinstance(caught.value, BenchmarkError)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenarios(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match="is not valid YAML"):
        load(tmp_path, "version: [1\n")
