"""examples.model_zoo.export and examples.model_zoo.stamp: reproducible bytes, dynamic batch proof,
caching."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.model_zoo import ModelZooError, export, stamp
from examples.model_zoo.export import (
    deterministic_torch,
    export_onnx,
    npz_bytes,
    verify_dynamic_batch,
    write_npz,
)
from examples.model_zoo.stamp import is_up_to_date, make_stamp, write_stamp
from tests.onnx_factories import make_baked_batch_model, make_image_model


def tiny_model() -> torch.nn.Module:
    with deterministic_torch(0):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU())


def test_export_is_byte_identical_and_dynamic(tmp_path: Path) -> None:
    example = torch.zeros(2, 3, 4)
    first = export_onnx(tiny_model(), example, tmp_path / "a.onnx", input_name="x",
                        output_name="y")
    second = export_onnx(tiny_model(), example, tmp_path / "b.onnx", input_name="x",
                         output_name="y")
    assert first == second == (tmp_path / "a.onnx").read_bytes()
    verify_dynamic_batch(tmp_path / "a.onnx", np.ones((3, 3, 4), np.float32))


def test_baked_batch_is_caught(tmp_path: Path) -> None:
    path = make_baked_batch_model(tmp_path / "baked.onnx", features=8)
    with pytest.raises(ModelZooError, match="batch size"):
        verify_dynamic_batch(path, np.ones((4, 8), np.float32))


def test_dynamic_model_passes(tmp_path: Path) -> None:
    path = make_image_model(tmp_path / "image.onnx")
    verify_dynamic_batch(path, np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32))


def test_npz_is_reproducible_and_loadable(tmp_path: Path) -> None:
    arrays = {"pixels": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "b": np.arange(3)}
    assert npz_bytes(arrays) == npz_bytes(dict(reversed(arrays.items())))
    write_npz(tmp_path / "x.npz", arrays)
    with np.load(tmp_path / "x.npz") as loaded:
        assert sorted(loaded) == ["b", "pixels"]
        np.testing.assert_array_equal(loaded["pixels"], arrays["pixels"])


def test_deterministic_torch_restores_settings() -> None:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    with deterministic_torch(5) as generator:
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        a = torch.randperm(10, generator=generator)
    with deterministic_torch(5) as generator:
        b = torch.randperm(10, generator=generator)
    assert torch.equal(a, b)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_stamp_tracks_sources_and_settings(tmp_path: Path) -> None:
    base = make_stamp(modules=[export, stamp], settings={"seed": "1"})
    assert base == make_stamp(modules=[stamp, export], settings={"seed": "1"})
    assert base.digest != make_stamp(modules=[export, stamp], settings={"seed": "2"}).digest
    assert base.digest != make_stamp(modules=[export], settings={"seed": "1"}).digest
    expected_source = hashlib.sha256(Path(export.__file__).read_bytes()).hexdigest()
    assert ("examples.model_zoo.export", expected_source) in base.sources


def test_is_up_to_date(tmp_path: Path) -> None:
    wanted = make_stamp(modules=[stamp], settings={"seed": "1"})
    output = tmp_path / "out.bin"
    stamp_path = tmp_path / "stamp.json"
    assert not is_up_to_date(stamp_path, wanted, [output])  # no stamp yet
    write_stamp(stamp_path, wanted)
    assert not is_up_to_date(stamp_path, wanted, [output])  # output missing
    output.write_bytes(b"x")
    assert is_up_to_date(stamp_path, wanted, [output])
    other = make_stamp(modules=[stamp], settings={"seed": "2"})
    assert not is_up_to_date(stamp_path, other, [output])
    stamp_path.write_text("{not json")
    assert not is_up_to_date(stamp_path, wanted, [output])
