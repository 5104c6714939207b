"""tritonkit_client.detection: parsing padded detection outputs, thresholds, annotation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tritonkit_client import BoundingBox, Detection, InvalidInputError, ServerError, annotate
from tritonkit_client.detection import _thresholds, parse_detections


def outputs() -> dict[str, np.ndarray]:
    boxes = np.zeros((2, 3, 4), dtype=np.float32)
    boxes[0, 0] = (1, 2, 11, 12)
    boxes[0, 1] = (5, 5, 9, 9)
    labels = np.array([[b"square", b"circle", b""], [b"", b"", b""]], dtype=object)
    return {"BOXES": boxes, "SCORES": np.array([[0.9, 0.4, 0], [0, 0, 0]], dtype=np.float32),
            "CLASS_INDICES": np.array([[1, 0, -1], [-1, -1, -1]], dtype=np.int32),
            "LABELS": labels, "NUM_DETECTIONS": np.array([[2], [0]], dtype=np.int32)}


def test_parse_detections_cuts_the_padding() -> None:
    found = parse_detections(outputs())
    assert [len(f) for f in found] == [2, 0]
    first = found[0][0]
    assert first == Detection(label="square", score=pytest.approx(0.9), class_index=1,
                              box=BoundingBox(x1=1.0, y1=2.0, x2=11.0, y2=12.0))
    assert first.box.width == 10.0 and first.to_dict()["box"] == [1.0, 2.0, 11.0, 12.0]


def test_parse_detections_rejects_missing_outputs() -> None:
    broken = outputs()
    del broken["LABELS"]
    with pytest.raises(ServerError, match="LABELS"):
        parse_detections(broken)


def test_thresholds_become_request_parameters() -> None:
    assert _thresholds(None, None) == {}
    assert _thresholds(0.5, 0.3) == {"conf_threshold": 0.5, "iou_threshold": 0.3}
    with pytest.raises(InvalidInputError, match="conf_threshold"):
        _thresholds(1.5, None)


def test_annotate_draws_boxes_onto_a_png() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 0, 0)).save(buffer, format="PNG")
    found = parse_detections(outputs())[0]
    drawn = Image.open(io.BytesIO(annotate(buffer.getvalue(), found)))
    assert drawn.size == (20, 20)
    assert drawn.getpixel((1, 7)) != (0, 0, 0)  # the left edge of the first box
    with pytest.raises(InvalidInputError):
        annotate(b"nope", found)
