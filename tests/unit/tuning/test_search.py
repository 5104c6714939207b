"""The coordinate search over serving knobs, on a deterministic pipeline model of throughput."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tritonkit.spec import Target, load_spec, parse_overlay
from tritonkit.tuning import (
    Knob,
    ModelSpace,
    SweepPoint,
    coordinate_search,
    overlay_for,
    pareto_front,
    score,
    search_space,
)
from tritonkit.tuning.search import Settings

EXAMPLE_SPEC = Path(__file__).parents[3] / "models.yaml"


def sweep(rate: float, base_ms: float) -> list[SweepPoint]:
    """Throughput saturating at `rate`; p99 growing with concurrency."""
    return [SweepPoint(concurrency=c, throughput=min(rate, c * 1000 / base_ms), p50_ms=base_ms,
                       p99_ms=base_ms * c) for c in (1, 2, 4, 8)]


def test_score_is_the_best_throughput_within_budget() -> None:
    points = sweep(1000.0, 2.0)  # p99: 2, 4, 8, 16 ms; throughput 500, 1000, 1000, 1000
    within = score(points, budget_p99_ms=10.0)
    assert within.in_budget and within.throughput == 1000 and within.concurrency == 2
    none = score(points, budget_p99_ms=1.0)
    assert not none.in_budget and none.p99_ms == 2.0
    assert within.beats(none, 0.05) and not none.beats(within, 0.05)
    assert not score(sweep(1040.0, 2.0), 10.0).beats(within, 0.05)  # +4 %: within the noise
    assert score(sweep(1100.0, 2.0), 10.0).beats(within, 0.05)
    unmeasured = score([], 10.0)  # no level stabilized: loses to anything measured
    assert none.beats(unmeasured, 0.05) and not unmeasured.beats(none, 0.05)


def test_search_keeps_what_helps_and_confirms_the_choice() -> None:
    spaces = [ModelSpace(model="pre", start={Knob.INSTANCE_COUNT: 2},
                         choices={Knob.INSTANCE_COUNT: (1, 2, 3)}),
              ModelSpace(model="net", start={Knob.INSTANCE_COUNT: 2, Knob.MAX_QUEUE_DELAY_US: 200},
                         choices={Knob.INSTANCE_COUNT: (1, 2), Knob.MAX_QUEUE_DELAY_US: (0, 200)},
                         fixed={Knob.PREFERRED_BATCH_SIZES: "test"})]
    seen: list[Settings] = []

    def measure(settings: Settings) -> Sequence[SweepPoint]:
        seen.append(settings)
        rate = 1000.0 * settings["pre"][Knob.INSTANCE_COUNT]  # more preprocess instances help
        rate *= 1.5 if settings["net"][Knob.MAX_QUEUE_DELAY_US] == 0 else 1.0
        return sweep(rate, 0.5)

    result = coordinate_search(spaces, measure, budget_p99_ms=100.0, min_gain=0.05)
    assert result.chosen.settings == {"pre": {Knob.INSTANCE_COUNT: 3},
                                      "net": {Knob.INSTANCE_COUNT: 2, Knob.MAX_QUEUE_DELAY_US: 0}}
    # start, pre=1, pre=3, net count=1, net delay=0, then start and choice measured again
    assert len(result.trials) == 7 and len(seen) == 7
    assert [t.number for t in result.trials if t.kept] == [0, 2, 4]
    assert [t.describe() for t in result.trials[1:3]] == ["pre.instance_count = 1",
                                                          "pre.instance_count = 3"]
    assert result.confirmation[0].settings == result.start.settings
    assert result.changes() == [("pre", Knob.INSTANCE_COUNT, 2, 3),
                                ("net", Knob.MAX_QUEUE_DELAY_US, 200, 0)]


def test_a_choice_that_loses_when_measured_again_falls_back_to_the_start() -> None:
    spaces = [ModelSpace(model="m", start={Knob.INSTANCE_COUNT: 1},
                         choices={Knob.INSTANCE_COUNT: (1, 2)})]
    calls = iter([1000.0, 2000.0, 1000.0, 900.0])  # a lucky window for count=2, then not

    result = coordinate_search(spaces, lambda s: sweep(next(calls), 0.5), budget_p99_ms=100.0)
    assert result.chosen.number == 0 and result.changes() == []
    assert [t.kept for t in result.trials] == [True, False, False, False]


def test_the_example_spaces_respect_the_spec_rules() -> None:
    spec = load_spec(EXAMPLE_SPEC)
    spaces = {s.model: s for s in search_space(spec, "digits", cores=2)}
    assert list(spaces) == ["digits_preprocess", "digits_classifier"]
    step = spaces["digits_preprocess"]
    assert set(step.choices) == {Knob.INSTANCE_COUNT}  # BYTES input: the guard fixes the delay
    assert "batch guard" in step.fixed[Knob.MAX_QUEUE_DELAY_US]
    model = spaces["digits_classifier"]
    assert model.start == {Knob.INSTANCE_COUNT: 2, Knob.INTRA_OP_THREADS: 1,
                           Knob.MAX_QUEUE_DELAY_US: 200, Knob.PREFERRED_BATCH_SIZES: (16, 64)}
    assert model.choices[Knob.INTRA_OP_THREADS] == (1, 2)
    assert model.choices[Knob.INSTANCE_COUNT] == (1, 2, 3)
    assert model.choices[Knob.PREFERRED_BATCH_SIZES] == ((), (16, 64), (2,), (4,), (8,))


def test_an_overlay_from_settings_builds_the_settings(tmp_path: Path) -> None:
    spec = load_spec(EXAMPLE_SPEC)
    settings = {"digits_preprocess": {Knob.INSTANCE_COUNT: 1},
                "digits_classifier": {Knob.INSTANCE_COUNT: 3, Knob.INTRA_OP_THREADS: 2,
                                      Knob.MAX_QUEUE_DELAY_US: 0, Knob.PREFERRED_BATCH_SIZES: ()}}
    base = parse_overlay("version: 1\ntarget: local\nmodels:\n"
                         "  resnet_classifier: {instance_group: {count: 1}}\n", Path("b.yaml"))
    overlay = overlay_for(settings, spec, target=Target.LOCAL, base=base, source=tmp_path / "o")
    tuned = load_spec(EXAMPLE_SPEC, overlay=overlay)
    models = {m.name: m for m in tuned.models}
    classifier = models["digits_classifier"]
    assert classifier.serving.instance_group.count == 3
    assert classifier.onnxruntime.intra_op_threads == 2
    assert classifier.serving.dynamic_batching is not None
    assert classifier.serving.dynamic_batching.max_queue_delay_us == 0
    assert classifier.serving.dynamic_batching.preferred_batch_sizes == ()
    assert models["resnet_classifier"].serving.instance_group.count == 1  # the base stays
    step = {s.name: s for s in tuned.python_steps}["digits_preprocess"]
    assert step.serving.instance_group.count == 1


def test_pareto_front_drops_dominated_points() -> None:
    a = SweepPoint(concurrency=1, throughput=100, p50_ms=1, p99_ms=2)
    b = SweepPoint(concurrency=2, throughput=90, p50_ms=1, p99_ms=3)  # dominated by a
    c = SweepPoint(concurrency=4, throughput=300, p50_ms=1, p99_ms=9)
    assert pareto_front([c, b, a]) == [a, c]


def test_unknown_pipeline_is_named() -> None:
    from tritonkit.errors import TuningError

    with pytest.raises(TuningError, match="no pipeline 'nope'.*digits"):
        search_space(load_spec(EXAMPLE_SPEC), "nope", cores=2)
