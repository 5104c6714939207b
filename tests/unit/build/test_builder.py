"""The builder end to end on tiny models: layout, caching, atomicity, targets, --check."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.onnx_factories import make_image_model
from tritonkit.build.builder import build_repository
from tritonkit.build.manifest import read_manifest
from tritonkit.build.repository_check import check_repository
from tritonkit.errors import AccuracyGateError, EngineBuildError, ToolkitError, UnsafePathError
from tritonkit.repository.config_io import read_config
from tritonkit.repository.lint import lint_repository
from tritonkit.spec import BuildSpec, Target, parse_spec

SPEC = """
models:
  - name: clf
    onnx: clf.onnx
    max_batch_size: 16
    labels: labels.txt
    warmup: {samples: holdout.npz, batch_size: 2}
  - name: clf_fp16
    onnx: clf.onnx
    precision: fp16
    accuracy: {metric: top1_agreement, threshold: 0.95, holdout: holdout.npz}
    max_batch_size: 16
python_steps:
  - name: pre
    function: tritonkit.processing.steps:preprocess_images
    parameters: {height: 8, width: 8, channels: 1}
    max_batch_size: 16
    inputs: [{name: IMAGE, dtype: BYTES, dims: [1]}]
    outputs: [{name: PIXELS, dtype: FP32, dims: [1, 8, 8]}]
pipelines:
  - {name: pipe, max_batch_size: 16, steps: [pre, clf]}
"""

TENSORRT_ABSENT = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is not None,
    reason="checks the error raised where TensorRT is absent; TensorRT is installed here",
)


def write_inputs(root: Path) -> None:
    make_image_model(root / "clf.onnx")
    rng = np.random.default_rng(0)
    np.savez(root / "holdout.npz", pixels=rng.random((40, 1, 8, 8), dtype=np.float32))
    (root / "labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")


@pytest.fixture()
def spec(tmp_path: Path) -> BuildSpec:
    write_inputs(tmp_path)
    return parse_spec(SPEC, tmp_path / "models.yaml")


def build(spec: BuildSpec, out: Path, target: Target = Target.LOCAL, **kwargs):
    return build_repository(spec, target=target, out=out, cache_dir=out.parent / "cache", **kwargs)


def test_local_build_writes_a_servable_repository(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = build(spec, out)
    assert not result.up_to_date
    assert {m.name for m in result.models} == {"clf", "clf_fp16", "pre", "pipe"}
    for name in ("clf", "clf_fp16", "pre", "pipe"):
        config = read_config(out / name / "config.pbtxt")
        assert config.name == name
    assert (out / "clf" / "1" / "model.onnx").is_file()
    assert not (out / "clf" / "1" / "model.py").exists()  # Triton's ONNX Runtime backend serves it
    clf = read_config(out / "clf" / "config.pbtxt")
    assert (clf.backend, clf.platform) == ("onnxruntime", "")
    assert [g.kind for g in clf.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert "python_step" in (out / "pre" / "1" / "model.py").read_text()
    assert (out / "clf" / "labels.txt").read_text().startswith("0\n1\n")
    assert (out / "pipe" / "1").is_dir()
    warm = (out / "clf" / "warmup" / "pixels").read_bytes()
    assert len(warm) == 1 * 8 * 8 * 4  # one real sample; Triton repeats it batch_size times
    manifest = read_manifest(out / "clf_fp16" / "1" / "manifest.json")
    assert manifest.precision == "fp16"
    assert manifest.accuracy is not None and manifest.accuracy["passed"]
    assert manifest.tools["onnxruntime"]
    fp16 = read_config(out / "clf_fp16" / "config.pbtxt")
    assert fp16.input[0].data_type == mc.TYPE_FP32  # fp32 I/O kept
    assert lint_repository(out) == []


def test_lint_finds_the_missing_onnx_of_a_local_runner(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build(spec, out)
    (out / "clf" / "1" / "model.onnx").unlink()
    problems = [str(p) for p in lint_repository(out)]
    assert len(problems) == 1 and problems[0].startswith("clf/1: ")
    assert "model.onnx" in problems[0]


def test_unchanged_rebuild_is_a_cache_hit(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    started = time.monotonic()
    build(spec, out)
    cold = time.monotonic() - started
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    started = time.monotonic()
    again = build(spec, out)
    warm = time.monotonic() - started
    assert again.up_to_date
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing rewritten
    assert warm < cold


def test_changed_spec_rebuilds_but_reuses_the_precision_cache(
    spec: BuildSpec, tmp_path: Path
) -> None:
    out = tmp_path / "repo"
    build(spec, out)
    changed = parse_spec(SPEC.replace("batch_size: 2}", "batch_size: 3}"), tmp_path / "models.yaml")
    result = build(changed, out)
    assert not result.up_to_date
    by_name = {m.name: m for m in result.models}
    assert by_name["clf_fp16"].cached  # the fp16 transform and its gate were not redone
    assert read_config(out / "clf" / "config.pbtxt").model_warmup[0].batch_size == 3


def test_edited_output_is_rebuilt(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build(spec, out)
    (out / "clf" / "config.pbtxt").write_text("garbage")
    assert not build(spec, out).up_to_date
    assert read_config(out / "clf" / "config.pbtxt").name == "clf"


def test_interrupted_build_leaves_previous_repository_intact(
    spec: BuildSpec, tmp_path: Path
) -> None:
    out = tmp_path / "repo"
    build(spec, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    changed = parse_spec(
        SPEC.replace("max_batch_size: 16\n    labels", "max_batch_size: 8\n    labels"),
        tmp_path / "models.yaml",
    )

    def interrupt(message: str) -> None:
        if message.startswith("pre:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(changed, out, on_step=interrupt)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if "staging" in p.name] == []


def test_interrupted_first_build_leaves_nothing(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"

    def interrupt(message: str) -> None:
        if message.startswith("pipe:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(spec, out, on_step=interrupt)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".repo")] == []


def test_failed_accuracy_gate_fails_the_build(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    strict = SPEC.replace(
        "metric: top1_agreement, threshold: 0.95", "metric: max_abs_diff, threshold: 0.0000001"
    )
    spec = parse_spec(strict, tmp_path / "models.yaml")
    with pytest.raises(AccuracyGateError, match="clf_fp16"):
        build(spec, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


@TENSORRT_ABSENT
def test_tensorrt_target_without_tensorrt_says_what_is_missing(
    spec: BuildSpec, tmp_path: Path
) -> None:
    with pytest.raises(EngineBuildError, match="tensorrt") as err:
        build(spec, tmp_path / "repo", target=Target.TENSORRT)
    assert "nvcr.io/nvidia/tensorrt" in str(err.value)


def test_auto_target_falls_back_to_local_without_tensorrt(spec: BuildSpec, tmp_path: Path) -> None:
    result = build(spec, tmp_path / "repo", target=Target.AUTO)
    expected = (
        Target.LOCAL
        if __import__("importlib").util.find_spec("tensorrt") is None
        else Target.TENSORRT
    )
    assert result.target is expected


def test_tensorrt_skip_plans_writes_everything_but_plans(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build(spec, out, target=Target.TENSORRT, skip_plans=True)
    config = read_config(out / "clf" / "config.pbtxt")
    assert config.platform == "tensorrt_plan"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert not list(out.rglob("model.plan"))
    assert read_config(out / "pre" / "config.pbtxt").backend == "python"


def test_check_detects_drift(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build(spec, out, target=Target.TENSORRT, skip_plans=True)
    cache = tmp_path / "cache"
    assert check_repository(spec, target=Target.TENSORRT, repository=out, cache_dir=cache) == []
    config = out / "clf" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 16", "max_batch_size: 4"))
    (out / "stray").mkdir()
    (out / "stray" / "config.pbtxt").write_text("name: 'stray'\n")
    diffs = check_repository(spec, target=Target.TENSORRT, repository=out, cache_dir=cache)
    assert [(d.path, d.problem) for d in diffs] == [
        ("clf/config.pbtxt", "differs"),
        ("stray/config.pbtxt", "unexpected"),
    ]
    assert "max_batch_size: 16" in diffs[0].detail


def test_check_reports_each_accuracy_gate_as_measured(spec: BuildSpec, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build(spec, out, target=Target.TENSORRT, skip_plans=True)
    lines: list[str] = []

    check_repository(spec, target=Target.TENSORRT, repository=out,
                     cache_dir=tmp_path / "cache", on_gate=lines.append)

    assert len(lines) == 1
    assert lines[0].startswith("accuracy gate: clf_fp16 (fp16)")
    assert "top1_agreement" in lines[0] and "PASS" in lines[0]


def test_tensor_names_never_shape_paths(tmp_path: Path) -> None:
    import onnx

    write_inputs(tmp_path)
    model = onnx.load(str(tmp_path / "clf.onnx"))
    evil = "../../escape"
    for node in model.graph.node:
        node.input[:] = [evil if name == "pixels" else name for name in node.input]
    model.graph.input[0].name = evil
    onnx.save(model, str(tmp_path / "clf.onnx"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "holdout.npz", **{evil: rng.random((4, 1, 8, 8), dtype=np.float32)})
    spec = parse_spec(SPEC.split("  - name: clf_fp16", maxsplit=1)[0], tmp_path / "models.yaml")
    out = tmp_path / "nested" / "repo"
    build(spec, out)
    assert (out / "clf" / "warmup" / "input_0").is_file()
    assert not (tmp_path / "escape").exists() and not (out.parent / "escape").exists()
    assert read_config(out / "clf" / "config.pbtxt").model_warmup[0].inputs[evil].input_data_file \
        == "input_0"


# --------------------------------------------------------------------------- assets

ASSET_SPEC = """
python_steps:
  - name: tok
    function: tritonkit.processing.steps:tokenize_text
    parameters: {max_length: 8}
    assets: {tokenizer_dir: data/tokenizer, vocab_file: data/vocab.txt}
    max_batch_size: 4
    inputs: [{name: TEXT, dtype: BYTES, dims: [1]}]
    outputs: [{name: INPUT_IDS, dtype: INT64, dims: [-1]}]
"""


def write_assets(root: Path) -> Path:
    tokenizer = root / "data" / "tokenizer"
    (tokenizer / "nested").mkdir(parents=True)
    (tokenizer / "tokenizer.json").write_bytes(b'{"version": "1.0"}\n')
    (tokenizer / "nested" / "extra.bin").write_bytes(bytes(range(256)))
    (tokenizer / "nested" / "linked.bin").symlink_to(tokenizer / "nested" / "extra.bin")
    (root / "data" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return tokenizer


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_assets_are_copied_into_the_model_and_named_relative_to_it(tmp_path: Path) -> None:
    tokenizer = write_assets(tmp_path)
    spec = parse_spec(ASSET_SPEC, tmp_path / "models.yaml")
    out = tmp_path / "repo"
    build(spec, out)
    model_dir = out / "tok"
    assert files_of(model_dir / "assets" / "tokenizer") == {
        "nested/extra.bin": bytes(range(256)),
        "nested/linked.bin": bytes(range(256)),  # a link inside the asset: copied as a file
        "tokenizer.json": b'{"version": "1.0"}\n',
    }
    assert not (model_dir / "assets" / "tokenizer" / "nested" / "linked.bin").is_symlink()
    assert (model_dir / "assets" / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"
    parameters = read_config(model_dir / "config.pbtxt").parameters
    assert parameters["tokenizer_dir"].string_value == "assets/tokenizer"
    assert parameters["vocab_file"].string_value == "assets/vocab.txt"
    assert parameters["max_length"].string_value == "8"
    assert lint_repository(out) == []
    assert check_repository(spec, target=Target.LOCAL, repository=out,
                            cache_dir=tmp_path / "cache") == []
    # byte-identical on a rebuild elsewhere, and a changed asset is noticed by the stamp
    again = tmp_path / "again"
    build(spec, again)
    assert files_of(again) == files_of(out)
    (tokenizer / "tokenizer.json").write_bytes(b'{"version": "2.0"}\n')
    assert not build(spec, out).up_to_date
    assert (model_dir / "assets" / "tokenizer" / "tokenizer.json").read_bytes() == (
        b'{"version": "2.0"}\n')


def test_missing_asset_fails_the_build_naming_step_parameter_and_path(tmp_path: Path) -> None:
    write_assets(tmp_path)
    (tmp_path / "data" / "vocab.txt").unlink()
    spec = parse_spec(ASSET_SPEC, tmp_path / "models.yaml")
    with pytest.raises(ToolkitError) as info:
        build(spec, tmp_path / "repo")
    message = str(info.value)
    assert "tok" in message and "vocab_file" in message
    assert str(tmp_path / "data" / "vocab.txt") in message
    assert not (tmp_path / "repo").exists()


def test_asset_symlink_leaving_the_asset_is_refused(tmp_path: Path) -> None:
    tokenizer = write_assets(tmp_path)
    (tmp_path / "secret.txt").write_text("not for the repository")
    (tokenizer / "leak.txt").symlink_to(tmp_path / "secret.txt")
    spec = parse_spec(ASSET_SPEC, tmp_path / "models.yaml")
    with pytest.raises(UnsafePathError, match="leak.txt"):
        build(spec, tmp_path / "repo")


def test_a_changed_transform_recipe_is_never_served_from_the_cache(
        spec: BuildSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tritonkit.build import builder

    build(spec, tmp_path / "a", remember=False)
    again = build(spec, tmp_path / "b", remember=False)
    monkeypatch.setattr(builder, "transform_fingerprint", lambda: "another recipe")
    changed = build(spec, tmp_path / "c", remember=False)

    assert [m.cached for m in again.models if m.name == "clf_fp16"] == [True]
    assert [m.cached for m in changed.models if m.name == "clf_fp16"] == [False]
