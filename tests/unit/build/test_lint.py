from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.unit.build.repo_factory import (
    digits_configs,
    write_model,
    write_plan_manifest,
    write_repository,
)
from tritonkit.errors import ToolkitError
from tritonkit.releases import known_releases, release, version_triplet
from tritonkit.repository.config_io import config_to_text, write_config
from tritonkit.repository.lint import LintProblem, format_problems, lint_repository


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repository(tmp_path / "models", digits_configs())


def lint(root: Path, **kwargs: str) -> list[str]:
    """The errors (warnings left out: see test_bytes_outputs_warn_on_a_release_without_the_fix)."""
    return [str(p) for p in lint_repository(root, **kwargs) if not p.warning]


def rewrite(root: Path, name: str, config: mc.ModelConfig) -> None:
    write_config(config, root / name / "config.pbtxt")


def test_clean_repository_has_no_problems(repo: Path) -> None:
    assert sorted(p.name for p in repo.iterdir()) == [
        "digits",
        "digits_classifier",
        "digits_classifier_trt",
        "digits_postprocess",
        "digits_preprocess",
    ]
    assert lint_repository(repo) == []


def test_clean_repository_with_matching_plan_manifest_passes_the_release_check(
    repo: Path,
) -> None:
    write_plan_manifest(repo / "digits_classifier_trt" / "1", tensorrt="10.8.0.43")
    assert lint(repo, release="25.01") == []


def test_plan_built_by_another_tensorrt_is_refused(repo: Path) -> None:
    write_plan_manifest(repo / "digits_classifier_trt" / "1", tensorrt="10.7.0.23")

    assert lint(repo, release="25.01") == [
        "digits_classifier_trt/1/model.plan: built with TensorRT 10.7.0.23, but release 25.01 "
        "serves TensorRT 10.8.0.43; a plan loads only on the TensorRT version that built it "
        "(major.minor.patch must match; Triton reports 'Version tag does not match'). Rebuild it "
        "in nvcr.io/nvidia/tensorrt:25.01-py3"
    ]
    assert lint(repo, release="24.12") == []  # the plan matches the release that built it


def test_plan_without_manifest_has_no_record_of_its_build(repo: Path) -> None:
    assert lint(repo, release="25.01") == [
        "digits_classifier_trt/1/model.plan: no record of how it was built: no manifest.json "
        "beside it, so its TensorRT version cannot be checked (release 25.01 serves TensorRT "
        "10.8.0.43)"
    ]


def test_manifest_without_tensorrt_version(repo: Path) -> None:
    version_dir = repo / "digits_classifier_trt" / "1"
    write_plan_manifest(version_dir, tensorrt="")

    assert lint(repo, release="25.01") == [
        "digits_classifier_trt/1/manifest.json: records no TensorRT version (tools.tensorrt); "
        "release 25.01 serves TensorRT 10.8.0.43"
    ]


def test_unknown_release_is_a_build_error_listing_known_ones(repo: Path) -> None:
    with pytest.raises(ToolkitError, match=r"unknown NGC release '19\.01'; known releases: 24\.12"):
        lint_repository(repo, release="19.01")


def test_release_table() -> None:
    assert known_releases() == ("24.12", "25.01", "25.02", "25.03", "26.03")
    r = release("25.01")
    assert (r.triton, r.tensorrt, r.cuda) == ("2.54.0", "10.8.0.43", "12.8.0.038")
    assert r.triton_image == "nvcr.io/nvidia/tritonserver:25.01-py3"
    assert version_triplet("10.8.0.43") == (10, 8, 0)
    assert version_triplet("10.8") == (10, 8, 0)
    with pytest.raises(ToolkitError, match="not a version number"):
        version_triplet("10.x")


def test_bad_version_directories(repo: Path) -> None:
    classifier = repo / "digits_classifier"
    for name in ("-1", "v1", "latest", "01"):
        (classifier / name).mkdir()
    (classifier / ".ipynb_checkpoints").mkdir()  # hidden: ignored

    assert lint(repo) == [
        "digits_classifier/-1: '-1' is not a numeric version directory; Triton ignores it "
        "(versions are positive integers: 1/, 2/, ...)",
        "digits_classifier/01: version directory '01' starts with 0; Triton ignores it "
        "(versions are 1, 2, ...)",
        "digits_classifier/latest: 'latest' is not a numeric version directory; Triton ignores "
        "it (versions are positive integers: 1/, 2/, ...)",
        "digits_classifier/v1: 'v1' is not a numeric version directory; Triton ignores it "
        "(versions are positive integers: 1/, 2/, ...)",
    ]


def test_only_a_minus_one_version_directory(repo: Path) -> None:
    classifier = repo / "digits_classifier"
    (classifier / "1").rename(classifier / "-1")

    assert lint(repo) == [
        "digits_classifier: has no version directory (1/, 2/, ...); it holds the model file",
        "digits_classifier/-1: '-1' is not a numeric version directory; Triton ignores it "
        "(versions are positive integers: 1/, 2/, ...)",
    ]


def test_ensemble_needs_a_version_directory_too(repo: Path) -> None:
    (repo / "digits" / "1").rmdir()

    assert lint(repo) == [
        "digits: has no version directory (1/, 2/, ...); Triton needs one even for an ensemble "
        "(an empty 1/ is enough)"
    ]


def test_protobuf_syntax_error_has_line_and_column(repo: Path) -> None:
    config = repo / "digits_postprocess" / "config.pbtxt"
    config.write_text('name: "digits_postprocess"\nbackend: "python"\ninput [\n  { name: "x" ]\n')

    assert lint(repo) == [
        "digits/config.pbtxt: ensemble wiring not checked: the config of step model(s) "
        "'digits_postprocess' could not be read",
        "digits_postprocess/config.pbtxt: syntax error at 4:15: '  { name: \"x\" ]': Expected "
        "identifier or number, got ].",
    ]


def test_missing_config(repo: Path) -> None:
    (repo / "digits_preprocess" / "config.pbtxt").unlink()

    assert lint(repo) == [
        "digits/config.pbtxt: ensemble 'digits', step 1 'digits_preprocess': model "
        "'digits_preprocess' is not in the repository",
        "digits_preprocess: no config.pbtxt: Triton can auto-complete some configs, but this "
        "toolkit requires every model to have an explicit one",
    ]


def test_ensemble_max_batch_size_exceeding_a_step(repo: Path) -> None:
    configs = digits_configs()
    configs["digits_classifier"].max_batch_size = 4
    rewrite(repo, "digits_classifier", configs["digits_classifier"])

    assert lint(repo) == [
        "digits/config.pbtxt: ensemble 'digits', step 2 'digits_classifier': the ensemble's "
        "max_batch_size 8 exceeds this model's max_batch_size 4; Triton refuses to load the "
        "ensemble (lower the ensemble's max_batch_size or raise the model's)"
    ]


def test_missing_model_file(repo: Path) -> None:
    (repo / "digits_classifier" / "1" / "model.onnx").unlink()
    (repo / "digits_preprocess" / "1" / "model.py").unlink()

    assert lint(repo) == [
        "digits_classifier/1: no model.onnx: the onnxruntime backend loads it from every version "
        "directory",
        "digits_preprocess/1: no model.py: the python backend loads it from every version "
        "directory",
    ]


def test_default_model_filename_and_per_gpu_plans(repo: Path) -> None:
    configs = digits_configs()
    onnx = configs["digits_classifier"]
    onnx.default_model_filename = "digits.onnx"
    rewrite(repo, "digits_classifier", onnx)
    trt = configs["digits_classifier_trt"]
    trt.cc_model_filenames["9.0"] = "model_sm90.plan"
    trt.cc_model_filenames["8.0"] = "model_sm80.plan"
    rewrite(repo, "digits_classifier_trt", trt)
    (repo / "digits_classifier_trt" / "1" / "model.plan").rename(
        repo / "digits_classifier_trt" / "1" / "model_sm90.plan"
    )

    assert lint(repo) == [
        "digits_classifier/1: no digits.onnx: the onnxruntime backend loads it from every "
        "version directory",
        "digits_classifier_trt/1: no model_sm80.plan: the tensorrt backend loads it from every "
        "version directory",
    ]

    (repo / "digits_classifier" / "1" / "model.onnx").rename(
        repo / "digits_classifier" / "1" / "digits.onnx"
    )
    (repo / "digits_classifier_trt" / "1" / "model_sm80.plan").write_bytes(b"plan")
    assert lint(repo) == []


def test_config_inside_version_directory(repo: Path) -> None:
    shutil.copy(repo / "digits_classifier" / "config.pbtxt", repo / "digits_classifier" / "1")

    assert lint(repo) == [
        "digits_classifier/1/config.pbtxt: config.pbtxt inside a version directory is ignored; "
        "Triton reads digits_classifier/config.pbtxt"
    ]


def test_name_mismatch_and_empty_name(repo: Path) -> None:
    configs = digits_configs()
    configs["digits_classifier"].name = "digits_cnn"
    rewrite(repo, "digits_classifier", configs["digits_classifier"])
    configs["digits_preprocess"].name = ""  # defaults to the directory name: fine
    rewrite(repo, "digits_preprocess", configs["digits_preprocess"])

    assert lint(repo) == [
        "digits_classifier/config.pbtxt: name 'digits_cnn' differs from its directory "
        "'digits_classifier'; Triton requires the config name to match the directory name"
    ]


def test_leftover_placeholder(repo: Path) -> None:
    configs = digits_configs()
    config = configs["digits_preprocess"]
    config.parameters["EXECUTION_ENV_PATH"].string_value = "${ENV_TARBALL}"
    rewrite(repo, "digits_preprocess", config)
    line = config_to_text(config).splitlines().index('  key: "EXECUTION_ENV_PATH"') + 3

    assert lint(repo) == [
        f"digits_preprocess/config.pbtxt: line {line}: leftover placeholder ${{ENV_TARBALL}} "
        "(a template value was never filled in)"
    ]


def test_dtype_and_shape_mismatch_across_an_edge(repo: Path) -> None:
    configs = digits_configs()
    post = configs["digits_postprocess"]
    post.input[0].data_type = mc.TYPE_FP16
    post.input[0].dims[:] = [1000]
    rewrite(repo, "digits_postprocess", post)

    assert lint(repo) == [
        "digits/config.pbtxt: ensemble 'digits', step 3 'digits_postprocess': input 'LOGITS' "
        "dtype TYPE_FP16 != TYPE_FP32 from 'LOGITS' (step 2 'digits_classifier' output 'logits')",
        "digits/config.pbtxt: ensemble 'digits', step 3 'digits_postprocess': input 'LOGITS' "
        "shape [1000] != [10] from 'LOGITS' (step 2 'digits_classifier' output 'logits')",
    ]


def test_broken_ensemble_mapping(repo: Path) -> None:
    configs = digits_configs()
    ens = configs["digits"]
    ens.ensemble_scheduling.step[2].input_map.clear()
    ens.ensemble_scheduling.step[0].output_map["PIXELS"] = "LOGITS"
    rewrite(repo, "digits", ens)

    assert lint(repo) == [
        "digits/config.pbtxt: ensemble 'digits', step 1 'digits_preprocess': output 'PIXELS' "
        "produces ensemble tensor 'LOGITS', which no later step uses and which is not an "
        "ensemble output",
        "digits/config.pbtxt: ensemble 'digits', step 2 'digits_classifier': input 'pixels' "
        "reads ensemble tensor 'PIXELS', which is neither an ensemble input nor produced by any "
        "step",
        "digits/config.pbtxt: ensemble 'digits', step 2 'digits_classifier': output 'logits' "
        "produces ensemble tensor 'LOGITS', which step 1 'digits_preprocess' output 'PIXELS' "
        "already produces; every tensor needs exactly one producer",
        "digits/config.pbtxt: ensemble 'digits', step 3 'digits_postprocess': input 'LOGITS' of "
        "model 'digits_postprocess' is not mapped to any ensemble tensor (add it to input_map)",
    ]


def test_bad_dims(repo: Path) -> None:
    configs = digits_configs()
    post = configs["digits_postprocess"]
    post.input[0].dims[:] = [0, -2]
    del post.output[0].dims[:]
    rewrite(repo, "digits_postprocess", post)

    problems = lint(repo)

    assert (
        "digits_postprocess/config.pbtxt: input 'LOGITS' dims [0, -2] contain [0, -2]: "
        "every dim is a size > 0 or -1 (variable)" in problems
    )
    assert (
        "digits_postprocess/config.pbtxt: output 'LABELS' has empty dims; Triton needs at "
        "least one dim (a scalar is dims [1] plus an empty reshape)" in problems
    )


def test_scalar_with_empty_reshape_is_fine(repo: Path) -> None:
    configs = digits_configs()
    pre = configs["digits_preprocess"]
    pre.input[0].reshape.SetInParent()  # IMAGE: dims [1], reshape [] -> a scalar per request
    rewrite(repo, "digits_preprocess", pre)

    assert lint(repo) == []


def test_model_without_platform_or_backend(repo: Path) -> None:
    config = mc.ModelConfig(name="mystery", max_batch_size=0)
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[4])
    write_model(repo, "mystery", config)

    assert lint(repo) == [
        "mystery/config.pbtxt: sets neither platform nor backend, so Triton cannot tell what "
        "should load the model"
    ]


def test_problems_are_sorted_by_path_and_formatted_one_per_line(repo: Path) -> None:
    (repo / "digits_preprocess" / "latest").mkdir()
    (repo / "digits_classifier" / "1" / "model.onnx").unlink()

    problems = lint_repository(repo)

    assert [p.path for p in problems] == [
        Path("digits_classifier/1"),
        Path("digits_preprocess/latest"),
    ]
    assert format_problems(problems).splitlines() == [str(p) for p in problems]
    assert isinstance(problems[0], LintProblem)


def test_root_must_exist_and_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ToolkitError, match="model repository does not exist"):
        lint_repository(tmp_path / "nowhere")

    a_file = tmp_path / "models.txt"
    a_file.write_text("not a repository")
    assert lint(a_file) == [
        ".: is not a directory; a model repository is a directory holding one subdirectory per "
        "model"
    ]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert lint(empty) == [".: holds no model directories"]


def test_warmup_directory_and_side_files(repo: Path) -> None:
    configs = digits_configs()
    config = configs["digits_classifier"]
    config.output[0].label_filename = "labels.txt"
    sample = config.model_warmup.add(name="one_digit", batch_size=1)
    sample.inputs["pixels"].data_type = mc.TYPE_FP32
    sample.inputs["pixels"].dims.extend([1, 8, 8])
    sample.inputs["pixels"].input_data_file = "pixels"
    rewrite(repo, "digits_classifier", config)
    (repo / "digits_classifier" / "warmup").mkdir()  # Triton's place for warmup data

    assert lint(repo) == [
        "digits_classifier/config.pbtxt: output 'logits' names label file 'labels.txt', which "
        "is not in digits_classifier/",
        "digits_classifier/config.pbtxt: warmup sample 'one_digit' input 'pixels' reads "
        "'pixels', which is not in digits_classifier/warmup/",
    ]

    (repo / "digits_classifier" / "labels.txt").write_text("0\n1\n")
    (repo / "digits_classifier" / "warmup" / "pixels").write_bytes(bytes(8 * 8 * 4))
    assert lint(repo) == []


def set_parameters(config: mc.ModelConfig, **values: str) -> mc.ModelConfig:
    for key, value in values.items():
        config.parameters[key].string_value = value
    return config


def test_self_contained_assets_and_ordinary_parameters_pass(repo: Path) -> None:
    config = set_parameters(
        digits_configs()["digits_preprocess"],
        function="tritonkit.processing.steps:preprocess_images", mean="0.485,0.456,0.406",
        request_parameters="conf_threshold,iou_threshold", note="wait... then go",
        ratio="1/2", tokenizer_dir="assets/tokenizer", vocab="assets/vocab.txt",
        labels_file="labels.txt")
    rewrite(repo, "digits_preprocess", config)
    model_dir = repo / "digits_preprocess"
    (model_dir / "assets" / "tokenizer").mkdir(parents=True)
    (model_dir / "assets" / "tokenizer" / "tokenizer.json").write_text("{}")
    (model_dir / "assets" / "vocab.txt").write_text("[PAD]\n")
    (model_dir / "labels.txt").write_text("a\n")
    assert lint(repo) == []  # assets/ is not a version directory either


def test_parameters_naming_paths_outside_the_model_directory(repo: Path) -> None:
    config = set_parameters(
        digits_configs()["digits_preprocess"],
        tokenizer_dir="/work/main/artifacts/text_encoder/tokenizer",
        vocab="assets/../../digits/config.pbtxt", windows="C:\\models\\vocab.txt",
        up="..", labels_file="labels.txt", missing_asset="assets/tokenizer")
    rewrite(repo, "digits_preprocess", config)

    problems = lint(repo)
    prefix = "digits_preprocess/config.pbtxt: parameter "
    assert problems == [
        f"{prefix}'labels_file' names 'labels.txt', which is not in digits_preprocess/",
        f"{prefix}'missing_asset' names 'assets/tokenizer', which is not in digits_preprocess/",
        f"{prefix}'tokenizer_dir' names '/work/main/artifacts/text_encoder/tokenizer', an "
        "absolute path; a repository must be self-contained: copy the file into the model "
        "directory (a Python step's `assets:` in the spec) and name it relative to the model "
        "directory",
        f"{prefix}'up' names '..', which climbs out of the model directory with '..'; a "
        "repository must be self-contained: copy the file into the model directory (a Python "
        "step's `assets:` in the spec) and name it relative to the model directory",
        f"{prefix}'vocab' names 'assets/../../digits/config.pbtxt', which climbs out of the "
        "model directory with '..'; a repository must be self-contained: copy the file into "
        "the model directory (a Python step's `assets:` in the spec) and name it relative to "
        "the model directory",
        f"{prefix}'windows' names 'C:\\models\\vocab.txt', an absolute path; a repository must "
        "be self-contained: copy the file into the model directory (a Python step's `assets:` "
        "in the spec) and name it relative to the model directory",
    ]


def test_asset_that_is_a_symlink_out_of_the_model_directory(repo: Path, tmp_path: Path) -> None:
    config = set_parameters(digits_configs()["digits_preprocess"],
                            tokenizer_dir="assets/tokenizer")
    rewrite(repo, "digits_preprocess", config)
    outside = tmp_path / "outside_tokenizer"
    outside.mkdir()
    (repo / "digits_preprocess" / "assets").mkdir()
    (repo / "digits_preprocess" / "assets" / "tokenizer").symlink_to(outside)

    (problem,) = lint(repo)
    assert problem.startswith("digits_preprocess/config.pbtxt: parameter 'tokenizer_dir' names "
                              "'assets/tokenizer', which resolves to ")
    assert "outside digits_preprocess/" in problem


def test_label_and_warmup_files_cannot_climb_out(repo: Path) -> None:
    config = digits_configs()["digits_classifier"]
    config.output[0].label_filename = "../digits_postprocess/labels.txt"
    sample = config.model_warmup.add(name="w", batch_size=1)
    sample.inputs["pixels"].data_type = mc.TYPE_FP32
    sample.inputs["pixels"].dims.extend([1, 8, 8])
    sample.inputs["pixels"].input_data_file = "/etc/hostname"
    rewrite(repo, "digits_classifier", config)
    (repo / "digits_postprocess" / "labels.txt").write_text("0\n")

    problems = lint(repo)
    assert len(problems) == 2
    assert "output 'logits' names label file '../digits_postprocess/labels.txt', which climbs " \
        "out of the model directory with '..'" in problems[0]
    assert "warmup sample 'w' input 'pixels' reads '/etc/hostname', an absolute path" in \
        problems[1]


def test_bytes_outputs_warn_on_a_release_without_the_fix(repo: Path) -> None:
    write_plan_manifest(repo / "digits_classifier_trt" / "1", tensorrt="10.8.0.43")
    warnings = [p for p in lint_repository(repo, release="25.01") if p.warning]
    assert sorted(str(p.path) for p in warnings) == ["digits/config.pbtxt",
                                                     "digits_postprocess/config.pbtxt"]
    message = warnings[0].message
    for named in ("output 'LABELS' is BYTES", "release 25.01", "SIGFPE", "#8267", "#8603",
                  "class_count"):
        assert named in message
    assert str(warnings[0]).startswith("digits/config.pbtxt: warning: ")
    # the pinned release has both fixes; no release named, no warning
    write_plan_manifest(repo / "digits_classifier_trt" / "1", tensorrt="10.16.0.72")
    assert lint_repository(repo, release="26.03") == []
    assert lint_repository(repo) == []


def test_the_cli_prints_warnings_and_exits_zero(repo: Path) -> None:
    import subprocess
    import sys

    write_plan_manifest(repo / "digits_classifier_trt" / "1", tensorrt="10.8.0.43")
    result = subprocess.run([sys.executable, "-m", "tritonkit", "lint", str(repo), "--release",
                             "25.01"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": warning: output 'LABELS' is BYTES") == 2
    assert result.stdout.rstrip().endswith("no problems (2 warning(s))")
