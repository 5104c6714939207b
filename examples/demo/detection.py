"""Detection end to end: served mAP@0.5 over HTTP and gRPC next to the in-process figure."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonkit_client import Detection, detect

from examples.demo.protocols import over_protocols
from examples.model_zoo.shapes import ShapesImage, Split, make_split
from tritonkit.build import ReferencePipeline
from tritonkit.processing import ImageDetections, mean_average_precision
from tritonkit.server import ServerURLs
from tritonkit.spec import BuildSpec

log = logging.getLogger(__name__)

PIPELINE = "detection"
DEMO_IMAGES = 120
TOLERANCE = 1e-4  # served and in-process mAP must agree to this


@dataclass(frozen=True, kw_only=True)
class DetectionRun:
    protocol: str
    map50: float
    seconds: float
    detections: int


@dataclass(frozen=True, kw_only=True)
class DetectionReport:
    images: int
    objects: int
    reference_map50: float
    runs: tuple[DetectionRun, ...]

    @property
    def consistent(self) -> bool:
        return all(abs(r.map50 - self.reference_map50) <= TOLERANCE for r in self.runs)


def demo_images(count: int = DEMO_IMAGES) -> tuple[ShapesImage, ...]:
    """Synthetic images never used for training, calibration or the holdout."""
    return make_split(count, split=Split.DEMO)


def ground_truth(images: Sequence[ShapesImage]) -> list[ImageDetections]:
    return [ImageDetections(boxes=i.boxes, classes=i.classes,
                            scores=np.ones(len(i.classes), dtype=np.float32)) for i in images]


def reference_detections(repository: Path, spec: BuildSpec,
                         images: Sequence[ShapesImage]) -> list[ImageDetections]:
    """The same step functions and ONNX model, run in this process."""
    pipeline = ReferencePipeline(repository, PIPELINE,
                                 onnx_models={m.name: m.onnx for m in spec.models})
    out = pipeline({"IMAGE": np.array([i.png for i in images], dtype=object).reshape(-1, 1)})
    counts = np.asarray(out["NUM_DETECTIONS"]).reshape(-1)
    return [ImageDetections(boxes=out["BOXES"][r, :n], classes=out["CLASS_INDICES"][r, :n],
                            scores=out["SCORES"][r, :n]) for r, n in enumerate(counts)]


def as_image_detections(found: Sequence[Sequence[Detection]]) -> list[ImageDetections]:
    return [ImageDetections(
        boxes=np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in row],
                       dtype=np.float32).reshape(-1, 4),
        classes=np.array([d.class_index for d in row], dtype=np.int64),
        scores=np.array([d.score for d in row], dtype=np.float32)) for row in found]


def run_detection(repository: Path, spec: BuildSpec, urls: ServerURLs, *,
                  images: Sequence[ShapesImage] | None = None) -> DetectionReport:
    images = tuple(images) if images is not None else demo_images()
    truth = ground_truth(images)
    reference = mean_average_precision(reference_detections(repository, spec, images), truth)
    runs = [DetectionRun(protocol=protocol, seconds=seconds,
                         map50=mean_average_precision(as_image_detections(found), truth),
                         detections=sum(len(f) for f in found))
            for protocol, found, seconds in over_protocols(
                urls, PIPELINE, lambda client: detect(client, PIPELINE, [i.png for i in images]))]
    return DetectionReport(images=len(images), objects=sum(len(i.classes) for i in images),
                           reference_map50=reference, runs=tuple(runs))
