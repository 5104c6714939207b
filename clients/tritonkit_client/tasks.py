"""Task helpers on top of the clients: image classification through a pipeline that takes
encoded images as a BYTES tensor and returns top-k labels, scores and class indices."""

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


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1, got {top_k}")


def _label_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def parse_classifications(
    labels: NDArray[Any],
    scores: NDArray[Any],
    indices: NDArray[Any],
    *,
    top_k: int | None = None,
) -> list[list[Classification]]:
    """One list per image, best score first, cut to `top_k` (None: all the server sent).

    Arrays are [N, K]; a [N] array counts as K = 1.
    """
    _check_top_k(top_k)
    rows = [np.asarray(a) for a in (labels, scores, indices)]
    rows = [a.reshape(-1, 1) if a.ndim == 1 else a for a in rows]
    if len({a.shape for a in rows}) != 1 or rows[0].ndim != 2:
        raise ServerError(
            f"labels, scores and class indices disagree in shape: {[tuple(a.shape) for a in rows]}"
        )
    label_rows, score_rows, index_rows = rows
    results: list[list[Classification]] = []
    for label_row, score_row, index_row in zip(label_rows, score_rows, index_rows, strict=True):
        order = np.argsort(-score_row.astype(np.float64), kind="stable")
        if top_k is not None:
            order = order[:top_k]
        results.append(
            [
                Classification(
                    label=_label_text(label_row[i]),
                    score=float(score_row[i]),
                    index=int(index_row[i]),
                )
                for i in order
            ]
        )
    return results


def _classifications(
    outputs: dict[str, NDArray[Any]], names: Sequence[str], *, top_k: int | None
) -> list[list[Classification]]:
    """Parse the outputs named `names` (labels, scores, class indices, in this order)."""
    labels, scores, indices = (outputs[name] for name in names)
    return parse_classifications(labels, scores, indices, top_k=top_k)


def classify(
    client: TritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    top_k: int | None = None,
    version: str = "",
    image_input: str = "IMAGE",
    labels_output: str = "LABELS",
    scores_output: str = "SCORES",
    indices_output: str = "CLASS_INDICES",
) -> list[list[Classification]]:
    """Classify encoded images; one list of Classifications per image, in input order.

    Large inputs are split into requests of the model's max_batch_size (`infer_batched`).
    """
    _check_top_k(top_k)
    if not images:
        return []
    names = [labels_output, scores_output, indices_output]
    inputs = {image_input: images_tensor(images)}
    outputs = client.infer_batched(model, inputs, outputs=names, version=version)
    return _classifications(outputs, names, top_k=top_k)


async def classify_async(
    client: AsyncTritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    top_k: int | None = None,
    version: str = "",
    image_input: str = "IMAGE",
    labels_output: str = "LABELS",
    scores_output: str = "SCORES",
    indices_output: str = "CLASS_INDICES",
    concurrency: int = 4,
) -> list[list[Classification]]:
    """The asyncio twin of `classify`; up to `concurrency` batches are in flight."""
    _check_top_k(top_k)
    if not images:
        return []
    names = [labels_output, scores_output, indices_output]
    inputs = {image_input: images_tensor(images)}
    outputs = await client.infer_batched(
        model, inputs, outputs=names, version=version, concurrency=concurrency
    )
    return _classifications(outputs, names, top_k=top_k)
