"""examples.model_zoo.shapes: the synthetic detection dataset is deterministic and well formed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from examples.model_zoo import shapes


def test_images_are_deterministic_per_split_and_index() -> None:
    a = shapes.make_image(5, split=shapes.Split.TRAIN, seed=1)
    b = shapes.make_image(5, split=shapes.Split.TRAIN, seed=1)
    c = shapes.make_image(5, split=shapes.Split.HOLDOUT, seed=1)
    assert a.png == b.png and a.png != c.png
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_ground_truth_lies_inside_the_image_and_respects_the_overlap_bound() -> None:
    counts = []
    for i in range(60):
        image = shapes.make_image(i, split=shapes.Split.TRAIN)
        decoded = Image.open(io.BytesIO(image.png))
        assert decoded.size == (image.width, image.height)
        assert shapes.MIN_SIDE <= image.width <= shapes.MAX_SIDE
        boxes = image.boxes
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= image.width)
        assert np.all(boxes[:, 1] >= 0) and np.all(boxes[:, 3] <= image.height)
        assert set(image.classes.tolist()) <= set(range(len(shapes.CLASSES)))
        counts.append(len(boxes))
        for j in range(len(boxes)):
            for k in range(j):
                assert shapes._overlap_ok(boxes[j], [boxes[k]])
    assert 0 in counts and max(counts) >= 3  # empty images and crowded ones both occur


def test_blank_image_has_no_objects() -> None:
    assert Image.open(io.BytesIO(shapes.blank_image(50, 40))).size == (50, 40)
