"""Where a request's time goes inside the pipeline: each step timed in-process, per image.

Times the same step functions and ONNX model the Python backend runs, at batch 1 and 16, plus
image decoding alone and the KServe binary (de)serialization of the request body.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from tritonkit_client.kserve_codec import decode_request, encode_request

from harness.benchmarks.report import ProfileSection
from harness.benchmarks.workloads import CLASS_COUNTS, CLASSIFICATION_OUTPUTS, Workload
from tritonkit.build import ReferencePipeline
from tritonkit.processing import decode_image

BATCHES = (1, 16)
REPEATS = 5


def _best_ms(call: Callable[[], object]) -> float:
    """Best of REPEATS runs after one warm-up (the least disturbed measurement)."""
    call()
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _decode_all(blobs: list[bytes]) -> None:
    for blob in blobs:
        decode_image(blob)


def profile_steps(repository: Path, workload: Workload) -> ProfileSection:
    pipeline = ReferencePipeline(repository, workload.pipeline)
    rows: list[tuple[object, ...]] = []
    for batch in BATCHES:
        images = np.array(list(workload.images[:batch]), dtype=object).reshape(batch, 1)
        body, header_length = encode_request({"IMAGE": images}, CLASSIFICATION_OUTPUTS,
                                             class_counts=CLASS_COUNTS)
        blobs = [bytes(b) for b in images[:, 0]]
        per_image = {
            "request encode (client)": _best_ms(partial(encode_request, {"IMAGE": images},
                                                        CLASSIFICATION_OUTPUTS,
                                                        class_counts=CLASS_COUNTS)),
            "request decode (server)": _best_ms(partial(decode_request, body, header_length)),
            "image decode only": _best_ms(partial(_decode_all, blobs)),
        }
        tensors: dict[str, np.ndarray] = {"IMAGE": images}
        for step, run in pipeline.steps:
            feeds = {name: tensors[source] for name, source in step.input_map.items()}
            per_image[f"step {step.model_name}"] = _best_ms(partial(run, feeds))
            outputs = run(feeds)
            for name, target in step.output_map.items():
                tensors[target] = outputs[name]
        for name, ms in per_image.items():
            rows.append((batch, name, round(ms, 3), round(ms / batch, 3)))
    return ProfileSection(
        title=f"{workload.name.value}: in-process time per step (best of {REPEATS})",
        text="Each step of the ensemble run alone with the functions and model Triton runs; "
             "`ms/image` shows what batching saves per image.",
        columns=("batch", "part", "ms/batch", "ms/image"), rows=tuple(rows))
