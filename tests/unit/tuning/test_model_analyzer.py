"""The Model Analyzer engine without Model Analyzer: its YAML, its CSV, its process hygiene.

`data/metrics-model-inference.csv` is real output of Model Analyzer 1.58.0 on
digits_classifier (automatic brute search on the 2-core dev machine): note the level
measured twice (config_0 at concurrency 4), which Model Analyzer re-measured for its reports.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml

from tritonkit.cli import _tune_engine, main, parser
from tritonkit.errors import TuningError
from tritonkit.spec import Target, load_spec
from tritonkit.tuning import (
    Knob,
    ModelSpace,
    SweepPoint,
    TuningResult,
    overlay_for,
    search_space,
    tune_model_with_model_analyzer,
    tune_pipeline,
    write_tuning_report,
)
from tritonkit.tuning import model_analyzer as ma
from tritonkit.tuning import model_analyzer_setup as mas

DATA = Path(__file__).parent / "data"
EXAMPLE_SPEC = Path(__file__).parents[3] / "models.yaml"
MODEL = "digits_classifier"

CONFIG = """name: "digits_classifier"
max_batch_size: 64
input {{ name: "pixels" data_type: TYPE_FP32 dims: [1, 8, 8] }}
output {{ name: "probabilities" data_type: TYPE_FP32 dims: 10 }}
instance_group {{ count: {count} kind: KIND_CPU }}
dynamic_batching {{
  preferred_batch_size: [16, 64]
  max_queue_delay_microseconds: {delay}
}}
parameters {{ key: "intra_op_thread_count" value {{ string_value: "{threads}" }} }}
backend: "onnxruntime"
"""

SPACE = ModelSpace(
    model=MODEL,
    start={Knob.INSTANCE_COUNT: 2, Knob.INTRA_OP_THREADS: 1, Knob.MAX_QUEUE_DELAY_US: 200,
           Knob.PREFERRED_BATCH_SIZES: (16, 64)},
    choices={Knob.INSTANCE_COUNT: (1, 2, 3), Knob.INTRA_OP_THREADS: (1, 2),
             Knob.MAX_QUEUE_DELAY_US: (0, 100, 500, 2000),
             Knob.PREFERRED_BATCH_SIZES: ((), (16, 64))})


def write_variant(repository: Path, variant: str, *, count: int, delay: int = 200,
                  threads: int = 1) -> None:
    folder = repository / variant
    folder.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(CONFIG.format(count=count, delay=delay,
                                                       threads=threads))


# --------------------------------------------------------------------------- the grid and YAML


def test_grid_comes_from_the_project_space_and_overrides_replace_a_knob() -> None:
    spaces = {s.model: s for s in search_space(load_spec(EXAMPLE_SPEC), "digits", cores=2)}
    values = mas.model_grid(spaces[MODEL])
    assert values == {Knob.INSTANCE_COUNT: (1, 2, 3), Knob.INTRA_OP_THREADS: (1, 2),
                      Knob.MAX_QUEUE_DELAY_US: (0, 100, 500, 2000)}
    assert mas.grid_size(values) == 24
    small = mas.model_grid(spaces[MODEL], {Knob.INSTANCE_COUNT: [2, 1, 2],
                                           Knob.MAX_QUEUE_DELAY_US: [0]})
    assert small == {Knob.INSTANCE_COUNT: (2, 1), Knob.INTRA_OP_THREADS: (1, 2),
                     Knob.MAX_QUEUE_DELAY_US: (0,)}


@pytest.mark.parametrize(("grid", "message"), [
    ({Knob.PREFERRED_BATCH_SIZES: [8]}, "searches instance_count"),
    ({Knob.INSTANCE_COUNT: [0, 1]}, "must be >= 1"),
    ({Knob.MAX_QUEUE_DELAY_US: [-1]}, "must be >= 0"),
    ({Knob.INTRA_OP_THREADS: []}, "must be >= 1"),
])
def test_grid_overrides_are_checked(grid: dict[Knob, list[int]], message: str) -> None:
    with pytest.raises(TuningError, match=message):
        mas.model_grid(SPACE, grid)


def test_a_knob_the_space_does_not_search_cannot_be_gridded() -> None:
    space = ModelSpace(model="pre", start={Knob.INSTANCE_COUNT: 1},
                       choices={Knob.INSTANCE_COUNT: (1, 2)},
                       fixed={Knob.MAX_QUEUE_DELAY_US: "the spec turns dynamic batching off"})
    with pytest.raises(TuningError, match="dynamic batching off"):
        mas.model_grid(space, {Knob.MAX_QUEUE_DELAY_US: [0]})


def setup_for(tmp_path: Path, input_data: Path | None) -> mas.AnalyzerSetup:
    return mas.AnalyzerSetup(
        repository=tmp_path / "repository", work_dir=tmp_path / "ma",
        server_wrapper=tmp_path / "ma/bin/tritonserver",
        perf_analyzer_wrapper=tmp_path / "ma/bin/perf_analyzer",
        backend_dir=tmp_path / "ma/backends", ports=(18100, 18101, 18102),
        concurrencies=(1, 2, 4), measurement_interval_ms=1500, max_trials=5,
        input_data=input_data)


def test_yaml_is_a_manual_brute_search_of_one_model(tmp_path: Path) -> None:
    values = mas.model_grid(SPACE, {Knob.INSTANCE_COUNT: [1, 2]})
    params = mas.model_config_parameters(values, instance_kind="KIND_CPU")
    setup = setup_for(tmp_path, tmp_path / "input.json")
    document = yaml.safe_load(yaml.safe_dump(mas.analyzer_config(setup, MODEL, params)))

    assert document["run_config_search_mode"] == "brute"
    assert document["run_config_search_disable"] is True
    assert document["triton_launch_mode"] == "local"
    assert document["model_repository"] == str(tmp_path / "repository")
    assert document["output_model_repository_path"] == str(setup.output_repository)
    assert document["override_output_model_repository"] is True
    assert document["checkpoint_directory"] == str(setup.export_path / "checkpoints")
    assert document["triton_server_path"] == str(setup.server_wrapper)
    assert document["perf_analyzer_path"] == str(setup.perf_analyzer_wrapper)
    assert document["triton_http_endpoint"] == "127.0.0.1:18100"
    assert document["triton_grpc_endpoint"] == "127.0.0.1:18101"
    assert document["triton_metrics_url"] == "http://127.0.0.1:18102/metrics"
    flags = document["triton_server_flags"]
    assert flags["backend_directory"] == str(tmp_path / "ma/backends")
    assert (flags["http_port"], flags["grpc_port"], flags["metrics_port"]) == (
        18100, 18101, 18102)
    assert document["perf_analyzer_flags"] == {
        "measurement-mode": "time_windows", "measurement-interval": 1500,
        "stability-percentage": 50.0, "max-trials": 5,
        "input-data": str(tmp_path / "input.json")}
    assert document["skip_detailed_reports"] is True
    assert "skip_summary_reports" not in document  # the summary step writes the CSV
    model = document["profile_models"][MODEL]
    assert model["cpu_only"] is True
    assert model["parameters"] == {"concurrency": [1, 2, 4], "batch_sizes": [1]}
    assert model["model_config_parameters"] == {
        "instance_group": [{"kind": "KIND_CPU", "count": [1, 2]}],
        "dynamic_batching": {"max_queue_delay_microseconds": [0, 100, 500, 2000]},
        "parameters": {"intra_op_thread_count": {"string_value": ["1", "2"]}},
    }


def test_random_data_when_there_are_no_samples(tmp_path: Path) -> None:
    document = mas.analyzer_config(setup_for(tmp_path, None), MODEL, {})
    assert "input-data" not in document["perf_analyzer_flags"]


def test_model_inputs_come_from_the_warmup_samples(tmp_path: Path) -> None:
    spec = load_spec(EXAMPLE_SPEC)
    model = next(m for m in spec.models if m.name == MODEL)
    if model.warmup is None or not model.warmup.samples.is_file():
        pytest.skip("the digits artifacts are not built (make models)")
    path = mas.model_input_data(model, tmp_path / "input.json", rows=8)
    assert path is not None
    rows = json.loads(path.read_text())["data"]
    assert len(rows) == 8 and rows[0]["pixels"]["shape"] == [1, 8, 8]


# --------------------------------------------------------------------------- the CSV


def test_parses_the_real_csv_per_variant() -> None:
    points = ma.parse_inference_csv((DATA / "metrics-model-inference.csv").read_text(),
                                    model=MODEL)
    assert sorted(points) == [f"{MODEL}_config_0", f"{MODEL}_config_1",
                              f"{MODEL}_config_default"]
    assert [p.concurrency for p in points[f"{MODEL}_config_1"]] == [1, 2, 4]
    best = points[f"{MODEL}_config_1"][-1]
    assert (best.throughput, best.p99_ms) == (3235.4, 4.9)
    assert math.isnan(best.p50_ms)  # Model Analyzer reports no p50
    again = points[f"{MODEL}_config_0"]  # concurrency 4 twice: the first row is kept
    assert [(p.concurrency, p.throughput) for p in again] == [(1, 184.6), (2, 809.3),
                                                             (4, 1734.8)]
    assert ma.parse_inference_csv((DATA / "metrics-model-inference.csv").read_text(),
                                  model="other") == {}


def test_csv_columns_are_found_by_name_and_other_batches_skipped() -> None:
    text = ("p99 Latency (ms),Throughput (infer/sec),Concurrency,Batch,Model Config Path,Model\n"
            "3.0,100.0,2,1,m_config_0,m\n"
            "9.0,900.0,2,8,m_config_0,m\n"
            "\n")
    (point,) = ma.parse_inference_csv(text, model="m")["m_config_0"]
    assert (point.concurrency, point.throughput, point.p99_ms) == (2, 100.0, 3.0)


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("Model,Concurrency,Throughput (infer/sec)\nm,1,2\n", "p99 latency"),
    ("Model,Model Config Path,Concurrency,Throughput (infer/sec),p99 Latency (ms)\n"
     "m,m_config_0,one,2,3\n", "line 2 is malformed"),
])
def test_bad_csv_is_a_tuning_error(text: str, message: str) -> None:
    with pytest.raises(TuningError, match=message):
        ma.parse_inference_csv(text, model="m")


# --------------------------------------------------------------------------- trials


def test_variant_settings_are_read_from_the_generated_configs(tmp_path: Path) -> None:
    write_variant(tmp_path, "v", count=3, delay=500, threads=2)
    assert ma.variant_knobs(tmp_path / "v" / "config.pbtxt") == {
        Knob.INSTANCE_COUNT: 3, Knob.INTRA_OP_THREADS: 2, Knob.MAX_QUEUE_DELAY_US: 500,
        Knob.PREFERRED_BATCH_SIZES: (16, 64)}


def real_run(tmp_path: Path) -> dict[str, list[SweepPoint]]:
    """The real CSV with the configs of that run: default 2 instances, config_0 one, config_1
    two (Model Analyzer's automatic search re-created the default as config_1)."""
    write_variant(tmp_path, f"{MODEL}_config_default", count=2)
    write_variant(tmp_path, f"{MODEL}_config_0", count=1)
    write_variant(tmp_path, f"{MODEL}_config_1", count=2)
    return ma.parse_inference_csv((DATA / "metrics-model-inference.csv").read_text(),
                                  model=MODEL)


def test_trials_start_with_the_default_and_the_best_in_budget_is_chosen(
        tmp_path: Path) -> None:
    result = ma.trials_from_results(real_run(tmp_path), tmp_path, SPACE, budget_p99_ms=15,
                                    min_gain=0.05)
    start, one, two = result.trials
    assert result.start is start and start.knob is None and start.model == ""
    assert start.describe() == "start (the spec's settings)"
    assert start.settings == {MODEL: SPACE.start}
    assert start.score.throughput == 1561.3 and start.score.concurrency == 4
    assert one.describe() == f"instance_count=1 (Model Analyzer {MODEL}_config_0)"
    assert one.settings[MODEL][Knob.INSTANCE_COUNT] == 1 and one.model == MODEL
    assert two.describe() == f"the spec's settings (Model Analyzer {MODEL}_config_1)"
    assert result.chosen is two and two.kept and not start.kept and not one.kept
    assert [t.number for t in result.trials] == [0, 1, 2]
    assert result.changes() == []  # the same settings measured twice: noise, 2x apart


def test_a_tight_budget_changes_the_choice(tmp_path: Path) -> None:
    points = real_run(tmp_path)
    tight = ma.trials_from_results(points, tmp_path, SPACE, budget_p99_ms=5.0, min_gain=0.05)
    assert not tight.start.score.in_budget  # its lowest p99 is 6.8 ms
    assert tight.chosen.number == 2 and tight.chosen.score.p99_ms == 4.9


def test_the_start_stays_unless_beaten_by_the_minimum_gain(tmp_path: Path) -> None:
    write_variant(tmp_path, f"{MODEL}_config_default", count=2)
    write_variant(tmp_path, f"{MODEL}_config_0", count=3)

    def level(rate: float) -> list[SweepPoint]:
        return [SweepPoint(concurrency=1, throughput=rate, p50_ms=math.nan, p99_ms=2.0)]

    close = {f"{MODEL}_config_default": level(1000.0), f"{MODEL}_config_0": level(1040.0)}
    result = ma.trials_from_results(close, tmp_path, SPACE, budget_p99_ms=5, min_gain=0.05)
    assert result.chosen is result.start and result.start.kept
    far = {f"{MODEL}_config_default": level(1000.0), f"{MODEL}_config_0": level(1100.0)}
    result = ma.trials_from_results(far, tmp_path, SPACE, budget_p99_ms=5, min_gain=0.05)
    assert result.chosen.number == 1
    assert result.changes() == [(MODEL, Knob.INSTANCE_COUNT, 2, 3)]


def test_unmeasured_variants_are_reported_and_left_out(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    points = real_run(tmp_path)
    write_variant(tmp_path, f"{MODEL}_config_2", count=1, delay=0)
    with caplog.at_level(logging.WARNING):
        result = ma.trials_from_results(points, tmp_path, SPACE, budget_p99_ms=15,
                                        min_gain=0.05)
    assert len(result.trials) == 3
    assert f"no level of {MODEL}_config_2 (instance_count=1, max_queue_delay_us=0" in \
        caplog.text


def test_no_measured_start_is_an_error(tmp_path: Path) -> None:
    points = real_run(tmp_path)
    del points[f"{MODEL}_config_default"]
    with pytest.raises(TuningError, match="no level of digits_classifier_config_default"):
        ma.trials_from_results(points, tmp_path, SPACE, budget_p99_ms=15, min_gain=0.05)


def test_the_report_and_overlay_take_a_model_analyzer_result(tmp_path: Path) -> None:
    spec = load_spec(EXAMPLE_SPEC)
    search = ma.trials_from_results(real_run(tmp_path / "out"), tmp_path / "out", SPACE,
                                    budget_p99_ms=15, min_gain=0.05)
    overlay = overlay_for(search.chosen.settings, spec, target=Target.LOCAL, base=None,
                          source=tmp_path / "o.yaml")
    result = TuningResult(pipeline=f"digits/{MODEL}", budget_p99_ms=15, spaces=(SPACE,),
                          search=search, overlay=overlay)
    report = write_tuning_report(result, tmp_path / "report")
    text = report.read_text()
    assert f"Model Analyzer {MODEL}_config_1" in text and "| 2 |" in text
    rows = (tmp_path / "report" / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 10 - 1  # the header, 9 levels (one measured twice is kept once)
    assert overlay.models[MODEL] == {
        "instance_group": {"count": 2}, "onnxruntime": {"intra_op_threads": 1},
        "dynamic_batching": {"max_queue_delay_us": 200, "preferred_batch_sizes": [16, 64]}}


def test_trials_csv_leaves_a_missing_p50_empty(tmp_path: Path) -> None:
    """Model Analyzer reports no p50 (NaN): trials.csv shows an empty cell, not `nan`."""
    write_variant(tmp_path / "out", f"{MODEL}_config_default", count=2)
    write_variant(tmp_path / "out", f"{MODEL}_config_0", count=3)
    points = {
        f"{MODEL}_config_default": [SweepPoint(concurrency=1, throughput=1000.0,
                                               p50_ms=math.nan, p99_ms=2.0)],
        f"{MODEL}_config_0": [SweepPoint(concurrency=1, throughput=1100.0, p50_ms=1.23456,
                                         p99_ms=2.5)],
    }
    search = ma.trials_from_results(points, tmp_path / "out", SPACE, budget_p99_ms=5,
                                    min_gain=0.05)
    overlay = overlay_for(search.chosen.settings, load_spec(EXAMPLE_SPEC),
                          target=Target.LOCAL, base=None, source=tmp_path / "o.yaml")
    result = TuningResult(pipeline=f"digits/{MODEL}", budget_p99_ms=5, spaces=(SPACE,),
                          search=search, overlay=overlay)
    write_tuning_report(result, tmp_path / "report")
    with (tmp_path / "report" / "trials.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["p50_ms"], r["p99_ms"]) for r in rows] == [
        ("0", "", "2.0"), ("1", "1.235", "2.5")]
    assert "nan" not in (tmp_path / "report" / "trials.csv").read_text().lower()


# --------------------------------------------------------------------------- finding and running


def test_find_model_analyzer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bin" / "model-analyzer"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv(mas.ENV_VAR, str(tool))
    assert mas.find_model_analyzer() == tool
    monkeypatch.setenv(mas.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(TuningError, match="make model-analyzer"):
        mas.find_model_analyzer()
    monkeypatch.delenv(mas.ENV_VAR)
    monkeypatch.setenv("PATH", str(tool.parent))
    assert mas.find_model_analyzer() == tool
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TuningError, match="make model-analyzer"):
        mas.find_model_analyzer()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.mark.parametrize("hangs", [True, False])
def test_what_model_analyzer_started_is_killed(tmp_path: Path, hangs: bool) -> None:
    """Model Analyzer starts tritonserver and perf_analyzer in sessions of their own: they
    are found by the environment marker and killed, on a timeout and on a normal exit."""
    sleep = Path(shutil.which("sleep") or "/bin/sleep").resolve()
    fake = tmp_path / "model-analyzer"
    fake.write_text("#!/bin/bash\n"
                    "setsid sleep 300 </dev/null >/dev/null 2>&1 &\n"
                    f"echo $! > {tmp_path}/orphan.pid\n"
                    + ("exec sleep 300\n" if hangs else "sleep 0.5\n"))
    fake.chmod(0o755)
    started = time.monotonic()
    if hangs:
        with pytest.raises(TuningError, match="ran past"):
            ma.run_model_analyzer(fake, {"a": 1}, tmp_path, leftovers={sleep}, timeout_s=1.5)
    else:
        ma.run_model_analyzer(fake, {"a": 1}, tmp_path, leftovers={sleep}, timeout_s=30)
    orphan = int((tmp_path / "orphan.pid").read_text())
    try:
        assert not alive(orphan), "a process Model Analyzer started survived"
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)
    assert time.monotonic() - started < 15
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"a": 1}


# --------------------------------------------------------------------------- the CLI


def tune_args(*extra: str) -> list[str]:
    return ["tune", "--pipeline", "digits", "--budget-p99-ms", "15", "--report", "r", *extra]


def test_cli_picks_the_engine() -> None:
    assert _tune_engine(parser().parse_args(tune_args())) is tune_pipeline
    engine = _tune_engine(parser().parse_args(tune_args(
        "--engine", "model-analyzer", "--model", MODEL, "--grid", "instance_count=1,2",
        "--grid", "max_queue_delay_us=0")))
    assert engine.func is tune_model_with_model_analyzer  # type: ignore[attr-defined]
    assert engine.keywords == {  # type: ignore[attr-defined]
        "model": MODEL, "grid": {Knob.INSTANCE_COUNT: (1, 2), Knob.MAX_QUEUE_DELAY_US: (0,)}}


@pytest.mark.parametrize(("extra", "message"), [
    (("--engine", "model-analyzer"), "give --model"),
    (("--model", MODEL), "options of --engine model-analyzer"),
    (("--engine", "model-analyzer", "--model", MODEL, "--grid", "threads=1"), "KNOB=INT"),
    (("--engine", "model-analyzer", "--model", MODEL, "--grid", "instance_count=a"),
     "KNOB=INT"),
])
def test_cli_refuses_inconsistent_engine_options(
        extra: tuple[str, ...], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "in.json"
    data.write_text('{"data": []}')
    assert main(tune_args("--input-data", str(data), "--work-dir", str(tmp_path / "w"),
                          "--overlay", str(tmp_path / "o.yaml"), *extra)) == 1
    assert message in capsys.readouterr().err
