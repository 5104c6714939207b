"""Digits end to end: served accuracy over HTTP and gRPC next to the in-process accuracy."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonkit_client import Classification, classify, connect

from tritonkit.build import ReferencePipeline
from tritonkit.server import ServerURLs
from tritonkit.spec import BuildSpec

log = logging.getLogger(__name__)

PIPELINE = "digits"
TOP_K = 3


@dataclass(frozen=True, kw_only=True)
class ProtocolRun:
    protocol: str
    url: str
    accuracy: float
    seconds: float
    top1: np.ndarray  # predicted class index per image
    predictions: list[list[Classification]]


@dataclass(frozen=True, kw_only=True)
class DigitsReport:
    images: int
    reference_accuracy: float
    reference_top1: np.ndarray
    runs: tuple[ProtocolRun, ...]
    labels: np.ndarray

    @property
    def consistent(self) -> bool:
        """Every protocol predicts exactly what the in-process reference predicts."""
        return all(np.array_equal(run.top1, self.reference_top1) for run in self.runs)


def reference_top1(repository: Path, spec: BuildSpec, images: Sequence[bytes]) -> np.ndarray:
    """Top-1 class indices from the same functions and ONNX model, in this process."""
    onnx_models = {m.name: m.onnx for m in spec.models}
    pipeline = ReferencePipeline(repository, PIPELINE, onnx_models=onnx_models)
    outputs = pipeline({"IMAGE": np.array(list(images), dtype=object).reshape(-1, 1)})
    return np.argmax(np.asarray(outputs["PROBABILITIES"]), axis=1).astype(np.int64)


def classify_over(url: str, images: Sequence[bytes], *, chunk: int,
                  advance: Callable[[int], None]) -> tuple[list[list[Classification]], float]:
    started = time.monotonic()
    predictions: list[list[Classification]] = []
    with connect(url, timeout_s=60) as client:
        client.wait_until_ready(models=[PIPELINE], timeout_s=60)
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            predictions += classify(client, PIPELINE, part, top_k=TOP_K)
            advance(len(part))
    return predictions, time.monotonic() - started


def run_digits(repository: Path, spec: BuildSpec, urls: ServerURLs, *,
               images: Sequence[bytes], labels: np.ndarray,
               advance: Callable[[str, int], None]) -> DigitsReport:
    """Classify `images` through the served ensemble over both protocols and in-process."""
    ref = reference_top1(repository, spec, images)
    runs = []
    for protocol, url in (("HTTP", urls.http), ("gRPC", urls.grpc)):
        predictions, seconds = classify_over(url, images, chunk=64,
                                             advance=functools.partial(advance, protocol))
        top1 = np.array([p[0].index for p in predictions], dtype=np.int64)
        runs.append(ProtocolRun(protocol=protocol, url=url, seconds=seconds, top1=top1,
                                accuracy=float(np.mean(top1 == labels)),
                                predictions=predictions))
    return DigitsReport(images=len(images), reference_accuracy=float(np.mean(ref == labels)),
                        reference_top1=ref, runs=tuple(runs), labels=labels)
