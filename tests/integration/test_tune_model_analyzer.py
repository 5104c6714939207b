"""`tritonkit tune --engine model-analyzer`: the real Model Analyzer on digits_classifier.

A tiny grid (instance count 2 and 3, queue delay 0, one thread) at concurrency 1 and 2 with
1 s windows: the spec's config and two variants, six levels, about a minute. One instance is
left out of the grid on purpose: on this 2-core machine its dynamic batcher stalls ~500 ms
(models.yaml), and a level that never stabilizes is left out by Model Analyzer, which would
make the trial count depend on the machine's load. Skipped only when Model Analyzer is not
installed (`make model-analyzer`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from tritonkit.errors import TuningError
from tritonkit.server import find_tritonserver
from tritonkit.server.process_tree import find_processes
from tritonkit.spec import Target, load_overlay
from tritonkit.tuning import (
    Knob,
    SweepSettings,
    TuningRequest,
    find_model_analyzer,
    tune_and_write,
    tune_model_with_model_analyzer,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "digits_classifier"
GRID = {Knob.INSTANCE_COUNT: (2, 3), Knob.MAX_QUEUE_DELAY_US: (0,),
        Knob.INTRA_OP_THREADS: (1,)}


@pytest.fixture(scope="module")
def model_analyzer() -> Path:
    try:
        return find_model_analyzer()
    except TuningError as e:
        pytest.skip(f"Model Analyzer is not installed: {e}")


def test_model_analyzer_profiles_one_model_on_a_grid(
        model_analyzer: Path, example_repository: Path, tmp_path: Path) -> None:
    del example_repository  # built for its artifacts (the digits model, trained if missing)
    pipeline_inputs = tmp_path / "pipeline_inputs.json"  # not used: the model runs alone
    pipeline_inputs.write_text(json.dumps({"data": []}))
    request = TuningRequest(
        spec_path=REPO_ROOT / "models.yaml", pipeline="digits", input_data=pipeline_inputs,
        budget_p99_ms=50, work_dir=tmp_path / "work", concurrencies=(1, 2),
        # every 1 s window is accepted: the test checks the mechanics, not this host's speed
        sweep=SweepSettings(measurement_interval_ms=1000, max_trials=5, stability_percentage=999))
    seen: list[int] = []
    tune = functools.partial(tune_model_with_model_analyzer, model=MODEL,
                             model_analyzer=model_analyzer, grid=GRID, timeout_s=300)
    result, report = tune_and_write(request, overlay_path=tmp_path / "local.yaml",
                                    report_dir=tmp_path / "report", tune=tune,
                                    on_trial=lambda t: seen.append(t.number))

    trials = result.search.trials
    assert seen == [t.number for t in trials]
    assert len(trials) == 3, [t.describe() for t in trials]  # the spec's config + the grid
    start = result.search.start
    assert start.knob is None and start.settings[MODEL][Knob.INSTANCE_COUNT] == 2
    for trial in trials:
        assert [p.concurrency for p in trial.points] == [1, 2], trial.describe()
        assert all(p.throughput > 0 and p.p99_ms > 0 for p in trial.points)
    assert {t.settings[MODEL][Knob.INSTANCE_COUNT] for t in trials[1:]} == {2, 3}
    assert all(t.settings[MODEL][Knob.MAX_QUEUE_DELAY_US] == 0 for t in trials[1:])
    chosen = result.search.chosen
    assert chosen.kept and sum(t.kept for t in trials) == 1

    entry = load_overlay(tmp_path / "local.yaml").models[MODEL]
    grid_settings = {(count, 0, 1) for count in GRID[Knob.INSTANCE_COUNT]} | {(2, 200, 1)}
    assert (entry["instance_group"]["count"], entry["dynamic_batching"]["max_queue_delay_us"],
            entry["onnxruntime"]["intra_op_threads"]) in grid_settings
    assert entry["dynamic_batching"]["preferred_batch_sizes"] == [16, 64]  # the spec's
    assert load_overlay(tmp_path / "local.yaml").target is Target.LOCAL
    assert report.is_file() and "Model Analyzer" in report.read_text()

    ma_dir = request.work_dir / "model-analyzer"
    assert (ma_dir / "export" / "results" / "metrics-model-inference.csv").is_file()
    server = find_tritonserver().server.resolve()
    assert not find_processes(executables={server},
                              cmdline_part=str(ma_dir / "output_repository").encode())
