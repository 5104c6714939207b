"""tritonkit.processing.steps: the functions models.yaml names, called like the Triton adapter
does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tritonkit.processing import steps
from tritonkit.processing.step_api import StepContext, StepInputError

DIGITS_PARAMS = {"height": "8", "width": "8", "channels": "1", "mean": "0.0", "std": "1.0"}


def png(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_batch(*blobs: object) -> np.ndarray:
    arr = np.empty((len(blobs), 1), dtype=np.object_)
    arr[:, 0] = blobs
    return arr


def test_preprocess_step_outputs_pixels() -> None:
    result = steps.preprocess_images({"IMAGE": image_batch(png(0), png(255), png(51, 16))},
                                     StepContext(parameters=DIGITS_PARAMS))
    pixels = result.outputs["PIXELS"]
    assert result.errors == {}
    assert pixels.shape == (3, 1, 8, 8) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[:, 0, 0, 0], [0.0, 1.0, 0.2], atol=1e-6)


def test_preprocess_step_accepts_flat_rows_and_per_channel_lists() -> None:
    params = {**DIGITS_PARAMS, "channels": "3", "mean": "0.5, 0.5, 0.5", "std": "[0.5,0.5,0.5]"}
    result = steps.preprocess_images({"IMAGE": np.array([png(255)], dtype=np.object_)},
                                     StepContext(parameters=params))
    np.testing.assert_allclose(result.outputs["PIXELS"], 1.0)
    assert result.outputs["PIXELS"].shape == (1, 3, 8, 8)


def test_preprocess_step_reports_bad_rows() -> None:
    result = steps.preprocess_images({"IMAGE": image_batch(png(10), b"", png(20)[:30])},
                                     StepContext(parameters=DIGITS_PARAMS))
    assert sorted(result.errors) == [1, 2]
    assert "empty" in result.errors[1]
    assert not result.outputs["PIXELS"][1:].any()


def test_preprocess_step_honours_max_pixels() -> None:
    params = {**DIGITS_PARAMS, "max_pixels": "100"}
    result = steps.preprocess_images({"IMAGE": image_batch(png(1, 8), png(1, 11))},
                                     StepContext(parameters=params))
    assert list(result.errors) == [1]
    assert "above the limit of 100" in result.errors[1]


def test_missing_input_is_named() -> None:
    with pytest.raises(StepInputError, match="missing input 'IMAGE'.*given: PIXELS"):
        steps.preprocess_images({"PIXELS": np.zeros(1)}, StepContext(parameters=DIGITS_PARAMS))
    with pytest.raises(StepInputError, match="missing input 'LOGITS'"):
        steps.classify_top_k({}, StepContext())


@pytest.mark.parametrize(("image", "match"), [
    (np.empty((2, 2), dtype=np.object_), r"\[batch, 1\]"),
    (np.zeros((2, 1), dtype=np.float32), "BYTES"),
])
def test_preprocess_step_refuses_bad_input_tensor(image: np.ndarray, match: str) -> None:
    with pytest.raises(StepInputError, match=match):
        steps.preprocess_images({"IMAGE": image}, StepContext(parameters=DIGITS_PARAMS))


@pytest.mark.parametrize(("params", "match"), [
    ({k: v for k, v in DIGITS_PARAMS.items() if k != "height"}, "missing parameter 'height'"),
    ({**DIGITS_PARAMS, "width": "eight"}, "'width' must be an integer"),
    ({**DIGITS_PARAMS, "std": "one"}, "'std' must be a number"),
    ({**DIGITS_PARAMS, "channels": "4"}, "channels must be 1 or 3"),
])
def test_preprocess_step_refuses_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(StepInputError, match=match):
        steps.preprocess_images({"IMAGE": image_batch(png(0))}, StepContext(parameters=params))


def test_classify_top_k_outputs() -> None:
    logits = np.array([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    context = StepContext(parameters={"top_k": "3"}, labels=("a", "b", "c", "d"))
    result = steps.classify_top_k({"LOGITS": logits}, context)
    assert result.errors == {}
    assert result.outputs["LABELS"].dtype == np.object_
    assert result.outputs["LABELS"].tolist() == [[b"b", b"d", b"c"], [b"a", b"b", b"c"]]
    assert result.outputs["CLASS_INDICES"].dtype == np.int32
    np.testing.assert_array_equal(result.outputs["CLASS_INDICES"], [[1, 3, 2], [0, 1, 2]])
    exp = np.exp(logits[0] - 5.0)
    np.testing.assert_allclose(result.outputs["SCORES"][0], (exp / exp.sum())[[1, 3, 2]],
                               rtol=1e-6)
    assert result.outputs["SCORES"].dtype == np.float32


def test_classify_top_k_without_labels_uses_indices_and_default_k() -> None:
    result = steps.classify_top_k({"LOGITS": np.eye(3, dtype=np.float32)}, StepContext())
    assert result.outputs["LABELS"].tolist() == [[b"0"], [b"1"], [b"2"]]


def test_classify_top_k_non_finite_rows_are_row_errors() -> None:
    logits = np.zeros((4, 10), dtype=np.float32)
    logits[0, 7] = 9.0
    logits[1, 2] = np.nan
    logits[2, 0] = np.inf
    logits[3, 4] = 9.0
    result = steps.classify_top_k({"LOGITS": logits}, StepContext(parameters={"top_k": "3"}))
    assert sorted(result.errors) == [1, 2]
    assert "NaN or Inf" in result.errors[1]
    assert result.outputs["CLASS_INDICES"][0, 0] == 7
    assert result.outputs["CLASS_INDICES"][3, 0] == 4
    assert np.all(np.isfinite(result.outputs["SCORES"]))


@pytest.mark.parametrize(("logits", "params", "match"), [
    (np.zeros((2, 3), np.float32), {"top_k": "4"}, "between 1 and 3"),
    (np.zeros((2, 3), np.int32), {}, "floating point"),
    (np.zeros(3, np.float32), {}, r"\[batch, classes\]"),
    (np.zeros((2, 3), np.float32), {"top_k": "x"}, "'top_k' must be an integer"),
])
def test_classify_top_k_refuses_bad_input(logits: np.ndarray, params: dict, match: str) -> None:
    with pytest.raises(StepInputError, match=match):
        steps.classify_top_k({"LOGITS": logits}, StepContext(parameters=params))


def test_byte_sizes_counts_each_element() -> None:
    from tritonkit.processing.step_api import StepContext
    from tritonkit.processing.steps import byte_sizes

    blobs = np.array([[b"abc"], [b""], [b"\x00" * 7]], dtype=object)
    result = byte_sizes({"IMAGE": blobs}, StepContext(parameters={}, labels=()))
    assert result.outputs["SIZES"].tolist() == [[3], [0], [7]]
    assert result.outputs["SIZES"].dtype == np.int64 and not result.errors
