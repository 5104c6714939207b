"""Generated configs: every field derived from the spec and the ONNX model, via the protobuf."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tests.onnx_factories import make_image_model
from tritonkit.build.config_writer import WarmupInput, model_config, python_step_config
from tritonkit.build.onnx_inspect import inspect_onnx
from tritonkit.errors import SpecError
from tritonkit.spec import DataType, Target, parse_spec

SPEC = """
models:
  - name: clf
    onnx: clf.onnx
    max_batch_size: 32
    labels: labels.txt
    dynamic_batching:
      preferred_batch_sizes: [8, 32]
      max_queue_delay_us: 250
      max_queue_size: 100
      queue_timeout_us: 5000
    instance_group: {kind: gpu, count: 2, gpus: [0, 1]}
    version_policy: {latest: 2}
    warmup: {samples: w.npz, batch_size: 4, count: 2}
    parameters: {owner: team-a, fast: true}
    response_cache: true
    tensorrt: {cuda_graphs: true}
    onnxruntime: {tensorrt_accelerator: true, accelerator_precision: fp16, intra_op_threads: 2}
python_steps:
  - name: pre
    function: tritonkit.processing.steps:preprocess_images
    parameters: {height: 8}
    labels: labels.txt
    max_batch_size: 16
    version_policy: {specific: [1, 3]}
    inputs: [{name: IMAGE, dtype: BYTES, dims: [1]}]
    outputs: [{name: PIXELS, dtype: FP32, dims: [1, 8, 8]}]
"""


@pytest.fixture()
def spec(tmp_path: Path):
    make_image_model(tmp_path / "clf.onnx")
    return parse_spec(SPEC, tmp_path / "models.yaml")


def roundtrip(config: mc.ModelConfig) -> mc.ModelConfig:
    return text_format.Parse(text_format.MessageToString(config), mc.ModelConfig())


WARMUP = [WarmupInput(name="pixels", dtype=DataType.FP32, dims=(1, 8, 8), file_name="pixels")]


def test_tensorrt_model_config_has_every_field(spec) -> None:
    model = spec.models[0]
    config = roundtrip(
        model_config(model, inspect_onnx(model.onnx), target=Target.TENSORRT, warmup=WARMUP)
    )
    assert config.name == "clf"
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 32
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("pixels", mc.TYPE_FP32, [1, 8, 8])
    ]  # no batch axis in dims
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [
        ("logits", [10], "labels.txt")
    ]
    db = config.dynamic_batching
    assert list(db.preferred_batch_size) == [8, 32]
    assert db.max_queue_delay_microseconds == 250
    assert db.default_queue_policy.max_queue_size == 100
    assert db.default_queue_policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert db.default_queue_policy.default_timeout_microseconds == 5000
    group = config.instance_group[0]
    assert (group.kind, group.count, list(group.gpus)) == (
        mc.ModelInstanceGroup.KIND_GPU,
        2,
        [0, 1],
    )
    assert config.version_policy.latest.num_versions == 2
    warm = config.model_warmup[0]
    assert (warm.batch_size, warm.count) == (4, 2)
    assert warm.inputs["pixels"].input_data_file == "pixels"
    assert list(warm.inputs["pixels"].dims) == [1, 8, 8]
    assert config.optimization.cuda.graphs
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "owner": "team-a",
        "fast": "true",
    }
    assert config.response_cache.enable


def test_onnxruntime_target_uses_trt_accelerator(spec) -> None:
    model = spec.models[0]
    config = model_config(model, inspect_onnx(model.onnx), target=Target.ONNXRUNTIME)
    assert config.platform == "onnxruntime_onnx"
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert not config.optimization.cuda.graphs


def test_local_target_is_the_onnxruntime_backend_on_cpu(spec) -> None:
    model = spec.models[0]
    config = model_config(model, inspect_onnx(model.onnx), target=Target.LOCAL)
    assert config.backend == "onnxruntime" and not config.platform
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    # Triton's ONNX Runtime backend reads its own parameter name
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    assert "onnx_model_file" not in config.parameters
    gpu = model_config(model, inspect_onnx(model.onnx), target=Target.ONNXRUNTIME)
    assert gpu.parameters["intra_op_thread_count"].string_value == "2"
    assert "intra_op_thread_count" not in model_config(
        model, inspect_onnx(model.onnx), target=Target.TENSORRT).parameters


def test_image_format_is_declared_on_the_one_image_input(tmp_path: Path) -> None:
    make_image_model(tmp_path / "clf.onnx")
    text = SPEC.replace("    max_batch_size: 32\n    labels", "    max_batch_size: 32\n"
                        "    image_format: nchw\n    labels", 1)
    model = parse_spec(text, tmp_path / "models.yaml").models[0]
    config = model_config(model, inspect_onnx(model.onnx), target=Target.LOCAL)
    assert config.input[0].format == mc.ModelInput.FORMAT_NCHW
    plain = parse_spec(SPEC, tmp_path / "models.yaml").models[0]
    assert model_config(plain, inspect_onnx(plain.onnx), target=Target.LOCAL).input[0].format \
        == mc.ModelInput.FORMAT_NONE
    with pytest.raises(SpecError, match="image_format"):
        parse_spec(text.replace("image_format: nchw", "image_format: chw"),
                   tmp_path / "models.yaml")


def test_auto_target_must_be_resolved(spec) -> None:
    model = spec.models[0]
    with pytest.raises(ValueError, match="resolve"):
        model_config(model, inspect_onnx(model.onnx), target=Target.AUTO)


def test_unbatched_model_keeps_full_dims_and_scalar_reshape(tmp_path: Path) -> None:
    make_image_model(tmp_path / "clf.onnx")
    spec = parse_spec(
        "models:\n  - {name: clf, onnx: clf.onnx, max_batch_size: 0}\n", tmp_path / "models.yaml"
    )
    config = model_config(
        spec.models[0], inspect_onnx(spec.models[0].onnx), target=Target.ONNXRUNTIME
    )
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, 1, 8, 8]


def test_python_step_config(spec) -> None:
    config = roundtrip(python_step_config(spec.python_steps[0]))
    assert config.backend == "python"
    assert config.max_batch_size == 16
    assert config.input[0].data_type == mc.TYPE_STRING
    assert list(config.output[0].dims) == [1, 8, 8]
    function = config.parameters["function"].string_value
    assert function == "tritonkit.processing.steps:preprocess_images"
    assert config.parameters["height"].string_value == "8"
    assert config.parameters["labels_file"].string_value == "labels.txt"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert list(config.version_policy.specific.versions) == [1, 3]


def test_every_tensorrt_profile_is_offered_to_the_instances(tmp_path: Path) -> None:
    # Without instance_group.profile, Triton's TensorRT backend uses profile 0 only.
    make_image_model(tmp_path / "m.onnx")
    spec = parse_spec(
        "models: [{name: m, onnx: m.onnx, max_batch_size: 8, instance_group: {count: 2}, "
        "tensorrt: {extra_profiles: [{min: 1, opt: 1, max: 2}, {min: 1, opt: 4, max: 4}]}}]",
        tmp_path / "models.yaml")
    info = inspect_onnx(spec.models[0].onnx)

    trt = model_config(spec.models[0], info, target=Target.TENSORRT)
    ort = model_config(spec.models[0], info, target=Target.ONNXRUNTIME)

    assert [list(g.profile) for g in trt.instance_group] == [["0", "1", "2"]]
    assert [list(g.profile) for g in ort.instance_group] == [[]]
