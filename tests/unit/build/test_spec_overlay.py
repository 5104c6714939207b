"""Serving overlays: merged before validation, only serving settings, one target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonkit.errors import SpecError
from tritonkit.spec import Target, load_spec, parse_overlay, render_overlay

EXAMPLE_SPEC = Path(__file__).parents[3] / "models.yaml"


def overlay(text: str) -> object:
    return parse_overlay(text, Path("tuned.yaml"))


def test_overlay_sets_serving_settings_and_keeps_the_rest() -> None:
    base = load_spec(EXAMPLE_SPEC)
    tuned = load_spec(EXAMPLE_SPEC, overlay=parse_overlay(
        "version: 1\ntarget: local\n"
        "models:\n  digits_classifier: {instance_group: {count: 3}, "
        "dynamic_batching: {max_queue_delay_us: 0}, onnxruntime: {intra_op_threads: 2}}\n"
        "python_steps:\n  digits_preprocess: {instance_group: {count: 1}}\n",
        Path("tuned.yaml")))
    model = {m.name: m for m in tuned.models}["digits_classifier"]
    before = {m.name: m for m in base.models}["digits_classifier"]
    assert model.serving.instance_group.count == 3
    assert model.onnxruntime.intra_op_threads == 2
    assert model.serving.dynamic_batching is not None and before.serving.dynamic_batching
    assert model.serving.dynamic_batching.max_queue_delay_us == 0
    # merged, not replaced: the settings the overlay leaves out keep the spec's values
    assert (model.serving.dynamic_batching.preferred_batch_sizes
            == before.serving.dynamic_batching.preferred_batch_sizes == (16, 64))
    assert model.serving.dynamic_batching.max_queue_size == 512
    step = {s.name: s for s in tuned.python_steps}["digits_preprocess"]
    assert step.serving.instance_group.count == 1
    assert tuned.sha256 != base.sha256  # builds and caches see the overlay


def test_overlay_values_are_validated_like_the_spec_and_name_the_overlay() -> None:
    bad_delay = parse_overlay(
        "version: 1\ntarget: local\npython_steps:\n"
        "  digits_preprocess: {dynamic_batching: {max_queue_delay_us: 100}}\n", Path("t.yaml"))
    with pytest.raises(SpecError, match=r"max_queue_delay_us: must be 0 .*\(with overlay t.yaml\)"):
        load_spec(EXAMPLE_SPEC, overlay=bad_delay)
    zero = parse_overlay("version: 1\ntarget: local\nmodels:\n"
                         "  digits_classifier: {instance_group: {count: 0}}\n", Path("t.yaml"))
    with pytest.raises(SpecError, match="instance_group.count"):
        load_spec(EXAMPLE_SPEC, overlay=zero)
    unknown = parse_overlay("version: 1\ntarget: local\nmodels:\n"
                            "  no_such_model: {instance_group: {count: 1}}\n", Path("t.yaml"))
    with pytest.raises(SpecError, match="models.yaml has no models entry named 'no_such_model'"):
        load_spec(EXAMPLE_SPEC, overlay=unknown)


@pytest.mark.parametrize(("text", "problem"), [
    ("version: 1\ntarget: local\nmodels:\n  m: {onnx: other.onnx}\n",
     r"models.m.onnx: an overlay sets only serving settings"),
    ("version: 1\ntarget: local\npython_steps:\n  s: {onnxruntime: {intra_op_threads: 1}}\n",
     r"python_steps.s.onnxruntime: an overlay sets only serving settings"),
    ("version: 2\ntarget: local\n", "version: must be 1"),
    ("version: 1\ntarget: gpu\n", "target: must be one of"),
    ("version: 1\ntarget: local\npipelines: {}\n", "pipelines: unknown key"),
    ("- a\n", "an overlay is a mapping"),
])
def test_overlay_structure_errors_name_the_field(text: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        overlay(text)


def test_rendered_overlay_reads_back_the_same() -> None:
    first = parse_overlay("version: 1\ntarget: local\nmodels:\n  digits_classifier: "
                          "{dynamic_batching: {preferred_batch_sizes: [4, 8]}}\n", Path("a.yaml"))
    text = render_overlay(first, header="written by tritonkit tune\n\nreview before use")
    assert text.startswith("# written by tritonkit tune\n#\n# review before use\n")
    again = parse_overlay(text, Path("a.yaml"))
    assert again.models == first.models and again.target is Target.LOCAL


def test_an_overlay_applies_to_its_own_target_only() -> None:
    from tritonkit.errors import SpecError as Error
    from tritonkit.spec import applicable_overlay

    local = parse_overlay("version: 1\ntarget: local\n", Path("local.yaml"))
    assert applicable_overlay(local, requested=Target.AUTO, resolved=Target.LOCAL) is local
    assert applicable_overlay(local, requested=Target.LOCAL, resolved=Target.LOCAL) is local
    # auto on a TensorRT machine: built without the CPU measurements
    assert applicable_overlay(local, requested=Target.AUTO, resolved=Target.TENSORRT) is None
    with pytest.raises(Error, match="measured for target 'local'; this build is for 'tensorrt'"):
        applicable_overlay(local, requested=Target.TENSORRT, resolved=Target.TENSORRT)
    assert applicable_overlay(None, requested=Target.AUTO, resolved=Target.LOCAL) is None
