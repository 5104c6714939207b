"""The benchmark workloads: the same real encoded inputs for every system.

- `light`: the `digits` ensemble on PNGs of the digits test split (8x8, a few hundred bytes
  each), so per-request overhead dominates.
- `heavy`: the `resnet` ensemble on deterministic synthetic JPEGs from
  `examples.model_zoo.resnet.synthetic_images` (a ResNet-style CNN on 224x224), so compute
  dominates.
- `detection`: the `detection` ensemble on PNGs of the synthetic-shapes demo split
  (`examples.model_zoo.shapes.make_split(..., split=Split.DEMO)`, images the detector never trained
  on).
- `embeddings`: the `embeddings` ensemble on UTF-8 sentences
(`examples.demo.embeddings.DEMO_SENTENCES`).

Every request carries rows of the ensemble's input (`IMAGE`, or `TEXT` for embeddings; BYTES,
[N, 1]): one encoded image or sentence per row. Inputs are never random bytes: images decode
like real inputs and sentences tokenize like real text. Only light and heavy run in the
side-by-side systems comparison (hey, FastAPI peer, in-process limit); every workload can run
under perf_analyzer.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from enum import Enum

import numpy as np

from harness.benchmarks.errors import BenchmarkError
from tritonkit.processing import IMAGE, TEXT

log = logging.getLogger(__name__)

IMAGE_INPUT = IMAGE  # the ensemble input of the image pipelines
TEXT_INPUT = TEXT  # the ensemble input of the embeddings pipeline


# What a classification request asks for: the top-3 classes per image through Triton's
# classification extension (the FastAPI peer answers the same request the same way).
CLASSIFICATION_OUTPUTS = ("PROBABILITIES",)
CLASS_COUNTS = {"PROBABILITIES": 3}


class WorkloadName(str, Enum):
    LIGHT = "light"
    HEAVY = "heavy"
    DETECTION = "detection"
    EMBEDDINGS = "embeddings"


PIPELINES: dict[WorkloadName, str] = {
    WorkloadName.LIGHT: "digits",
    WorkloadName.HEAVY: "resnet",
    WorkloadName.DETECTION: "detection",
    WorkloadName.EMBEDDINGS: "embeddings",
}

INPUT_NAMES: dict[WorkloadName, str] = {
    WorkloadName.LIGHT: IMAGE_INPUT,
    WorkloadName.HEAVY: IMAGE_INPUT,
    WorkloadName.DETECTION: IMAGE_INPUT,
    WorkloadName.EMBEDDINGS: TEXT_INPUT,
}


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A pipeline and the encoded items sent to it (all distinct unless the source runs out).

    `items` are encoded images, or UTF-8 sentences for text pipelines; each is one row of the
    ensemble input `input_name`."""

    name: WorkloadName
    pipeline: str
    items: tuple[bytes, ...]
    input_name: str = IMAGE_INPUT

    @property
    def images(self) -> tuple[bytes, ...]:
        """The items of an image workload (the encoded images)."""
        return self.items

    def image_batch(self, size: int, *, offset: int = 0) -> np.ndarray:
        """`size` items from `offset` (wrapping around) as the input tensor: object [size, 1]."""
        if size < 1:
            raise BenchmarkError(f"batch size must be >= 1, got {size}")
        rows = [self.items[(offset + i) % len(self.items)] for i in range(size)]
        return image_tensor(rows)

    def samples(self) -> dict[str, np.ndarray]:
        """Every item as rows of the ensemble input, e.g. for perf_analyzer's input data."""
        return {self.input_name: image_tensor(self.items)}


def image_tensor(images: tuple[bytes, ...] | list[bytes]) -> np.ndarray:
    """Encoded items (images or UTF-8 text) as a BYTES tensor: dtype object, shape [N, 1]."""
    array = np.empty((len(images), 1), dtype=object)
    for i, blob in enumerate(images):
        array[i, 0] = bytes(blob)
    return array


def _cycle(items: list[bytes], count: int) -> tuple[bytes, ...]:
    if not items:
        raise BenchmarkError("the workload source produced no items")
    return tuple(items[i % len(items)] for i in range(count))


def light_images(count: int) -> tuple[bytes, ...]:
    """`count` PNGs of the digits test split, in split order (repeating past its end)."""
    from examples.model_zoo.digits import encoded_split  # noqa: PLC0415  (pulls in torch, sklearn)

    blobs, _ = encoded_split("test")
    return _cycle(list(blobs), count)


def heavy_images(count: int) -> tuple[bytes, ...]:
    """`count` deterministic synthetic JPEGs for the ResNet workload (examples.model_zoo.resnet)."""
    try:
        resnet = importlib.import_module("examples.model_zoo.resnet")
    except ModuleNotFoundError as e:
        raise BenchmarkError(
            "the heavy workload needs examples.model_zoo.resnet (the ResNet example built by "
            "`make models`); it is not importable") from e
    images = [bytes(b) for b in resnet.synthetic_images(count)]
    if len(images) != count:
        raise BenchmarkError(f"examples.model_zoo.resnet.synthetic_images({count}) returned "
                             f"{len(images)} images")
    return tuple(images)


def detection_images(count: int) -> tuple[bytes, ...]:
    """`count` PNGs of the synthetic-shapes demo split (deterministic, all distinct)."""
    from examples.model_zoo.shapes import Split, make_split  # noqa: PLC0415

    return tuple(bytes(image.png) for image in make_split(count, split=Split.DEMO))


def embedding_sentences(count: int) -> tuple[bytes, ...]:
    """`count` UTF-8 sentences of the embeddings demo, in order (repeating past its end)."""
    from examples.demo.embeddings import DEMO_SENTENCES  # noqa: PLC0415  (pulls in the client)

    return _cycle([s.encode("utf-8") for s in DEMO_SENTENCES], count)


_SOURCES = {
    WorkloadName.LIGHT: light_images,
    WorkloadName.HEAVY: heavy_images,
    WorkloadName.DETECTION: detection_images,
    WorkloadName.EMBEDDINGS: embedding_sentences,
}


def load_workload(name: WorkloadName | str, *, count: int) -> Workload:
    """The named workload with `count` real encoded items (images or sentences)."""
    try:
        workload = WorkloadName(name)
    except ValueError:
        choices = ", ".join(w.value for w in WorkloadName)
        raise BenchmarkError(f"unknown workload {name!r}; choose one of {choices}") from None
    if count < 1:
        raise BenchmarkError(f"a workload needs at least 1 image or sentence, got count={count}")
    items = _SOURCES[workload](count)
    log.debug("workload %s: %d items, %d bytes in all", workload.value, len(items),
              sum(len(b) for b in items))
    return Workload(name=workload, pipeline=PIPELINES[workload], items=items,
                    input_name=INPUT_NAMES[workload])
