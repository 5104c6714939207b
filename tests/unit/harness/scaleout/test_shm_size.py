"""harness.scaleout.shm_size: the formula on hand-made configs, and the committed repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from harness.scaleout.errors import ScaleoutError
from harness.scaleout.shm_size import MIB, estimate_shm_size, model_shm
from tritonkit.repository.config_io import write_config

ROOT = Path(__file__).resolve().parents[4]


def python_step(name: str, *, count: int, kind: int = mc.ModelInstanceGroup.KIND_CPU,
                max_batch: int = 8) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=max_batch)
    config.input.add(name="IMAGE", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="PIXELS", data_type=mc.TYPE_FP32, dims=[3, 4, 4])
    config.instance_group.add(count=count, kind=kind)
    return config


def test_per_instance_formula() -> None:
    need = model_shm(python_step("pre", count=2), bytes_element_size=1000)
    assert need is not None
    sample = (1000 + 4) + 3 * 4 * 4 * 4  # one BYTES element with its length, 48 fp32
    assert need.sample_bytes == sample
    assert need.per_instance_bytes == MIB + 2 * 8 * sample
    assert need.total_bytes == 2 * need.per_instance_bytes


def test_gpu_groups_count_per_gpu() -> None:
    need = model_shm(python_step("pre", count=2, kind=mc.ModelInstanceGroup.KIND_GPU),
                     gpu_count=4)
    assert need is not None and need.instances == 8


def test_non_python_models_need_none() -> None:
    assert model_shm(mc.ModelConfig(name="plan", platform="tensorrt_plan")) is None


def test_repository_total_is_rounded_mib(tmp_path: Path) -> None:
    write_config(python_step("a", count=1), tmp_path / "a" / "config.pbtxt")
    write_config(python_step("b", count=3), tmp_path / "b" / "config.pbtxt")
    estimate = estimate_shm_size(tmp_path, bytes_element_size=1000)
    raw = 64 * MIB + sum(m.total_bytes for m in estimate.models)
    assert estimate.total_bytes % MIB == 0
    assert raw <= estimate.total_bytes < raw + MIB
    assert [m.name for m in estimate.models] == ["a", "b"]
    assert estimate.compose_value == f"{estimate.total_mib}m"


def test_committed_repository_needs_more_than_the_docker_default() -> None:
    estimate = estimate_shm_size(ROOT / "model_repository")
    assert estimate.total_bytes > 64 * MIB
    assert "digits_preprocess" in [m.name for m in estimate.models]


def test_missing_repository() -> None:
    with pytest.raises(ScaleoutError, match="does not exist"):
        estimate_shm_size(Path("/nonexistent/repo"))
