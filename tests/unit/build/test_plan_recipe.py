"""plan_recipe.json: what the container will build, with relative paths only."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tests.onnx_factories import make_image_model
from tritonkit.build.onnx_inspect import inspect_onnx
from tritonkit.spec import parse_spec
from tritonkit.tensorrt.plan import plan_options
from tritonkit.tensorrt.recipe import plan_recipe, write_recipe

SPEC = """
models:
  - {name: m, onnx: artifacts/m.onnx, max_batch_size: 8, tensorrt: {version_compatible: true}}
  - name: m_int8
    onnx: artifacts/m.onnx
    precision: int8
    calibration: artifacts/c.npz
    accuracy: {metric: top1_agreement, threshold: 0.9, holdout: artifacts/h.npz}
    max_batch_size: 8
"""


def _recipes(tmp_path: Path) -> list[dict]:
    (tmp_path / "artifacts").mkdir()
    make_image_model(tmp_path / "artifacts" / "m.onnx")
    spec = parse_spec(SPEC, tmp_path / "models.yaml")
    out = []
    for model in spec.models:
        options = plan_options(model, inspect_onnx(model.onnx),
                               timing_cache=tmp_path / ".cache" / "timing.cache")
        recipe = plan_recipe(model, options, spec_path=spec.source,
                             repository=tmp_path / "model_repository")
        model_dir = tmp_path / "model_repository" / model.name
        model_dir.mkdir(parents=True)
        out.append(json.loads(write_recipe(recipe, model_dir).read_text()))
    return out


def test_recipes_name_no_path_of_the_machine(tmp_path: Path):
    for recipe in _recipes(tmp_path):
        assert str(tmp_path) not in json.dumps(recipe)
        assert recipe["options"]["timing_cache"] is None


def test_fp32_recipe_parses_the_source_and_needs_its_server_flag(tmp_path: Path):
    fp32, _ = _recipes(tmp_path)

    assert fp32["source_onnx"] == fp32["parsed_onnx"] == "artifacts/m.onnx"
    assert fp32["prepare"] == ""
    assert fp32["builder_command"] == (
        "tritonkit build --spec models.yaml --target tensorrt "
        "--out model_repository")
    argv = shlex.split(fp32["trtexec_command"])
    assert "--onnx=artifacts/m.onnx" in argv
    assert "--saveEngine=model_repository/m/1/model.plan" in argv
    assert "--versionCompatible" in argv
    assert fp32["server_flags"] == ["--backend-config=tensorrt,version-compatible=true"]


def test_a_precision_variant_names_the_onnx_tensorrt_parses(tmp_path: Path):
    _, int8 = _recipes(tmp_path)

    assert int8["source_onnx"] == "artifacts/m.onnx"
    assert int8["parsed_onnx"] == "build/onnxruntime_repository/m_int8/1/model.onnx"
    assert int8["prepare"] == ("tritonkit build --spec models.yaml --target "
                               "onnxruntime --out build/onnxruntime_repository")
    assert f"--onnx={int8['parsed_onnx']}" in shlex.split(int8["trtexec_command"])
