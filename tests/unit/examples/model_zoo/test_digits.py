"""examples.model_zoo.digits: the fixed split, its encoding, the spec contract, and (slow)
accuracy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from PIL import Image
from sklearn.datasets import load_digits

from examples.model_zoo import ModelZooError, digits
from tritonkit.processing.images import preprocess_images

ROOT = Path(__file__).resolve().parents[4]
ARTIFACTS = ROOT / "artifacts" / "digits"


def test_encoded_split_is_deterministic_and_stratified() -> None:
    train_blobs, train_labels = digits.encoded_split("train")
    test_blobs, test_labels = digits.encoded_split("test")
    again_blobs, again_labels = digits.encoded_split("test")
    assert again_blobs == test_blobs
    np.testing.assert_array_equal(again_labels, test_labels)
    assert len(train_blobs) + len(test_blobs) == 1797
    assert len(test_blobs) == 540
    assert train_labels.dtype == np.int64
    all_counts = np.bincount(load_digits().target, minlength=10)
    test_counts = np.bincount(test_labels, minlength=10)
    np.testing.assert_array_equal(np.bincount(train_labels, minlength=10) + test_counts,
                                  all_counts)
    assert np.all(np.abs(test_counts - all_counts * digits.TEST_FRACTION) <= 1)


def test_encoded_split_returns_copies() -> None:
    blobs, labels = digits.encoded_split("train")
    blobs.clear()
    labels[:] = -1
    fresh_blobs, fresh_labels = digits.encoded_split("train")
    assert len(fresh_blobs) == 1257
    assert fresh_labels.min() == 0


def test_pngs_hold_the_scaled_digits() -> None:
    source = load_digits()
    blobs, labels = digits.encoded_split("train")
    image = Image.open(io.BytesIO(blobs[0]))
    assert (image.format, image.mode, image.size) == ("PNG", "L", (8, 8))
    decoded = np.asarray(image)
    matches = [i for i in np.flatnonzero(source.target == labels[0])
               if np.array_equal(np.rint(source.images[i] * 255 / 16).astype(np.uint8), decoded)]
    assert matches, "the first training PNG is no scaled digits image of its label"
    assert decoded.max() <= 255 and decoded.dtype == np.uint8


def test_unknown_split() -> None:
    with pytest.raises(ModelZooError, match="'train' or 'test'"):
        digits.encoded_split("validation")  # type: ignore[arg-type]


def test_preprocessing_constants_match_models_yaml() -> None:
    spec = yaml.safe_load((ROOT / "models.yaml").read_text(encoding="utf-8"))
    (step,) = [s for s in spec["python_steps"] if s["name"] == "digits_preprocess"]
    params = step["parameters"]
    assert (params["height"], params["width"], params["channels"]) == \
        (digits.HEIGHT, digits.WIDTH, digits.CHANNELS)
    assert (float(params["mean"]), float(params["std"])) == (digits.MEAN, digits.STD)
    (model,) = [m for m in spec["models"] if m["name"] == "digits_classifier"]
    assert model["onnx"] == f"artifacts/digits/{digits.ONNX_FILE}"
    assert model["labels"] == f"artifacts/digits/{digits.LABELS_FILE}"


def test_cnn_shapes() -> None:
    import torch

    logits = digits.DigitsCNN().eval()(torch.zeros(3, 1, 8, 8))
    assert tuple(logits.shape) == (3, 10)


def _evaluate(directory: Path) -> float:
    blobs, labels = digits.encoded_split("test")
    pixels, errors = preprocess_images(blobs, height=8, width=8, channels=1, mean=0.0, std=1.0)
    assert errors == {}
    session = ort.InferenceSession(str(directory / digits.ONNX_FILE),
                                   providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "pixels" and inp.shape[1:] == [1, 8, 8] and isinstance(inp.shape[0], str)
    probabilities = session.run([digits.OUTPUT_NAME], {"pixels": pixels})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)  # a softmax output
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


@pytest.mark.slow
def test_trained_onnx_reaches_the_accuracy_bar(tmp_path: Path) -> None:
    directory = ARTIFACTS if (ARTIFACTS / digits.ONNX_FILE).is_file() else tmp_path / "digits"
    if directory != ARTIFACTS:
        built = digits.build_digits(directory)
        assert not built.cached
        again = digits.build_digits(directory)
        assert again.cached and again.test_accuracy == built.test_accuracy
    accuracy = _evaluate(directory)
    assert accuracy >= digits.MIN_TEST_ACCURACY
    metrics = json.loads((directory / digits.METRICS_FILE).read_text(encoding="utf-8"))
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert (directory / digits.LABELS_FILE).read_text() == "".join(f"{i}\n" for i in range(10))
    with np.load(directory / digits.HOLDOUT_FILE) as holdout:
        assert list(holdout) == ["pixels"] and holdout["pixels"].shape == (540, 1, 8, 8)
    with np.load(directory / digits.CALIBRATION_FILE) as calibration:
        assert calibration["pixels"].shape == (300, 1, 8, 8)
        assert calibration["pixels"].dtype == np.float32
