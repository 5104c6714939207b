"""tritonkit.processing.steps: the detection and text-embedding step functions models.yaml names."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.unit.processing.test_text import tokenizer_dir  # noqa: F401 -- fixture
from tritonkit.processing import steps
from tritonkit.processing.step_api import StepConfigError, StepContext, StepInputError, prepare_step

REPO_ROOT = Path(__file__).resolve().parents[3]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def rows(*values: object) -> np.ndarray:
    arr = np.empty((len(values), 1), dtype=np.object_)
    arr[:, 0] = values
    return arr


def test_letterbox_step_outputs_pixels_and_geometry() -> None:
    result = steps.letterbox_images({"IMAGE": rows(png(64, 32), b"")},
                                    StepContext(parameters={"height": "32", "width": "32"}))
    assert result.outputs["PIXELS"].shape == (2, 3, 32, 32)
    np.testing.assert_allclose(result.outputs["LETTERBOX"][0], [0.5, 0, 8, 64, 32])
    assert list(result.errors) == [1] and "empty" in result.errors[1]


def predictions() -> np.ndarray:
    raw = np.zeros((2, 6, 4), dtype=np.float32)
    raw[0, :4, 0] = (16, 16, 8, 8)
    raw[0, 5, 0] = 0.6  # class 1
    raw[0, :4, 1] = (8, 8, 4, 4)
    raw[0, 4, 1] = 0.3  # class 0, under a 0.5 threshold
    return raw


def letterbox() -> np.ndarray:
    return np.tile(np.array([1.0, 0.0, 0.0, 32.0, 32.0], dtype=np.float32), (2, 1))


def test_postprocess_step_pads_outputs_and_names_labels() -> None:
    context = StepContext(parameters={"max_detections": "3"}, labels=("circle", "square"))
    result = steps.detect_postprocess({"PREDICTIONS": predictions(), "LETTERBOX": letterbox()},
                                      context)
    out = result.outputs
    assert out["NUM_DETECTIONS"].tolist() == [[2], [0]]
    assert out["LABELS"][0].tolist() == [b"square", b"circle", b""]
    assert out["CLASS_INDICES"][0].tolist() == [1, 0, -1]
    assert out["BOXES"].shape == (2, 3, 4) and out["SCORES"].shape == (2, 3)
    np.testing.assert_allclose(out["BOXES"][0, 0], [12, 12, 20, 20])


def test_postprocess_thresholds_come_from_parameters() -> None:
    context = StepContext(parameters={"conf_threshold": "0.5", "iou_threshold": "0.3"})
    out = steps.detect_postprocess({"PREDICTIONS": predictions(), "LETTERBOX": letterbox()},
                                   context).outputs
    assert out["NUM_DETECTIONS"].tolist() == [[1], [0]]
    assert out["LABELS"][0, 0] == b"1"  # no labels file: the class index as text
    with pytest.raises(StepInputError, match="conf_threshold"):
        steps.detect_postprocess({"PREDICTIONS": predictions(), "LETTERBOX": letterbox()},
                                 StepContext(parameters={"conf_threshold": "high"}))


def test_tokenize_and_pool_steps(tokenizer_dir: Path) -> None:  # noqa: F811
    context = StepContext(parameters={"tokenizer_dir": str(tokenizer_dir), "max_length": "8"})
    result = steps.tokenize_text({"TEXT": rows(b"hello world", b"", b"\xff")}, context)
    assert result.outputs["INPUT_IDS"].tolist()[:2] == [[2, 4, 5, 3], [2, 3, 0, 0]]
    assert list(result.errors) == [2]
    hidden = np.ones((3, 4, 2), dtype=np.float32)
    pooled = steps.mean_pool_embeddings(
        {"HIDDEN": hidden, "ATTENTION_MASK": result.outputs["ATTENTION_MASK"]}, StepContext())
    np.testing.assert_allclose(np.linalg.norm(pooled.outputs["EMBEDDING"], axis=1), 1.0,
                               rtol=1e-6)


def test_models_yaml_matches_the_example_models() -> None:
    from examples.model_zoo import detector

    spec = yaml.safe_load((REPO_ROOT / "models.yaml").read_text())
    by_name = {s["name"]: s for s in spec["python_steps"]}
    params = by_name["detection_preprocess"]["parameters"]
    assert (params["height"], params["width"], params["pad_value"]) == (
        detector.INPUT_SIZE, detector.INPUT_SIZE, detector.PAD_VALUE)
    post = by_name["detection_postprocess"]
    assert post["parameters"]["conf_threshold"] == detector.EVAL_CONF_THRESHOLD
    assert post["parameters"]["iou_threshold"] == detector.EVAL_IOU_THRESHOLD
    assert by_name["text_tokenize"]["parameters"]["max_length"] == 256


def test_tokenizer_asset_resolves_against_the_model_directory(
        tokenizer_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    import shutil

    model_dir = tmp_path / "text_tokenize"
    shutil.copytree(tokenizer_dir, model_dir / "assets" / "tokenizer")
    context = StepContext(parameters={"tokenizer_dir": "assets/tokenizer", "max_length": "6"},
                          model_dir=model_dir)
    prepared = prepare_step(steps.tokenize_text, context)
    assert prepared.preparation is not None  # the tokenizer was loaded when the model loaded
    result = steps.tokenize_text({"TEXT": rows(b"hello world")}, prepared)
    assert result.outputs["INPUT_IDS"].tolist() == [[2, 4, 5, 3]]


def test_tokenizer_step_fails_to_prepare_without_its_tokenizer(tmp_path: Path) -> None:
    context = StepContext(parameters={"tokenizer_dir": "assets/tokenizer", "max_length": "8"},
                          model_dir=tmp_path)
    missing = tmp_path / "assets" / "tokenizer"
    with pytest.raises(StepConfigError, match=f"tokenizer_dir.*{missing}"):
        prepare_step(steps.tokenize_text, context)
    with pytest.raises(StepConfigError, match="is relative"):
        prepare_step(steps.tokenize_text,
                     StepContext(parameters={"tokenizer_dir": "assets/tokenizer"}))
