"""Spec loading: typed values, defaults, and errors that name the file, field path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonkit.errors import SpecError
from tritonkit.spec import (
    AccuracyMetric,
    InstanceKind,
    Precision,
    load_spec,
    parse_spec,
)

SOURCE = Path("models.yaml")

MINIMAL = """
models:
  - name: clf
    onnx: clf.onnx
    max_batch_size: 8
"""


def parse(text: str):
    return parse_spec(text, SOURCE)


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse(text)
    return str(info.value)


def test_minimal_spec_gets_defaults() -> None:
    spec = parse(MINIMAL)
    model = spec.models[0]
    assert model.name == "clf"
    assert model.max_batch_size == 8
    assert model.precision is Precision.FP32
    assert model.serving.dynamic_batching is not None
    assert model.serving.dynamic_batching.max_queue_size == 128
    assert model.serving.instance_group.kind is InstanceKind.AUTO
    assert model.onnx == SOURCE.resolve().parent / "clf.onnx"
    assert len(spec.sha256) == 64


def test_spec_is_frozen() -> None:
    spec = parse(MINIMAL)
    with pytest.raises(AttributeError):
        spec.models[0].name = "other"  # type: ignore[misc]


def test_negative_max_batch_size_names_file_and_field() -> None:
    text = MINIMAL + "  - name: b\n    onnx: b.onnx\n    max_batch_size: -1\n"
    assert error_of(text) == "models.yaml: models[1].max_batch_size: must be >= 0, got -1"


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "has space", "x" * 70, ""])
def test_unsafe_model_names_are_rejected(name: str) -> None:
    text = f"models:\n  - name: {name!r}\n    onnx: a.onnx\n    max_batch_size: 1\n"
    message = error_of(text)
    assert "models[0].name" in message


def test_unknown_field_lists_allowed_ones() -> None:
    message = error_of(MINIMAL + "    max_batchsize: 3\n")
    assert "models[0]: unknown field(s) max_batchsize" in message
    assert "max_batch_size" in message


def test_bad_enum_lists_choices() -> None:
    message = error_of(MINIMAL + "    precision: fp8\n")
    assert "models[0].precision: must be one of fp32, fp16, int8, got 'fp8'" in message


def test_precision_requires_accuracy_budget() -> None:
    message = error_of(MINIMAL + "    precision: fp16\n")
    assert "models[0].accuracy: is required for precision fp16" in message


def test_int8_requires_calibration() -> None:
    message = error_of(
        MINIMAL + "    precision: int8\n"
        "    accuracy: {metric: cosine, threshold: 0.99, holdout: h.npz}\n"
    )
    assert "models[0].calibration: is required for precision int8" in message


def test_accuracy_budget_is_typed() -> None:
    spec = parse(
        MINIMAL + "    precision: fp16\n"
        "    accuracy: {metric: max_abs_diff, threshold: 0.01, holdout: h.npz}\n"
    )
    budget = spec.models[0].accuracy
    assert budget is not None
    assert budget.metric is AccuracyMetric.MAX_ABS_DIFF
    assert not budget.metric.higher_is_better
    assert budget.threshold == pytest.approx(0.01)


def test_preferred_batch_size_above_max_is_rejected() -> None:
    message = error_of(MINIMAL + "    dynamic_batching: {preferred_batch_sizes: [4, 16]}\n")
    assert "dynamic_batching.preferred_batch_sizes[1]: 16 exceeds max_batch_size 8" in message


def test_unbatched_model_cannot_have_dynamic_batching() -> None:
    text = MINIMAL.replace("max_batch_size: 8", "max_batch_size: 0")
    assert parse(text).models[0].serving.dynamic_batching is None
    message = error_of(text + "    dynamic_batching: {max_queue_delay_us: 10}\n")
    assert "models[0].dynamic_batching: needs max_batch_size >= 1" in message


def test_tensorrt_profile_bounds_follow_max_batch_size() -> None:
    message = error_of(MINIMAL + "    tensorrt: {opt_batch_size: 9}\n")
    assert "models[0].tensorrt.opt_batch_size: must be <= 8, got 9" in message
    message = error_of(MINIMAL + "    tensorrt: {extra_profiles: [{min: 4, opt: 2, max: 8}]}\n")
    assert "models[0].tensorrt.extra_profiles[0].opt: must be >= 4, got 2" in message


def test_duplicate_names_across_kinds_are_rejected() -> None:
    text = (
        MINIMAL
        + """
python_steps:
  - name: clf
    function: tritonkit.processing.steps:preprocess_images
    max_batch_size: 8
    inputs: [{name: IMAGE, dtype: BYTES, dims: [1]}]
    outputs: [{name: PIXELS, dtype: FP32, dims: [1, 8, 8]}]
"""
    )
    assert "duplicate model name 'clf'" in error_of(text)


def test_pipeline_step_must_exist() -> None:
    text = MINIMAL + "pipelines:\n  - name: p\n    max_batch_size: 8\n    steps: [clf, nope]\n"
    assert "pipelines[0].steps[1].model: 'nope' is not a model or python step" in error_of(text)


def test_python_step_tensors_are_validated() -> None:
    text = """
python_steps:
  - name: pre
    function: not a function
    max_batch_size: 4
    inputs: [{name: IMAGE, dtype: BYTES, dims: [1]}]
    outputs: [{name: PIXELS, dtype: FP32, dims: [1, 8, 8]}]
"""
    assert "python_steps[0].function: 'not a function' must look like" in error_of(text)
    bad_dims = text.replace("not a function", "tritonkit.processing.steps:f")
    bad_dims = bad_dims.replace("[1, 8, 8]", "[0, 8]")
    assert "python_steps[0].outputs[0].dims[0]: must be a positive size or -1" in error_of(bad_dims)


def test_yaml_syntax_error_has_position() -> None:
    message = error_of("models:\n  - name: [unclosed\n")
    assert message.startswith("models.yaml: is not valid YAML at line")


def test_yaml_is_loaded_safely() -> None:
    message = error_of("models: !!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in message


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot be read"):
        load_spec(tmp_path / "absent.yaml")


def test_example_spec_loads() -> None:
    spec = load_spec(Path(__file__).parents[3] / "models.yaml")
    assert "digits" in spec.names
    assert [s.model for s in spec.pipelines[0].steps] == [
        "digits_preprocess",
        "digits_classifier",
    ]


BYTES_STEP = """
python_steps:
  - name: pre
    function: tritonkit.processing.steps:preprocess_images
    max_batch_size: 4
    inputs: [{name: IMAGE, dtype: BYTES, dims: [1]}]
    outputs: [{name: PIXELS, dtype: FP32, dims: [1, 8, 8]}]
"""


def test_bytes_input_steps_batch_without_queue_delay() -> None:
    (step,) = parse(BYTES_STEP).python_steps
    assert step.serving.dynamic_batching is not None
    assert step.serving.dynamic_batching.max_queue_delay_us == 0
    numeric = BYTES_STEP.replace("dtype: BYTES", "dtype: FP32")
    (step,) = parse(numeric).python_steps
    assert step.serving.dynamic_batching is not None
    assert step.serving.dynamic_batching.max_queue_delay_us == 100


def test_bytes_input_step_with_queue_delay_is_rejected() -> None:
    message = error_of(BYTES_STEP + "    dynamic_batching: {max_queue_delay_us: 100}\n")
    assert "python_steps[0].dynamic_batching.max_queue_delay_us: must be 0" in message
    assert "malformed BYTES framing" in message


# --------------------------------------------------------------------------- assets

ASSET_STEP = """
python_steps:
  - name: tok
    function: tritonkit.processing.steps:tokenize_text
    max_batch_size: 4
    inputs: [{name: TEXT, dtype: BYTES, dims: [1]}]
    outputs: [{name: INPUT_IDS, dtype: INT64, dims: [-1]}]
"""


def test_assets_map_parameters_to_paths_relative_to_the_spec() -> None:
    text = ASSET_STEP + ("    assets: {tokenizer_dir: artifacts/enc/tokenizer/, "
                         "vocab: ./a/../b/vocab.txt}\n")
    (step,) = parse(text).python_steps
    base = SOURCE.resolve().parent
    assert dict(step.assets) == {"tokenizer_dir": base / "artifacts" / "enc" / "tokenizer",
                                 "vocab": base / "b" / "vocab.txt"}
    (plain,) = parse(ASSET_STEP).python_steps
    assert dict(plain.assets) == {}


def test_asset_parameter_cannot_also_be_a_parameter() -> None:
    text = ASSET_STEP + ("    parameters: {tokenizer_dir: elsewhere}\n"
                         "    assets: {tokenizer_dir: artifacts/tokenizer}\n")
    message = error_of(text)
    assert message.startswith("models.yaml: python_steps[0].assets.tokenizer_dir: ")
    assert "also set in parameters" in message


@pytest.mark.parametrize(("assets", "problem"), [
    ("[artifacts/tokenizer]", "must map config parameter names to paths"),
    ("{tokenizer_dir: 3}", "must be a path"),
    ("{tokenizer_dir: ''}", "must be a path"),
    ("{'bad name': tok}", "is not a parameter name"),
    ("{function: tok}", "the adapter reads"),
    ("{labels_file: tok}", "the adapter reads"),
    ("{tokenizer_dir: '..'}", "names no file or directory"),
    ("{tokenizer_dir: 'my tokenizer'}", "cannot be copied under that name"),
    ("{a: x/tokenizer, b: y/tokenizer}", "both copy to assets/tokenizer"),
])
def test_bad_assets_are_spec_errors(assets: str, problem: str) -> None:
    message = error_of(ASSET_STEP + f"    assets: {assets}\n")
    assert "python_steps[0].assets" in message
    assert problem in message
