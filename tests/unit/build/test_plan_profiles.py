"""Profiles for every dynamic axis: batch from max_batch_size, the others from the spec or the
pipeline, on real tiny ONNX models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.onnx_factories import SEQUENCE_PIPELINE_SPEC, make_sequence_encoder
from tritonkit.build.onnx_inspect import inspect_onnx
from tritonkit.errors import EngineBuildError
from tritonkit.spec import parse_spec
from tritonkit.tensorrt.profiles import (
    ShapeProfile,
    ShapeRange,
    check_within,
    derive_profiles,
    fed_axis_bounds,
)


def test_a_tokenizer_step_bounds_the_sequence_axis_it_feeds(tmp_path: Path):
    make_sequence_encoder(tmp_path / "enc.onnx")
    spec = parse_spec(SEQUENCE_PIPELINE_SPEC, tmp_path / "models.yaml")
    model = spec.models[0]
    info = inspect_onnx(model.onnx)

    fed = fed_axis_bounds(spec, "enc", [t.name for t in info.inputs])
    profiles = derive_profiles(model, info, fed=fed)

    assert fed == {"ids": 64, "mask": 64}
    main = ShapeRange(min=(1, 1), opt=(4, 64), max=(16, 64))
    extra = ShapeRange(min=(1, 1), opt=(1, 64), max=(2, 64))
    assert profiles == (ShapeProfile(shapes={"ids": main, "mask": main}),
                        ShapeProfile(shapes={"ids": extra, "mask": extra}))


def test_the_spec_overrides_a_dynamic_axis_by_its_dim_name(tmp_path: Path):
    make_sequence_encoder(tmp_path / "enc.onnx")
    text = SEQUENCE_PIPELINE_SPEC.replace(
        "tensorrt: {opt_batch_size: 4, extra_profiles: [{min: 1, opt: 1, max: 2}]}",
        "tensorrt: {opt_batch_size: 4, dynamic_axes: {sequence: {min: 2, opt: 32, max: 128}}}")
    spec = parse_spec(text, tmp_path / "models.yaml")
    info = inspect_onnx(spec.models[0].onnx)

    (profile,) = derive_profiles(spec.models[0], info, fed={"ids": 64, "mask": 64})

    # inputs sharing the dim name share the range
    assert profile.shapes["ids"] == profile.shapes["mask"] == ShapeRange(
        min=(1, 2), opt=(4, 32), max=(16, 128))


def test_an_unbounded_dynamic_axis_is_refused_naming_input_axis_and_fix(tmp_path: Path):
    make_sequence_encoder(tmp_path / "enc.onnx")
    spec = parse_spec("models: [{name: enc, onnx: enc.onnx, max_batch_size: 8}]",
                      tmp_path / "models.yaml")

    with pytest.raises(EngineBuildError) as caught:
        derive_profiles(spec.models[0], inspect_onnx(spec.models[0].onnx), fed={})

    message = str(caught.value)
    assert "input 'ids' axis 1 ('sequence') is dynamic" in message
    assert "tensorrt.dynamic_axes.sequence: {min, opt, max}" in message


def test_an_unnamed_dynamic_axis_is_refused(tmp_path: Path):
    make_sequence_encoder(tmp_path / "enc.onnx", second_axis=None)
    spec = parse_spec("models: [{name: enc, onnx: enc.onnx, max_batch_size: 8}]",
                      tmp_path / "models.yaml")

    with pytest.raises(EngineBuildError, match=r"input 'ids' axis 1 is dynamic but unnamed"):
        derive_profiles(spec.models[0], inspect_onnx(spec.models[0].onnx))


@pytest.mark.parametrize(("axes", "expected"), [
    ("{batch: {min: 1, opt: 2, max: 4}}", "'batch' is the batch axis"),
    ("{sequence: {min: 1, opt: 2, max: 4}, seq_len: {min: 1, opt: 2, max: 4}}",
     "names seq_len, which no input has as a dynamic axis"),
])
def test_dynamic_axes_must_name_real_non_batch_axes(tmp_path: Path, axes: str, expected: str):
    make_sequence_encoder(tmp_path / "enc.onnx")
    spec = parse_spec(f"models: [{{name: enc, onnx: enc.onnx, max_batch_size: 8, "
                      f"tensorrt: {{dynamic_axes: {axes}}}}}]", tmp_path / "models.yaml")

    with pytest.raises(EngineBuildError, match=expected):
        derive_profiles(spec.models[0], inspect_onnx(spec.models[0].onnx))


def test_an_unbatched_model_profiles_every_named_axis(tmp_path: Path):
    make_sequence_encoder(tmp_path / "enc.onnx")
    spec = parse_spec("models: [{name: enc, onnx: enc.onnx, max_batch_size: 0, tensorrt: "
                      "{dynamic_axes: {batch: {min: 1, opt: 1, max: 1}, "
                      "sequence: {min: 1, opt: 8, max: 8}}}}]", tmp_path / "models.yaml")

    (profile,) = derive_profiles(spec.models[0], inspect_onnx(spec.models[0].onnx))

    assert profile.shapes["ids"] == ShapeRange(min=(1, 1), opt=(1, 8), max=(1, 8))


@pytest.mark.parametrize("bad", [
    "{sequence: {min: 0, opt: 1, max: 2}}",
    "{sequence: {min: 4, opt: 2, max: 8}}",
    "{sequence: {min: 1, opt: 8, max: 4}}",
    "{sequence: {min: 1, max: 4}}",
    "[sequence]",
])
def test_dynamic_axes_ranges_are_checked_at_spec_load(tmp_path: Path, bad: str):
    from tritonkit.errors import SpecError

    with pytest.raises(SpecError, match=r"models\[0\]\.tensorrt\.dynamic_axes"):
        parse_spec(f"models: [{{name: m, onnx: m.onnx, max_batch_size: 8, "
                   f"tensorrt: {{dynamic_axes: {bad}}}}}]", tmp_path / "models.yaml")


def test_check_within_names_the_shape_and_the_profile():
    profile = ShapeProfile(shapes={"ids": ShapeRange(min=(1, 1), opt=(4, 8), max=(8, 16))})

    check_within(profile, "ids", (8, 16), model="m", what="warmup")
    with pytest.raises(EngineBuildError, match=r"warmup shape \[2, 17\] of input 'ids' lies "
                                               r"outside the TensorRT profile"):
        check_within(profile, "ids", (2, 17), model="m", what="warmup")
