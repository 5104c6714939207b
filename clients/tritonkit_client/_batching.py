"""Splitting inputs along the batch axis (axis 0) into requests, and joining the outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonkit_client.errors import InvalidInputError


def batch_size_of(arrays: Mapping[str, NDArray[Any]]) -> int:
    """The common size of axis 0 of all inputs."""
    sizes = {name: int(array.shape[0]) for name, array in arrays.items()}
    distinct = set(sizes.values())
    if len(distinct) != 1:
        raise InvalidInputError(f"inputs disagree on the batch size (axis 0): {sizes}")
    return distinct.pop()


def split_batches(total: int, max_batch_size: int) -> list[slice]:
    """Slices of at most `max_batch_size` rows covering ``range(total)`` in order."""
    if max_batch_size < 1:
        raise InvalidInputError(f"max_batch_size must be >= 1 to split, got {max_batch_size}")
    if total < 0:
        raise InvalidInputError(f"batch size must be >= 0, got {total}")
    return [
        slice(start, min(start + max_batch_size, total))
        for start in range(0, total, max_batch_size)
    ]


def chunk_inputs(
    arrays: dict[str, NDArray[Any]], *, total: int, max_batch_size: int
) -> list[dict[str, NDArray[Any]]]:
    """The inputs of each request of `infer_batched`, in order.

    `total` is `batch_size_of(arrays)`. One request (``[arrays]``) when the model does not
    batch (`max_batch_size` 0) or the inputs fit; otherwise chunks of `max_batch_size` rows.
    """
    if max_batch_size < 0:
        raise InvalidInputError(f"max_batch_size must be >= 0, got {max_batch_size}")
    if max_batch_size == 0 or total <= max_batch_size:
        return [arrays]
    return [
        {name: array[chunk] for name, array in arrays.items()}
        for chunk in split_batches(total, max_batch_size)
    ]


def merge_batches(parts: Sequence[Mapping[str, NDArray[Any]]]) -> dict[str, NDArray[Any]]:
    """Concatenate the outputs of consecutive chunks along axis 0."""
    if not parts:
        return {}
    names = list(parts[0])
    merged: dict[str, NDArray[Any]] = {}
    for name in names:
        pieces = [part[name] for part in parts]
        tails = {piece.shape[1:] for piece in pieces}
        if len(tails) != 1:
            raise InvalidInputError(
                f"output {name!r} has different non-batch shapes across chunks ({sorted(tails)}); "
                "call infer per chunk instead of infer_batched"
            )
        merged[name] = np.concatenate(pieces, axis=0)
    return merged
