"""A PyTorch source in the spec, built end to end: exported with its named dynamic axes,
checked against PyTorch, cached, recorded; a fixed axis fails the export naming it."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import onnx
import pytest

from tests.unit.export import factories
from tritonkit.build.builder import BuildResult, build_repository, export_pytorch_sources
from tritonkit.build.manifest import read_manifest
from tritonkit.errors import ExportError
from tritonkit.export import EXPORT_RECORD_NAME, export_source, read_export_record
from tritonkit.repository.config_io import read_config
from tritonkit.spec import Target, parse_spec

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

FACTORIES = "tests.unit.export.factories"
SPEC = """
models:
  - name: upscaler
    pytorch:
      factory: {factory}
      weights: upscale.pt
      exporter: {exporter}
      inputs:
        - name: low_res
          dtype: FP32
          shape: [2, 1, 8, 8]
          dynamic_axes: {axes}
      outputs: [high_res]
    max_batch_size: 4
    tensorrt:
      dynamic_axes:
        height: {{min: 8, opt: 32, max: 64}}
        width: {{min: 8, opt: 32, max: 64}}
"""
ALL_AXES = "{0: batch, 2: height, 3: {name: width, probe: 12}}"


def write_spec(root: Path, *, factory: str = "upscale", axes: str = ALL_AXES,
               exporter: str = "dynamo", weights_seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    model = getattr(factories, factory, factories.upscale)()
    if not isinstance(model, torch.nn.Module):
        model = factories.upscale()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(weights_seed * 0.01)
    torch.save(model.state_dict(), root / "upscale.pt")
    path = root / "models.yaml"
    path.write_text(SPEC.format(factory=f"{FACTORIES}:{factory}", axes=axes, exporter=exporter))
    return path


def build(spec_path: Path, out: Path, target: Target = Target.ONNXRUNTIME,
          **kwargs: object) -> BuildResult:
    spec = parse_spec(spec_path.read_text(), spec_path)
    return build_repository(spec, target=target, out=out, cache_dir=spec_path.parent / "cache",
                            **kwargs)  # type: ignore[arg-type]


def dims(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult]:
    spec_path = write_spec(tmp_path_factory.mktemp("pytorch_source"))
    return spec_path, build(spec_path, spec_path.parent / "repo")


def test_the_repository_serves_the_export_with_its_named_dynamic_axes(
        built: tuple[Path, BuildResult]) -> None:
    spec_path, result = built
    repo = spec_path.parent / "repo"
    graph = onnx.load(str(repo / "upscaler" / "1" / "model.onnx")).graph
    assert [(i.name, dims(i)) for i in graph.input] == [("low_res", ["batch", 1, "height",
                                                                     "width"])]
    assert [(o.name, dims(o)) for o in graph.output] == [
        ("high_res", ["batch", 1, "2*height", "2*width"])]
    config = read_config(repo / "upscaler" / "config.pbtxt")
    assert config.max_batch_size == 4
    assert [(i.name, list(i.dims)) for i in config.input] == [("low_res", [1, -1, -1])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("high_res", [1, -1, -1])]
    (model,) = result.models
    assert model.source.startswith(f"exported from pytorch:{FACTORIES}:upscale (dynamo")


def test_the_manifest_records_the_source_and_the_exporter(built: tuple[Path, BuildResult]) -> None:
    spec_path, _ = built
    manifest = read_manifest(spec_path.parent / "repo" / "upscaler" / "1" / "manifest.json")
    assert manifest.source_onnx == f"pytorch:{FACTORIES}:upscale"
    assert manifest.tools["torch"] == torch.__version__
    export = manifest.export
    assert export is not None
    weights_sha = hashlib.sha256((spec_path.parent / "upscale.pt").read_bytes()).hexdigest()
    assert (export["factory"], export["weights"], export["weights_sha256"]) == (
        f"{FACTORIES}:upscale", "upscale.pt", weights_sha)
    assert export["exporter"] == "dynamo"
    assert "Constraints violated" in export["exporter_reason"]
    assert "torch" in export["tools"]
    labels = [c.split(":")[0] for c in export["checks"]]
    assert labels == ["example", "batch=4", "batch 4", "height=16", "width=12"]
    assert export["max_abs_diff"] <= 1e-4
    assert str(spec_path.parent) not in json.dumps(export)  # no path of the machine


def test_a_tensorrt_recipe_names_no_cache_path(built: tuple[Path, BuildResult]) -> None:
    spec_path, _ = built
    out = spec_path.parent / "trt_repo"
    build(spec_path, out, target=Target.TENSORRT, skip_plans=True)
    text = (out / "upscaler" / "plan_recipe.json").read_text()
    recipe = json.loads(text)
    assert recipe["source_onnx"] == f"pytorch:{FACTORIES}:upscale"
    assert recipe["parsed_onnx"] == "build/onnxruntime_repository/upscaler/1/model.onnx"
    assert "--target onnxruntime --out build/onnxruntime_repository" in recipe["prepare"]
    assert ".cache" not in text and "cache/" not in text and str(spec_path.parent) not in text


def test_code_reading_every_onnx_gets_the_cached_export(built: tuple[Path, BuildResult]) -> None:
    spec_path, _ = built
    spec = parse_spec(spec_path.read_text(), spec_path)
    (model,) = export_pytorch_sources(spec, cache_dir=spec_path.parent / "cache").models
    served = spec_path.parent / "repo" / "upscaler" / "1" / "model.onnx"
    assert model.onnx.read_bytes() == served.read_bytes()
    assert model.onnx.parent.parent.name == "exports"


def test_an_export_is_cached_until_the_weights_change(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    spec_path = write_spec(tmp_path)
    exports = tmp_path / "cache" / "exports"
    first = build(spec_path, tmp_path / "one")
    assert "(cached)" not in first.models[0].source
    with caplog.at_level(logging.INFO, logger="tritonkit.build.builder"):
        second = build(spec_path, tmp_path / "two")
    assert "(cached)" in second.models[0].source
    assert any("(cached)" in r.getMessage() for r in caplog.records)
    assert len(list(exports.iterdir())) == 1
    (entry,) = exports.iterdir()
    assert read_export_record(entry / EXPORT_RECORD_NAME).factory == f"{FACTORIES}:upscale"
    write_spec(tmp_path, weights_seed=1)  # same shapes, other weights
    third = build(spec_path, tmp_path / "three")
    assert "(cached)" not in third.models[0].source
    assert len(list(exports.iterdir())) == 2


@pytest.mark.parametrize(("factory", "axes", "named"), [
    ("batch_in_reshape", "{0: batch}", "input 'low_res' axis 0 (batch)"),
    ("height_in_linear", "{0: batch, 2: height}", "input 'low_res' axis 2 (height)"),
])
def test_an_axis_the_code_fixes_fails_the_export_naming_it(
        tmp_path: Path, factory: str, axes: str, named: str) -> None:
    spec_path = write_spec(tmp_path, factory=factory, axes=axes)
    with pytest.raises(ExportError) as info:
        build(spec_path, tmp_path / "repo")
    message = str(info.value)
    assert named in message
    assert "declared dynamic, but the model's code fixes it" in message
    assert "Constraints violated" in message  # torch's own hint follows
    assert not (tmp_path / "repo").exists()


def test_the_torchscript_exporter_is_checked_at_the_probe_sizes(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, factory="batch_as_int", axes="{0: batch}",
                           exporter="torchscript")
    with pytest.raises(ExportError) as info:
        build(spec_path, tmp_path / "repo")
    message = str(info.value)
    assert "input 'low_res' axis 0 (batch) = 4 (example 2)" in message
    assert "ONNX Runtime" in message


def test_the_torchscript_exporter_names_the_declared_axes(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, exporter="torchscript")
    spec = parse_spec(spec_path.read_text(), spec_path)
    record = export_source(spec.models[0], tmp_path, base_dir=tmp_path)
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert dims(graph.input[0]) == ["batch", 1, "height", "width"]
    assert dims(graph.output[0])[0] == "batch"
    assert record.exporter == "torchscript"
    assert "deprecated" in record.exporter_reason


@pytest.mark.parametrize(("factory", "problem"), [
    ("not_a_module", "returned str, not a torch.nn.Module"),
    ("no_such_function", "has no function 'no_such_function'"),
])
def test_a_bad_factory_is_an_export_error(tmp_path: Path, factory: str, problem: str) -> None:
    spec_path = write_spec(tmp_path, factory=factory)
    with pytest.raises(ExportError, match=problem):
        build(spec_path, tmp_path / "repo")


def test_missing_weights_are_an_export_error(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path)
    (tmp_path / "upscale.pt").unlink()
    with pytest.raises(ExportError, match=r"weights file .*upscale.pt not found"):
        build(spec_path, tmp_path / "repo")


def test_the_factory_is_imported_from_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "spec_folder_zoo.py").write_text(
        "import torch\n\n\ndef linear():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Linear(4, 3)\n")
    spec = parse_spec("""
models:
  - name: lin
    pytorch:
      factory: spec_folder_zoo:linear
      inputs: [{name: x, dtype: FP32, shape: [2, 4], dynamic_axes: {0: batch}}]
      outputs: [y]
    max_batch_size: 8
""", tmp_path / "models.yaml")
    result = build_repository(spec, target=Target.ONNXRUNTIME, out=tmp_path / "repo",
                              cache_dir=tmp_path / "cache")
    assert result.models[0].source.startswith("exported from pytorch:spec_folder_zoo:linear")
    record = read_manifest(tmp_path / "repo" / "lin" / "1" / "manifest.json").export
    assert record is not None
    assert (record["module_file"], record["weights"]) == ("spec_folder_zoo.py", None)
    assert str(tmp_path) not in sys.path
