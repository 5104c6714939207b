from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.onnx_factories import make_classifier, make_image_model
from tritonkit.errors import PrecisionError, ToolkitError
from tritonkit.precision.samples import (
    ModelInput,
    SamplePurpose,
    batch_size_for,
    conform_samples,
    iter_batches,
    load_samples,
    read_model_inputs,
)


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_samples_returns_requested_inputs_in_order(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    mask = np.ones((6, 3), dtype=np.int64)
    path = _npz(tmp_path / "s.npz", mask=mask, x=x, labels=np.arange(6))
    samples = load_samples(path, ["x", "mask"], purpose="holdout")
    assert list(samples) == ["x", "mask"]  # extra key "labels" ignored
    np.testing.assert_array_equal(samples["x"], x)
    np.testing.assert_array_equal(samples["mask"], mask)
    assert samples["x"].dtype == np.float32


def test_missing_key_names_file_purpose_and_key(tmp_path: Path) -> None:
    path = _npz(tmp_path / "calib.npz", pixels=np.zeros((4, 2), np.float32))
    with pytest.raises(PrecisionError) as info:
        load_samples(path, ["x"], purpose=SamplePurpose.CALIBRATION)
    message = str(info.value)
    assert "calibration" in message
    assert str(path) in message
    assert "'x'" in message and "pixels" in message
    assert isinstance(info.value, ToolkitError)


def test_mismatched_lengths(tmp_path: Path) -> None:
    path = _npz(tmp_path / "h.npz", a=np.zeros((4, 2), np.float32), b=np.zeros((5, 2), np.float32))
    with pytest.raises(PrecisionError, match=r"holdout samples .*h\.npz.*leading.*'a': 4, 'b': 5"):
        load_samples(path, ["a", "b"], purpose="holdout")


def test_empty_and_scalar_arrays_rejected(tmp_path: Path) -> None:
    empty = _npz(tmp_path / "e.npz", x=np.zeros((0, 2), np.float32))
    with pytest.raises(PrecisionError, match="0 samples"):
        load_samples(empty, ["x"], purpose="warmup")
    scalar = _npz(tmp_path / "s.npz", x=np.float32(1.0))
    with pytest.raises(PrecisionError, match="scalar"):
        load_samples(scalar, ["x"], purpose="warmup")


def test_not_an_npz(tmp_path: Path) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("definitely not a zip archive")
    with pytest.raises(PrecisionError, match=r"warmup samples .*notes\.npz.*not a NumPy \.npz"):
        load_samples(text, ["x"], purpose="warmup")
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros((3, 2), np.float32))
    with pytest.raises(PrecisionError, match="single array"):
        load_samples(npy, ["x"], purpose="warmup")
    with pytest.raises(PrecisionError, match="file not found"):
        load_samples(tmp_path / "absent.npz", ["x"], purpose="warmup")


def test_pickled_object_arrays_refused(tmp_path: Path) -> None:
    path = _npz(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(PrecisionError, match="pickle"):
        load_samples(path, ["x"], purpose="calibration")


def test_iter_batches_covers_every_row_once() -> None:
    samples = {"x": np.arange(10).reshape(10, 1), "y": np.arange(10, 20)}
    batches = list(iter_batches(samples, 4))
    assert [len(b["x"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in batches]), samples["y"])
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_batches(samples, 0))
    with pytest.raises(PrecisionError, match="disagree"):
        list(iter_batches({"x": np.zeros(3), "y": np.zeros(4)}, 2))


def test_read_model_inputs_and_conform(tmp_path: Path) -> None:
    model = make_image_model(tmp_path / "m.onnx", channels=1, size=8)
    (pixels,) = read_model_inputs(model)
    assert pixels == ModelInput(name="pixels", dtype=np.dtype(np.float32), shape=("batch", 1, 8, 8))
    good = {"pixels": np.zeros((3, 1, 8, 8), np.float32)}
    assert conform_samples(good, [pixels], model="m", purpose="holdout")["pixels"].shape == (
        3,
        1,
        8,
        8,
    )
    with pytest.raises(PrecisionError, match="float64.*expects float32"):
        conform_samples({"pixels": np.zeros((3, 1, 8, 8))}, [pixels], model="m", purpose="holdout")
    with pytest.raises(PrecisionError, match=r"shape \(3, 1, 4, 4\)"):
        conform_samples(
            {"pixels": np.zeros((3, 1, 4, 4), np.float32)}, [pixels], model="m", purpose="holdout"
        )


def test_batch_size_follows_a_fixed_leading_dim(tmp_path: Path) -> None:
    dynamic = read_model_inputs(make_classifier(tmp_path / "d.onnx"))
    fixed = read_model_inputs(make_classifier(tmp_path / "f.onnx", batch=4))
    assert batch_size_for(dynamic, 10, model="d") == 64
    assert batch_size_for(fixed, 12, model="f") == 4
    with pytest.raises(PrecisionError, match="multiple of 4"):
        batch_size_for(fixed, 10, model="f")


def test_read_model_inputs_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(PrecisionError, match=r"bad\.onnx"):
        read_model_inputs(bad)
