"""Task helpers on top of the clients: image classification through a pipeline that takes
encoded images as a BYTES tensor and answers top-k (label, score, index) through Triton's
classification extension."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonkit_client.async_client import AsyncTritonClient
from tritonkit_client.errors import InvalidInputError, ServerError
from tritonkit_client.sync_client import TritonClient


@dataclass(frozen=True, kw_only=True)
class Classification:
    """One class of an image: its label (the index when the model has no labels file), its
    score (the model's output value: a probability for the example classifiers), its index."""

    label: str
    score: float
    index: int


def images_tensor(images: Sequence[bytes | bytearray | memoryview]) -> NDArray[Any]:
    """Encoded images as a BYTES tensor of shape [N, 1] (an object array of bytes)."""
    tensor = np.empty((len(images), 1), dtype=np.object_)
    for row, image in enumerate(images):
        data = bytes(image) if isinstance(image, bytearray | memoryview) else image
        if not isinstance(data, bytes):
            raise InvalidInputError(
                f"image {row}: expected the encoded file as bytes, got {type(data).__name__}"
            )
        if not data:
            raise InvalidInputError(f"image {row} is empty")
        tensor[row, 0] = data
    return tensor


#: The output a classification pipeline answers on; its config names the labels file.
CLASSIFICATION_OUTPUT = "PROBABILITIES"
DEFAULT_TOP_K = 1


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k must be an integer >= 1, got {top_k!r}")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def parse_classifications(answer: NDArray[Any]) -> list[list[Classification]]:
    """Triton's classification answer: one row per image of k strings `score:index[:label]`,
    best first (a [N] array counts as k = 1). A class without a label gets its index."""
    rows = np.asarray(answer)
    if rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    if rows.ndim != 2:
        raise ServerError(f"a classification answer is [images, k]; got shape {list(rows.shape)}")
    results: list[list[Classification]] = []
    for row in rows:
        found = []
        for value in row:
            score, sep, rest = _text(value).partition(":")
            index, _, label = rest.partition(":")
            try:
                found.append(Classification(label=label or index, score=float(score),
                                            index=int(index)))
            except ValueError:
                raise ServerError(f"not a classification answer: {_text(value)!r}") from None
            if not sep:
                raise ServerError(f"not a classification answer: {_text(value)!r}")
        results.append(found)
    return results


def classify(
    client: TritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    top_k: int = DEFAULT_TOP_K,
    version: str = "",
    image_input: str = "IMAGE",
    output: str = CLASSIFICATION_OUTPUT,
) -> list[list[Classification]]:
    """Classify encoded images: the best `top_k` classes per image, in input order.

    The server ranks them (Triton's classification extension, `class_count` on `output`), so
    only k strings per image travel back. Large inputs are split into requests of the model's
    max_batch_size (`infer_batched`).
    """
    _check_top_k(top_k)
    if not images:
        return []
    outputs = client.infer_batched(model, {image_input: images_tensor(images)}, outputs=[output],
                                   class_counts={output: top_k}, version=version)
    return parse_classifications(outputs[output])


async def classify_async(
    client: AsyncTritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    top_k: int = DEFAULT_TOP_K,
    version: str = "",
    image_input: str = "IMAGE",
    output: str = CLASSIFICATION_OUTPUT,
    concurrency: int = 4,
) -> list[list[Classification]]:
    """The asyncio twin of `classify`; up to `concurrency` batches are in flight."""
    _check_top_k(top_k)
    if not images:
        return []
    outputs = await client.infer_batched(
        model, {image_input: images_tensor(images)}, outputs=[output],
        class_counts={output: top_k}, version=version, concurrency=concurrency)
    return parse_classifications(outputs[output])
