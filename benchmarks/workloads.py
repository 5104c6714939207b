"""The two benchmark workloads: the same real encoded images for every system.

- `light`: the `digits` ensemble on PNGs of the digits test split (8x8, a few hundred bytes
  each), so per-request overhead dominates.
- `heavy`: the `resnet` ensemble on deterministic synthetic JPEGs from
  `model_zoo.resnet.synthetic_images` (a ResNet-style CNN on 224x224), so compute dominates.

Every request carries rows of the ensemble input `IMAGE` (BYTES, [N, 1]): one encoded image
per row. Images are never random bytes: they decode like real inputs.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from enum import Enum

import numpy as np

from benchmarks.errors import BenchmarkError
from processing.steps import IMAGE

log = logging.getLogger(__name__)

IMAGE_INPUT = IMAGE  # the ensemble input of both pipelines


class WorkloadName(str, Enum):
    LIGHT = "light"
    HEAVY = "heavy"


PIPELINES: dict[WorkloadName, str] = {
    WorkloadName.LIGHT: "digits",
    WorkloadName.HEAVY: "resnet",
}


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A pipeline and the encoded images sent to it (all distinct unless `count` exceeded)."""

    name: WorkloadName
    pipeline: str
    images: tuple[bytes, ...]

    def image_batch(self, size: int, *, offset: int = 0) -> np.ndarray:
        """`size` images from `offset` (wrapping around) as the `IMAGE` tensor: object [size, 1]."""
        if size < 1:
            raise BenchmarkError(f"batch size must be >= 1, got {size}")
        rows = [self.images[(offset + i) % len(self.images)] for i in range(size)]
        return image_tensor(rows)

    def samples(self) -> dict[str, np.ndarray]:
        """Every image as rows of the ensemble input, e.g. for perf_analyzer's input data."""
        return {IMAGE_INPUT: image_tensor(self.images)}


def image_tensor(images: tuple[bytes, ...] | list[bytes]) -> np.ndarray:
    """Encoded images as a BYTES tensor: dtype object, shape [N, 1]."""
    array = np.empty((len(images), 1), dtype=object)
    for i, blob in enumerate(images):
        array[i, 0] = bytes(blob)
    return array


def _cycle(images: list[bytes], count: int) -> tuple[bytes, ...]:
    if not images:
        raise BenchmarkError("the workload source produced no images")
    return tuple(images[i % len(images)] for i in range(count))


def light_images(count: int) -> tuple[bytes, ...]:
    """`count` PNGs of the digits test split, in split order (repeating past its end)."""
    from model_zoo.digits import encoded_split  # noqa: PLC0415  (pulls in torch, sklearn)

    blobs, _ = encoded_split("test")
    return _cycle(list(blobs), count)


def heavy_images(count: int) -> tuple[bytes, ...]:
    """`count` deterministic synthetic JPEGs for the ResNet workload (model_zoo.resnet)."""
    try:
        resnet = importlib.import_module("model_zoo.resnet")
    except ModuleNotFoundError as e:
        raise BenchmarkError(
            "the heavy workload needs model_zoo.resnet (the ResNet example built by "
            "`make models`); it is not importable") from e
    images = [bytes(b) for b in resnet.synthetic_images(count)]
    if len(images) != count:
        raise BenchmarkError(f"model_zoo.resnet.synthetic_images({count}) returned "
                             f"{len(images)} images")
    return tuple(images)


def load_workload(name: WorkloadName | str, *, count: int) -> Workload:
    """The named workload with `count` real encoded images."""
    try:
        workload = WorkloadName(name)
    except ValueError:
        choices = ", ".join(w.value for w in WorkloadName)
        raise BenchmarkError(f"unknown workload {name!r}; choose one of {choices}") from None
    if count < 1:
        raise BenchmarkError(f"a workload needs at least 1 image, got count={count}")
    images = light_images(count) if workload is WorkloadName.LIGHT else heavy_images(count)
    log.debug("workload %s: %d images, %d bytes in all", workload.value, len(images),
              sum(len(b) for b in images))
    return Workload(name=workload, pipeline=PIPELINES[workload], images=images)
