"""Text embeddings through a pipeline that takes UTF-8 texts (BYTES [N, 1]) and returns
L2-normalised vectors EMBEDDING float32 [N, D] (the `embeddings` pipeline of models.yaml)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonkit_client.async_client import AsyncTritonClient
from tritonkit_client.errors import InvalidInputError, ServerError
from tritonkit_client.sync_client import TritonClient


def texts_tensor(texts: Sequence[str]) -> NDArray[Any]:
    """Texts as a BYTES tensor [N, 1] of UTF-8 bytes."""
    tensor = np.empty((len(texts), 1), dtype=np.object_)
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"text {row}: expected str, got {type(text).__name__}")
        tensor[row, 0] = text.encode("utf-8")
    return tensor


def _embeddings(outputs: dict[str, NDArray[Any]], name: str, count: int) -> NDArray[np.float32]:
    if name not in outputs:
        raise ServerError(f"the embeddings pipeline did not return output {name!r}")
    vectors = np.asarray(outputs[name], dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != count:
        raise ServerError(f"expected {count} embedding rows, got shape {vectors.shape}")
    return vectors


def embed(
    client: TritonClient,
    model: str,
    texts: Sequence[str],
    *,
    version: str = "",
    text_input: str = "TEXT",
    output: str = "EMBEDDING",
) -> NDArray[np.float32]:
    """Embed `texts`: float32 [N, D], one unit-length row per text, in input order.

    Texts longer than the model's maximum length are truncated by the server's tokenizer.
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    outputs = client.infer_batched(model, {text_input: texts_tensor(texts)}, outputs=[output],
                                   version=version)
    return _embeddings(outputs, output, len(texts))


async def embed_async(
    client: AsyncTritonClient,
    model: str,
    texts: Sequence[str],
    *,
    version: str = "",
    text_input: str = "TEXT",
    output: str = "EMBEDDING",
    concurrency: int = 4,
) -> NDArray[np.float32]:
    """The asyncio twin of `embed`; up to `concurrency` batches are in flight."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    outputs = await client.infer_batched(model, {text_input: texts_tensor(texts)},
                                         outputs=[output], version=version,
                                         concurrency=concurrency)
    return _embeddings(outputs, output, len(texts))
