"""A deterministic synthetic-shapes detection dataset: circles, squares and triangles.

Image `i` of a split depends only on (seed, split, i): random size and aspect ratio, a noisy
background, 0-4 shapes of random size, colour and position, drawn in order so later shapes
partly occlude earlier ones (each shape keeps at least half of its box unoccluded by any one
other shape). Ground-truth boxes are the full shape extents in original-image pixels (xyxy).
No torch here: the demo, tests and the accuracy holdout use it too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
MIN_SIDE, MAX_SIDE = 96, 192  # image width/height range in pixels
MIN_OBJECT, MAX_OBJECT = 14, 56  # object size range in pixels
MAX_OBJECTS = 4
MAX_VISIBLE_OVERLAP = 0.5  # a shape may lose at most this fraction of its box to one other
_SPLIT_OFFSETS = {"train": 0, "holdout": 1_000_003, "calibration": 2_000_003, "demo": 3_000_017}


class Split(str, Enum):
    TRAIN = "train"
    HOLDOUT = "holdout"
    CALIBRATION = "calibration"
    DEMO = "demo"


@dataclass(frozen=True, kw_only=True)
class ShapesImage:
    """One encoded image with its ground truth (boxes xyxy in pixels, class indices)."""

    png: bytes
    width: int
    height: int
    boxes: np.ndarray  # float32 [M, 4]
    classes: np.ndarray  # int64 [M]


def _colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    for _ in range(50):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background).sum() > 180:
            break
    return int(colour[0]), int(colour[1]), int(colour[2])


def _overlap_ok(box: np.ndarray, others: list[np.ndarray]) -> bool:
    area = (box[2] - box[0]) * (box[3] - box[1])
    for other in others:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        other_area = (other[2] - other[0]) * (other[3] - other[1])
        if inter > MAX_VISIBLE_OVERLAP * min(area, other_area):
            return False
    return True


def _draw(draw: ImageDraw.ImageDraw, cls: int, box: np.ndarray,
          colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    if cls == 0:
        draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=colour)
    elif cls == 1:
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=colour)


def _seed(seed: int, split: Split, index: int) -> int:
    return seed * 10_000_019 + _SPLIT_OFFSETS[split.value] + index


def make_image(index: int, *, split: Split = Split.TRAIN, seed: int = 0) -> ShapesImage:
    """Image `index` of `split`: the same arguments always give the same bytes."""
    rng = np.random.default_rng(_seed(seed, split, index))
    width, height = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    background = rng.integers(0, 256, size=3)
    noise = rng.normal(0.0, 10.0, size=(height, width, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    draw = ImageDraw.Draw(image)
    count = int(rng.choice(MAX_OBJECTS + 1, p=[0.05, 0.25, 0.3, 0.25, 0.15]))
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    for _ in range(count):
        for _attempt in range(20):
            side = rng.integers(MIN_OBJECT, min(MAX_OBJECT, width, height) + 1)
            aspect = 1.0 if rng.random() < 0.5 else rng.uniform(0.75, 1.33)
            w = int(np.clip(round(side * aspect), MIN_OBJECT, width))
            h = int(np.clip(side, MIN_OBJECT, height))
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
            if _overlap_ok(box, boxes):
                cls = int(rng.integers(0, len(CLASSES)))
                _draw(draw, cls, box, _colour(rng, background))
                boxes.append(box)
                classes.append(cls)
                break
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ShapesImage(
        png=buffer.getvalue(), width=width, height=height,
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.array(classes, dtype=np.int64),
    )


@lru_cache(maxsize=8)
def make_split(count: int, *, split: Split, seed: int = 0) -> tuple[ShapesImage, ...]:
    """Images 0..count-1 of `split` (cached per process)."""
    return tuple(make_image(i, split=split, seed=seed) for i in range(count))


def blank_image(width: int = 160, height: int = 120, colour: tuple[int, int, int] = (90, 90, 90),
                ) -> bytes:
    """A PNG without any object (for the 'no detections' case)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()
