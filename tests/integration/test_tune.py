"""`tritonkit tune` on the real local Triton with real perf_analyzer: the digits pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.benchmarks.workloads import load_workload
from tritonkit.build.builder import build_repository
from tritonkit.repository import read_config
from tritonkit.server import find_orphans
from tritonkit.spec import Target, load_overlay, load_spec
from tritonkit.tuning import Knob, SweepSettings, TuningRequest, tune_and_write, write_input_data

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_tune_measures_candidates_and_writes_an_overlay_that_builds_the_choice(
        example_repository: Path, tmp_path: Path) -> None:
    images = load_workload("light", count=16).images
    input_data = write_input_data({"IMAGE": np.array([[b] for b in images], dtype=object)},
                                  tmp_path / "input.json")
    request = TuningRequest(
        spec_path=REPO_ROOT / "models.yaml", pipeline="digits", input_data=input_data,
        budget_p99_ms=1000.0, work_dir=tmp_path / "work", concurrencies=(1, 4),
        knobs=frozenset({Knob.INSTANCE_COUNT}),
        # perf_analyzer accepts every 1 s window (the test checks the mechanics, not speed)
        sweep=SweepSettings(measurement_interval_ms=1000, stability_percentage=999, max_trials=3))
    seen = []
    result, report = tune_and_write(request, overlay_path=tmp_path / "local.yaml",
                                    report_dir=tmp_path / "report", on_trial=seen.append)
    # start, preprocess 1 and 3 instances, classifier 1 and 3 (2 cores: up to 3), and, when a
    # change won, the start and the choice measured again
    assert [t.describe() for t in result.search.trials[:5]] == [
        "start (the spec's settings)", "digits_preprocess.instance_count = 1",
        "digits_preprocess.instance_count = 3", "digits_classifier.instance_count = 1",
        "digits_classifier.instance_count = 3"]
    assert len(seen) == len(result.search.trials) in (5, 7)
    for trial in result.search.trials:
        assert {p.concurrency for p in trial.points} <= {1, 4}
        assert all(p.throughput > 0 and p.p99_ms >= p.p50_ms > 0 for p in trial.points)
    assert sum(len(t.points) for t in result.search.trials) >= len(result.search.trials)
    # the overlay builds exactly the chosen settings
    overlay = load_overlay(tmp_path / "local.yaml")
    assert overlay.target is Target.LOCAL
    tuned = build_repository(load_spec(REPO_ROOT / "models.yaml", overlay=overlay),
                             target=Target.LOCAL, out=tmp_path / "tuned", remember=False)
    for model, knobs in result.search.chosen.settings.items():
        config = read_config(tuned.out / model / "config.pbtxt")
        assert config.instance_group[0].count == knobs[Knob.INSTANCE_COUNT]
    text = report.read_text()
    assert "# Tuning `digits`" in text and "## Trials" in text
    assert "digits_preprocess.max_queue_delay_us: the BYTES batch guard" in text
    assert (tmp_path / "report" / "trials.csv").read_text().count("\n") > 5
    assert sorted(p.name for p in (tmp_path / "report" / "plots").iterdir()) == [
        "digits_classifier.png", "digits_preprocess.png"]
    assert not find_orphans(model_repository=tmp_path / "work" / "repository")  # all stopped
    # the session's repository was not touched: tuning never edits generated configs
    assert read_config(example_repository / "digits_classifier" / "config.pbtxt") \
        .instance_group[0].count == 2
