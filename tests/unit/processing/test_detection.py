"""tritonkit.processing.detection: letterbox geometry, batched decode + class-aware NMS, and
mAP@0.5."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tritonkit.processing import detection
from tritonkit.processing.detection import ImageDetections
from tritonkit.processing.step_api import StepInputError


def png(width: int, height: int, colour: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def yolo(boxes_cxcywh: list[tuple[float, float, float, float]], scores: list[list[float]],
         anchors: int = 8) -> np.ndarray:
    """One image's YOLO output [1, 4 + C, anchors]; unused anchors score 0."""
    classes = len(scores[0])
    out = np.zeros((1, 4 + classes, anchors), dtype=np.float32)
    for i, (box, s) in enumerate(zip(boxes_cxcywh, scores, strict=True)):
        out[0, :4, i] = box
        out[0, 4:, i] = s
    return out


def identity_letterbox(batch: int = 1, size: int = 128) -> np.ndarray:
    return np.tile(np.array([1.0, 0.0, 0.0, size, size], dtype=np.float32), (batch, 1))


def test_letterbox_keeps_aspect_and_records_geometry() -> None:
    pixels, geometry, errors = detection.letterbox_images([png(200, 100), png(64, 128)],
                                                          height=128, width=128)
    assert errors == {}
    assert pixels.shape == (2, 3, 128, 128) and pixels.dtype == np.float32
    np.testing.assert_allclose(geometry[0], [0.64, 0, 32, 200, 100], rtol=1e-6)
    np.testing.assert_allclose(geometry[1], [1.0, 32, 0, 64, 128], rtol=1e-6)
    # image 0: rows 32..95 hold the red image, rows above are the grey pad (114)
    assert pixels[0, 0, 64, 64] == pytest.approx(1.0)
    assert pixels[0, 0, 10, 64] == pytest.approx(114 / 255)
    assert pixels[1, 0, 64, 10] == pytest.approx(114 / 255)
    assert pixels[1, 0, 64, 64] == pytest.approx(1.0)


def test_letterbox_reports_bad_rows_and_fills_the_pad_value() -> None:
    pixels, geometry, errors = detection.letterbox_images([b"not an image", png(10, 10)],
                                                          height=32, width=32, pad_value=0)
    assert list(errors) == [0] and "unrecognized image data" in errors[0]
    assert np.all(pixels[0] == 0.0)
    np.testing.assert_allclose(geometry[0], [1, 0, 0, 32, 32])


def test_decode_applies_threshold_and_class_aware_nms() -> None:
    raw = yolo([(50, 50, 20, 20), (51, 50, 20, 20), (50, 50, 20, 20), (100, 100, 10, 10)],
               [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.1, 0.0]])
    batch = detection.decode_detections(raw, identity_letterbox(), conf_threshold=0.25,
                                        iou_threshold=0.5, max_detections=5)
    boxes, scores, classes = batch.image(0)
    # the 0.8 box overlaps the 0.9 box of its class and is suppressed; the class-1 box at the
    # same place survives (class-aware); the 0.1 box is under the threshold
    np.testing.assert_allclose(scores, [0.9, 0.7], rtol=1e-6)
    assert classes.tolist() == [0, 1]
    np.testing.assert_allclose(boxes[0], [40, 40, 60, 60])
    assert batch.boxes.shape == (1, 5, 4) and batch.classes[0, 2:].tolist() == [-1, -1, -1]


def test_decode_maps_boxes_back_to_original_pixels_and_clips() -> None:
    raw = yolo([(64, 64, 32, 32), (126, 64, 20, 20)], [[0.9], [0.8]])
    letterbox = np.array([[0.5, 0.0, 32.0, 256.0, 128.0]], dtype=np.float32)
    boxes, _, _ = detection.decode_detections(raw, letterbox).image(0)
    np.testing.assert_allclose(boxes[0], [96, 32, 160, 96])
    np.testing.assert_allclose(boxes[1], [232, 44, 256, 84])  # x2 = 272 clipped to width


def test_decode_batches_images_independently_and_handles_no_objects() -> None:
    one = yolo([(50, 50, 20, 20)], [[0.9]])
    none = yolo([(50, 50, 20, 20)], [[0.05]])
    batch = detection.decode_detections(np.concatenate([one, none, one]),
                                        identity_letterbox(3))
    assert batch.counts.tolist() == [1, 0, 1]
    assert batch.scores[1].tolist() == [0.0] * detection.DEFAULT_MAX_DETECTIONS


def test_decode_caps_at_max_detections_in_score_order() -> None:
    boxes = [(10 + 20 * i, 10, 8, 8) for i in range(6)]
    raw = yolo(boxes, [[0.3 + 0.1 * i] for i in range(6)])
    batch = detection.decode_detections(raw, identity_letterbox(), max_detections=3)
    np.testing.assert_allclose(batch.scores[0], [0.8, 0.7, 0.6], rtol=1e-6)


def test_decode_rejects_bad_shapes_and_thresholds() -> None:
    with pytest.raises(StepInputError, match="4 \\+ classes"):
        detection.decode_detections(np.zeros((1, 4, 8)), identity_letterbox())
    with pytest.raises(StepInputError, match="letterbox"):
        detection.decode_detections(np.zeros((2, 6, 8)), identity_letterbox(1))
    with pytest.raises(StepInputError, match="conf_threshold"):
        detection.decode_detections(np.zeros((1, 6, 8)), identity_letterbox(),
                                    conf_threshold=1.5)


def det(boxes: list[list[float]], classes: list[int],
        scores: list[float] | None = None) -> ImageDetections:
    return ImageDetections(boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                           classes=np.array(classes, dtype=np.int64),
                           scores=np.array(scores or [1.0] * len(classes), dtype=np.float32))


def test_map_is_one_for_perfect_predictions_and_drops_for_misses() -> None:
    truth = [det([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]), det([[5, 5, 15, 15]], [0])]
    assert detection.mean_average_precision(truth, truth) == pytest.approx(1.0)
    # class 0: one of two found (AP 0.5); class 1: found (AP 1.0) -> mAP 0.75
    half = [det([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1], [0.9, 0.8]), det([], [])]
    assert detection.mean_average_precision(half, truth) == pytest.approx(0.75)


def test_map_counts_wrong_class_and_low_iou_as_false_positives() -> None:
    truth = [det([[0, 0, 10, 10]], [0])]
    wrong_class = [det([[0, 0, 10, 10]], [1])]
    shifted = [det([[6, 6, 16, 16]], [0])]  # IoU 16/184 < 0.5
    assert detection.mean_average_precision(wrong_class, truth) == 0.0
    assert detection.mean_average_precision(shifted, truth) == 0.0
    # a higher-scored false positive before the hit halves the precision at full recall
    ranked = [det([[50, 50, 60, 60], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    assert detection.mean_average_precision(ranked, truth) == pytest.approx(0.5)


def test_map_without_ground_truth() -> None:
    assert detection.mean_average_precision([det([], [])], [det([], [])]) == 1.0
    assert detection.mean_average_precision([det([[0, 0, 1, 1]], [0])], [det([], [])]) == 0.0
