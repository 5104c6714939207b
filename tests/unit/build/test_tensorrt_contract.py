"""The TensorRT contract: every plan model of models.yaml, built through Polygraphy's real loaders
against the strict `tensorrt` double of each targeted release, and every committed recipe's
trtexec line checked against that release's trtexec.

Targets: every release of src/tritonkit/releases.py whose TensorRT API the project holds, and
TensorRT 11.1 (held, not yet in a pinned NGC release), which builds strongly typed networks
only. Needs the example artifacts (`make models`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.tensorrt_double import (
    clear_polygraphy_tensorrt_cache,
    double_record,
    install_tensorrt_double,
    uncovered_dynamic_dims,
)
from tritonkit import releases
from tritonkit.build import export_pytorch_sources
from tritonkit.build.onnx_inspect import inspect_onnx
from tritonkit.errors import EngineBuildError
from tritonkit.spec import BuildSpec, HardwareCompatibility, ModelSpec, load_spec
from tritonkit.tensorrt.api import check_trtexec_command, load_surface
from tritonkit.tensorrt.plan import build_engine, plan_options, trtexec_command
from tritonkit.tensorrt.profiles import fed_axis_bounds
from tritonkit.tensorrt.recipe import RECIPE_NAME

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "models.yaml"
REPOSITORY = ROOT / "model_repository"
# (target name, NGC release or None, held TensorRT API surface)
TARGETS = [(f"NGC {r.name}", r.name, r.tensorrt_api) for r in releases.RELEASES.values()
           if r.tensorrt_api is not None] + [("TensorRT 11.1", None, "11.1")]
IDS = [name for name, _, _ in TARGETS]


def _spec(release: str | None) -> BuildSpec:
    spec = load_spec(SPEC, release=release)  # refuses options the release's TensorRT lacks
    inputs = [m.onnx if m.pytorch is None else m.pytorch.weights for m in spec.models]
    missing = [path for path in inputs if path is not None and not path.is_file()]
    if missing:
        pytest.skip(f"the example artifacts are not built ({missing[0]}); run `make models`")
    return export_pytorch_sources(spec)  # PyTorch sources: their (cached) export


@pytest.fixture(params=TARGETS, ids=IDS)
def target(request: pytest.FixtureRequest) -> tuple[str, str | None, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def trt(target: tuple[str, str | None, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    module = install_tensorrt_double(monkeypatch, load_surface(target[2]))
    yield module
    clear_polygraphy_tensorrt_cache()


def _build(spec: BuildSpec, model: ModelSpec, plan: Path) -> None:
    info = inspect_onnx(model.onnx)
    fed = fed_axis_bounds(spec, model.name, [t.name for t in info.inputs])
    build_engine(model.onnx, plan, plan_options(model, info, timing_cache=None, fed=fed))


def test_every_model_builds_strongly_typed_with_every_dynamic_dim_covered(
        target: tuple[str, str | None, str], trt: object, tmp_path: Path) -> None:
    spec = _spec(target[1])
    for model in spec.models:
        _build(spec, model, tmp_path / model.name / "model.plan")
    builds = double_record(trt).builds  # type: ignore[arg-type]
    assert len(builds) == len(spec.models)
    for model, build in zip(spec.models, builds, strict=True):
        onnx_inputs = [(t.name, t.dims) for t in inspect_onnx(model.onnx).inputs]
        assert [(t.name, t.shape) for t in build.network.inputs] == onnx_inputs, model.name
        assert build.network.creation_flags == {"STRONGLY_TYPED"}, model.name
        assert build.config.precision_flags() == set(), model.name
        assert "TF32" not in build.config.flags, model.name
        assert uncovered_dynamic_dims(build.network, build.config) == [], model.name
        assert len(build.config.profiles) == 1 + len(model.tensorrt.extra_profile_batch_sizes)
        assert build.plan is not None, model.name


def test_every_committed_recipe_uses_only_what_the_release_trtexec_accepts(
        target: tuple[str, str | None, str]) -> None:
    surface = load_surface(target[2])
    recipes = sorted(REPOSITORY.glob(f"*/{RECIPE_NAME}"))
    names = {m.name for m in load_spec(SPEC).models}
    assert {r.parent.name for r in recipes} == names  # one recipe per plan model
    for path in recipes:
        recipe = json.loads(path.read_text(encoding="utf-8"))
        assert check_trtexec_command(recipe["trtexec_command"], surface) == [], path
        assert "--fp16" not in recipe["trtexec_command"]  # precision is in the ONNX
        dynamic = [shape for profile in recipe["options"]["profiles"]
                   for shape in profile.values()]
        assert all(lo <= mid <= hi for shape in dynamic
                   for lo, mid, hi in zip(shape["min"], shape["opt"], shape["max"], strict=True))


def test_the_text_encoder_recipes_profile_the_sequence_axis() -> None:
    for name in ("text_encoder", "text_encoder_fp16", "text_encoder_int8"):
        recipe = json.loads((REPOSITORY / name / RECIPE_NAME).read_text(encoding="utf-8"))
        (profile,) = recipe["options"]["profiles"]
        for tensor in ("input_ids", "attention_mask", "token_type_ids"):
            assert profile[tensor]["min"][1] == 1 and profile[tensor]["max"][1] == 256, name
        assert "--maxShapes=input_ids:32x256," in recipe["trtexec_command"]


# --------------------------------------------------------------------------- what must fail


def test_an_option_the_release_lacks_fails_in_the_build_and_in_its_recipe(
        target: tuple[str, str | None, str], trt: object, tmp_path: Path) -> None:
    spec = _spec(None)
    model = spec.models[0]
    same_cc = replace(model, tensorrt=replace(
        model.tensorrt, hardware_compatibility=HardwareCompatibility.SAME_COMPUTE_CAPABILITY))
    surface = load_surface(target[2])
    command = trtexec_command(Path("m.onnx"), Path("m.plan"),
                              plan_options(same_cc, inspect_onnx(model.onnx), timing_cache=None))
    problems = check_trtexec_command(command, surface)
    if surface.has_enum_member("HardwareCompatibilityLevel", "SAME_COMPUTE_CAPABILITY"):
        assert problems == []
        _build(spec, same_cc, tmp_path / "model.plan")
        return
    assert problems and "sameComputeCapability" in problems[0], problems
    with pytest.raises(EngineBuildError, match="SAME_COMPUTE_CAPABILITY, which TensorRT 10.8"):
        _build(spec, same_cc, tmp_path / "model.plan")


def test_weak_typing_is_gone_in_tensorrt_11() -> None:
    """What a weakly typed recipe would use: refused by 11.1, accepted by 10.x."""
    command = "trtexec --onnx=m.onnx --saveEngine=m.plan --fp16 --int8"
    assert check_trtexec_command(command, load_surface("11.1"))
    assert check_trtexec_command(command, load_surface("10.16")) == []
