"""Object detection through a pipeline that takes encoded images (BYTES) and returns padded
detections: BOXES [N, K, 4] (x1, y1, x2, y2 in original-image pixels), SCORES [N, K],
CLASS_INDICES [N, K], LABELS [N, K] and NUM_DETECTIONS [N, 1] (the `detection` pipeline of
models.yaml). Thresholds travel as request parameters; the server's defaults apply otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonkit_client.async_client import AsyncTritonClient
from tritonkit_client.errors import InvalidInputError, ServerError
from tritonkit_client.sync_client import TritonClient
from tritonkit_client.tasks import images_tensor

OUTPUTS = ("BOXES", "SCORES", "CLASS_INDICES", "LABELS", "NUM_DETECTIONS")
_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60))


@dataclass(frozen=True, kw_only=True)
class BoundingBox:
    """Pixel coordinates in the original image: (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass(frozen=True, kw_only=True)
class Detection:
    label: str
    score: float
    class_index: int
    box: BoundingBox

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "class_index": self.class_index,
                "box": [self.box.x1, self.box.y1, self.box.x2, self.box.y2]}


def _thresholds(conf_threshold: float | None, iou_threshold: float | None) -> dict[str, float]:
    parameters: dict[str, float] = {}
    for name, value in (("conf_threshold", conf_threshold), ("iou_threshold", iou_threshold)):
        if value is None:
            continue
        if not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{name} must be in [0, 1], got {value}")
        parameters[name] = float(value)
    return parameters


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def parse_detections(outputs: dict[str, NDArray[Any]]) -> list[list[Detection]]:
    """One list per image, best score first, from the padded output tensors."""
    try:
        boxes, scores, classes, labels, counts = (np.asarray(outputs[n]) for n in OUTPUTS)
    except KeyError as e:
        raise ServerError(f"the detection pipeline did not return output {e}") from e
    counts = counts.reshape(-1)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or len(counts) != len(boxes):
        raise ServerError(f"unexpected detection output shapes: boxes {boxes.shape}, "
                          f"counts {counts.shape}")
    results: list[list[Detection]] = []
    for row, count in enumerate(counts):
        n = int(min(max(count, 0), boxes.shape[1]))
        results.append([
            Detection(label=_text(labels[row, i]), score=float(scores[row, i]),
                      class_index=int(classes[row, i]),
                      box=BoundingBox(x1=float(boxes[row, i, 0]), y1=float(boxes[row, i, 1]),
                                      x2=float(boxes[row, i, 2]), y2=float(boxes[row, i, 3])))
            for i in range(n)])
    return results


def detect(
    client: TritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    version: str = "",
    image_input: str = "IMAGE",
) -> list[list[Detection]]:
    """Detect objects in encoded images; one list of Detections per image, in input order.

    `conf_threshold` / `iou_threshold` (None: the pipeline's defaults) go as request
    parameters. Large inputs are split into requests of the model's max_batch_size.
    """
    parameters = _thresholds(conf_threshold, iou_threshold)
    if not images:
        return []
    outputs = client.infer_batched(model, {image_input: images_tensor(images)},
                                   outputs=list(OUTPUTS), version=version,
                                   parameters=parameters or None)
    return parse_detections(outputs)


async def detect_async(
    client: AsyncTritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    version: str = "",
    image_input: str = "IMAGE",
    concurrency: int = 4,
) -> list[list[Detection]]:
    """The asyncio twin of `detect`; up to `concurrency` batches are in flight."""
    parameters = _thresholds(conf_threshold, iou_threshold)
    if not images:
        return []
    outputs = await client.infer_batched(model, {image_input: images_tensor(images)},
                                         outputs=list(OUTPUTS), version=version,
                                         parameters=parameters or None, concurrency=concurrency)
    return parse_detections(outputs)


def annotate(image: bytes, detections: Sequence[Detection]) -> bytes:
    """The image with each detection drawn as a labelled box, encoded as PNG."""
    from PIL import Image, ImageDraw, UnidentifiedImageError  # noqa: PLC0415

    try:
        picture = Image.open(io.BytesIO(image)).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidInputError(f"cannot decode the image to annotate it: {e}") from e
    draw = ImageDraw.Draw(picture)
    for d in detections:
        colour = _COLOURS[d.class_index % len(_COLOURS)]
        draw.rectangle((d.box.x1, d.box.y1, d.box.x2, d.box.y2), outline=colour, width=2)
        draw.text((d.box.x1 + 2, max(0.0, d.box.y1 - 11)), f"{d.label} {d.score:.2f}",
                  fill=colour)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
