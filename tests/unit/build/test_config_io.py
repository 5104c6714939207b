from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonkit.errors import ConfigError, ToolkitError
from tritonkit.repository.config_io import config_to_text, parse_config, read_config, write_config


def full_config() -> mc.ModelConfig:
    """A config using every field the toolkit writes, with max_batch_size left at 0."""
    c = mc.ModelConfig(name="digits_classifier", platform="tensorrt_plan", backend="tensorrt")
    c.max_batch_size = 0
    c.version_policy.specific.versions.extend([1, 3])
    pixels = c.input.add(name="pixels", data_type=mc.TYPE_FP32, dims=[-1, 64])
    pixels.reshape.shape.extend([-1, 1, 8, 8])
    scalar = c.input.add(name="threshold", data_type=mc.TYPE_FP32, dims=[1])
    scalar.reshape.SetInParent()  # an empty reshape: a scalar
    c.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[-1, 10], label_filename="labels.txt")
    c.dynamic_batching.preferred_batch_size.extend([16, 64])
    c.dynamic_batching.max_queue_delay_microseconds = 200
    c.dynamic_batching.default_queue_policy.max_queue_size = 512
    c.dynamic_batching.default_queue_policy.timeout_action = mc.ModelQueuePolicy.REJECT
    c.instance_group.add(name="gpu", kind=mc.ModelInstanceGroup.KIND_GPU, count=2, gpus=[0, 1])
    c.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    warmup = c.model_warmup.add(name="batch16", batch_size=16)
    warmup.inputs["pixels"].data_type = mc.TYPE_FP32
    warmup.inputs["pixels"].dims.extend([-1, 64])
    warmup.inputs["pixels"].zero_data = True
    c.optimization.cuda.graphs = True
    accelerator = c.optimization.execution_accelerators.gpu_execution_accelerator.add(
        name="tensorrt"
    )
    accelerator.parameters["precision_mode"] = "FP16"
    accelerator.parameters["max_workspace_size_bytes"] = "1073741824"
    c.parameters["b_param"].string_value = "2"
    c.parameters["a_param"].string_value = "1"
    c.cc_model_filenames["9.0"] = "model_sm90.plan"
    c.cc_model_filenames["8.0"] = "model_sm80.plan"
    c.response_cache.enable = True
    return c


def test_round_trip_keeps_every_field_and_writes_max_batch_size_zero() -> None:
    config = full_config()
    text = config_to_text(config)

    assert "max_batch_size: 0\n" in text.splitlines(keepends=True)
    reparsed = text_format.Parse(text, mc.ModelConfig())
    assert reparsed == config
    assert reparsed.output[0].label_filename == "labels.txt"
    assert reparsed.dynamic_batching.default_queue_policy.max_queue_size == 512
    assert reparsed.input[1].HasField("reshape")
    assert list(reparsed.input[1].reshape.shape) == []
    assert (
        reparsed.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters[
            "precision_mode"
        ]
        == "FP16"
    )


def test_max_batch_size_zero_sits_where_text_format_puts_a_nonzero_value() -> None:
    zero = full_config()
    nonzero = full_config()
    nonzero.max_batch_size = 64

    zero_lines = config_to_text(zero).splitlines()
    nonzero_lines = text_format.MessageToString(nonzero).splitlines()

    assert zero_lines.index("max_batch_size: 0") == nonzero_lines.index("max_batch_size: 64")
    assert [ln for ln in zero_lines if ln != "max_batch_size: 0"] == [
        ln for ln in nonzero_lines if ln != "max_batch_size: 64"
    ]


def test_output_is_deterministic_and_stable_under_reparse() -> None:
    config = full_config()
    text = config_to_text(config)

    assert config_to_text(full_config()) == text
    assert config_to_text(text_format.Parse(text, mc.ModelConfig())) == text
    # Map entries come out sorted by key, whatever the insertion order.
    assert text.index('key: "a_param"') < text.index('key: "b_param"')
    assert text.index('key: "8.0"') < text.index('key: "9.0"')


def test_nonzero_max_batch_size_is_written_once() -> None:
    config = mc.ModelConfig(name="m", backend="python", max_batch_size=8)
    text = config_to_text(config)

    assert text == 'name: "m"\nmax_batch_size: 8\nbackend: "python"\n'


def test_empty_config_is_just_max_batch_size_zero() -> None:
    assert config_to_text(mc.ModelConfig()) == "max_batch_size: 0\n"


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "m" / "config.pbtxt"

    returned = write_config(full_config(), path)

    assert returned == path
    assert read_config(path) == full_config()
    assert path.read_text(encoding="utf-8") == config_to_text(full_config())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.pbtxt"]  # no temp left


def test_write_replaces_an_existing_config_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text("old", encoding="utf-8")
    os.chmod(path, 0o640)

    write_config(mc.ModelConfig(name="new", max_batch_size=4), path)

    assert read_config(path).name == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.pbtxt"]


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: "eight"\n')

    with pytest.raises(ConfigError) as info:
        read_config(path)

    assert str(info.value) == (
        f'{path}:3:17: \'max_batch_size: "eight"\': Couldn\'t parse integer: "eight"'
    )
    assert isinstance(info.value, ToolkitError)
    assert isinstance(info.value.__cause__, text_format.ParseError)


def test_unknown_field_is_reported_at_its_position() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('name: "m"\n  max_batch: 4\n')

    assert str(info.value) == (
        '2:3: Message type "inference.ModelConfig" has no field named "max_batch".'
    )


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "config.pbtxt"

    with pytest.raises(ConfigError, match="absent/config.pbtxt: cannot read model config"):
        read_config(path)
