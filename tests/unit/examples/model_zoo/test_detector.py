"""examples.model_zoo.detector: target assignment, the model's YOLO output format, ground truth."""

from __future__ import annotations

import numpy as np
import torch

from examples.model_zoo import detector, shapes


def test_anchor_points_are_cell_centres() -> None:
    points = detector.anchor_points()
    assert points.shape == (detector.GRID * detector.GRID, 2)
    np.testing.assert_allclose(points[0], [4, 4])
    np.testing.assert_allclose(points[1], [12, 4])  # row-major: x varies fastest


def test_assign_targets_marks_cells_near_the_centre_of_each_box() -> None:
    boxes = np.zeros((1, 2, 4), dtype=np.float32)
    boxes[0, 0] = (0, 0, 40, 40)  # centre (20, 20)
    boxes[0, 1] = (100, 100, 106, 106)  # tiny: only the nearest cell
    classes = np.array([[2, 1]])
    positive, cls, target = detector.assign_targets(boxes, classes, radius=1.5)
    cells = np.flatnonzero(positive[0])
    assert cls[0, cells].tolist().count(2) == 9  # a 3x3 block around (20, 20)
    tiny = 12 * detector.GRID + 12  # the cell holding (103, 103)
    assert positive[0, tiny] and cls[0, tiny] == 1
    np.testing.assert_allclose(target[0, tiny], [100, 100, 106, 106])
    assert not positive[0, detector.GRID * detector.GRID - 1]


def test_model_output_is_yolo_format() -> None:
    torch.manual_seed(0)
    model = detector.ShapesDetector().eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, detector.INPUT_SIZE, detector.INPUT_SIZE))
    assert tuple(out.shape) == (2, 4 + len(shapes.CLASSES), detector.GRID * detector.GRID)
    assert torch.all(out[:, 2:4] > 0) and torch.all((out[:, 4:] >= 0) & (out[:, 4:] <= 1))


def test_padded_ground_truth_goes_to_model_space() -> None:
    images = shapes.make_split(3, split=shapes.Split.HOLDOUT)
    _, geometry = detector.preprocess([i.png for i in images])
    boxes, classes = detector.padded_ground_truth(images, geometry)
    assert boxes.shape == (3, shapes.MAX_OBJECTS, 4)
    for row, image in enumerate(images):
        n = len(image.classes)
        assert classes[row, :n].tolist() == image.classes.tolist()
        assert np.all(classes[row, n:] == -1)
        assert np.all(boxes[row, :n] <= detector.INPUT_SIZE + 1e-3)
